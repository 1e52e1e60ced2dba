"""Free TCP ports, for a process that must be told its port before it starts.

A server that can bind port 0 itself should (:func:`banyan.serving.start_site` does); a child
process started with ``--port`` (proxy workers, replicas, the stack's parts) needs a number first.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` when asked (another process may take it
    before it is bound: use it at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])

"""Socket taps: one per socket kind the shadow compares, on a shared :class:`SocketTap`."""

from __future__ import annotations

from banyan.proxy.shadow.taps.base import FALLBACK_FRAMES, Outgoing, SocketTap, TapHost
from banyan.proxy.shadow.taps.live import LiveTap
from banyan.proxy.shadow.taps.tutor import TutorTap
from banyan.proxy.shadow.taps.whiteboard import WhiteboardTap

__all__ = [
    "FALLBACK_FRAMES",
    "LiveTap",
    "Outgoing",
    "SocketTap",
    "TapHost",
    "TutorTap",
    "WhiteboardTap",
    "tap_class",
]


def tap_class(path: str) -> type[SocketTap] | None:
    """The tap for a socket at ``path``, or None for a socket the shadow does not compare."""
    if path.startswith("/ws/tutor/"):
        return TutorTap
    if path.startswith("/ws/whiteboard/"):
        return WhiteboardTap
    if path == "/ws/live":
        return LiveTap
    return None

"""Shadow traffic: copy requests to the candidate backend, off the response path, and compare.

In ``shadow`` mode the primary answers the user. For a sampled share of requests (``parity.sample``
percent, decided from the request id so a retry is sampled the same way) the proxy sends a copy to
the candidate after the primary answered — the user never waits for it — and cuts the candidate at
``parity.shadow_timeout``. The copy itself is sent by the proxy's own upstream client
(:mod:`.send`).

Writes are copied only with ``writes: mirror`` (same ``Idempotency-Key``). A write that is not
compared (sampled out, too many in flight) goes to the candidate through the durable mirror queue
instead, and so does a compared write whose copy got no answer (timed out, refused, cut short):
the queue re-sends it with the same key until the candidate's store has it.

One user's copies reach the candidate in the order the user sent them: a copy waits for that
user's earlier writes still on their way to the candidate (:mod:`banyan.proxy.fence`), so a read
never overtakes the create it reads, and a write's copy also waits for the user's earlier reads
still on their way (:attr:`Shadow.reads`), so a list read just before a create is not answered by
a candidate that already holds the new item. Bodies over ``parity.max_body_bytes`` are not
compared, and counted. For ``parity.noise_sample`` percent of shadowed safe requests the primary is
asked a second time and the differences between its two answers are learned as noise.

WebSockets: a tap tees the client's frames to a candidate connection (one tap class per socket
kind). A socket that is not sampled still writes through to the candidate, by the mirror taps of
:mod:`banyan.proxy.write_mirror`. Every result goes to the parity recorder, the metrics and the
feature's guard.

The package: :mod:`.core` (the :class:`Shadow`, its lifecycle and reports), :mod:`.http` (HTTP
copies), :mod:`.order` (the order of a caller's copies), :mod:`.send` (one copy sent and its answer
read), :mod:`.taps` (socket taps).
"""

from __future__ import annotations

from banyan.proxy.shadow.core import Shadow, parity_url, shadow_from_env
from banyan.proxy.shadow.http import HttpCopies, undelivered
from banyan.proxy.shadow.order import (
    RESERVED,
    SAFE,
    Caller,
    Reservation,
    caller_of,
    lines_of,
    sampled,
)
from banyan.proxy.shadow.taps import (
    LiveTap,
    Outgoing,
    SocketTap,
    TapHost,
    TutorTap,
    WhiteboardTap,
)

WebSocketTap = SocketTap  # the name the taps' shared base had before the split

__all__ = [
    "RESERVED",
    "SAFE",
    "Caller",
    "HttpCopies",
    "LiveTap",
    "Outgoing",
    "Reservation",
    "Shadow",
    "SocketTap",
    "TapHost",
    "TutorTap",
    "WebSocketTap",
    "WhiteboardTap",
    "caller_of",
    "lines_of",
    "parity_url",
    "sampled",
    "shadow_from_env",
    "undelivered",
]

"""What can go wrong on the way to an upstream, and whose fault it is.

:class:`UpstreamError` is the backend's side (it could not be reached, did not answer in time,
dropped the connection, or sent an answer the proxy cannot relay): it counts against the backend.
:class:`RequestFault` is the request's own (its body was cut short or badly framed by the
client, or it is over a limit): the client gets a 4xx and no backend is blamed.
"""

from __future__ import annotations


class UpstreamError(Exception):
    """The upstream could not be used.

    ``kind`` is ``connect`` (refused, unreachable), ``timeout``, ``closed`` (connection lost
    before or during the answer), ``protocol`` (an answer that is not HTTP/1.x) or ``too_large``
    (an answer head over a limit). ``detail`` is for the log only: it may name an address, which
    a client never sees."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail

    @property
    def status(self) -> int:
        return 504 if self.kind == "timeout" else 502


class RequestFault(Exception):
    """The request cannot be forwarded because of the request itself; ``status`` (4xx), ``code``
    and ``message`` make the client's JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

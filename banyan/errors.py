"""Every failure Banyan raises on purpose, one class each, in one tree.

Code decides by class (``except UpstreamTimeout``, ``isinstance(exc, ConnectError)``), never by
comparing strings. Where a failure must still be written down as a word (a log line's ``kind``,
a parity record's error, a client's JSON ``code``), the class carries that word as a class
attribute, so the word follows from the class and not the other way round::

    BanyanError
    ├── UpstreamError             the backend's side: 502/504, counted against the backend
    │   ├── ConnectError          refused or unreachable (kind "connect")
    │   ├── UpstreamTimeout       no connection or no answer in time (kind "timeout", 504)
    │   ├── ConnectionClosed      the connection was lost before or during the answer ("closed")
    │   ├── ProtocolError         an answer that is not HTTP/1.x ("protocol")
    │   └── ResponseTooLarge      an answer head over a limit ("too_large")
    ├── RequestFault              the request's own: a 4xx, no backend blamed
    │   ├── BadRequestBody        the client cut its body short or framed it badly (400)
    │   └── RequestOverLimit      a target or headers over a size limit (414, 431)
    ├── StampError (ValueError)   an ``X-Banyan-Stamp`` that must not be trusted
    │   ├── MalformedStamp        not a stamp of a version the reader knows
    │   ├── ForgedStamp           its signature does not match
    │   └── ExpiredStamp          genuine, but out of the reader's time window
    ├── ConfigError               something an operator wrote is invalid
    │   ├── FlagError             the flag file: ``file:line: reason``
    │   ├── RouteError (ValueError)   a route pattern against the route grammar
    │   ├── PathError (ValueError)    a parity rule's JSONPath outside the supported subset
    │   └── SettingsError (ValueError)  an environment variable's value (names the variable)
    ├── ResourceError             a file, database or port a command needs cannot be used
    │   ├── PrivateFileError      a private file (secret, admin token) unsafe or unreadable
    │   ├── HistoryError          the audit log cannot be read at all
    │   ├── ControlError          the control store: bad URL or schema, or the database refused
    │   └── StackError            ``banyan up`` cannot start
    ├── BadQuery (ValueError)     an admin query parameter that cannot be read (400)
    ├── TransitionError           an operator's rollout step refused (status, code, message)
    └── TooDeep (ValueError)      a JSON text nesting deeper than the limit it was read under

The backends (:mod:`banyan.backends`) are separate programs with their own errors; the only
ones here they use are the stamp errors, because a stamp is read on both sides. This module
imports nothing from Banyan, so any package may depend on it.
"""

from __future__ import annotations

from typing import ClassVar


class BanyanError(Exception):
    """The root: anything Banyan raises on purpose."""


# -- the way to an upstream -------------------------------------------------------------------


class UpstreamError(BanyanError):
    """The upstream could not be used; it counts against the backend. ``detail`` is for the
    log only: it may name an address, which a client never sees."""

    kind: ClassVar[str] = "upstream"
    status: ClassVar[int] = 502

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.kind}: {detail}")
        self.detail = detail


class ConnectError(UpstreamError):
    """Refused or unreachable (or the proxy is shutting down and opens nothing new)."""

    kind = "connect"


class UpstreamTimeout(UpstreamError):
    """No free connection, or no answer, in time."""

    kind = "timeout"
    status = 504


class ConnectionClosed(UpstreamError):
    """The connection was lost while the request was sent or before the answer ended; a
    reused connection's loss before any answer may be retried for an idempotent request."""

    kind = "closed"


class ProtocolError(UpstreamError):
    """An answer that is not HTTP/1.x, or a protocol switch nobody asked for."""

    kind = "protocol"


class ResponseTooLarge(UpstreamError):
    """An answer head over one of the proxy's limits."""

    kind = "too_large"


# -- the client's request ---------------------------------------------------------------------


class RequestFault(BanyanError):
    """The request cannot be forwarded because of the request itself; ``status`` (4xx),
    ``code`` and ``message`` make the client's JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class BadRequestBody(RequestFault):
    """The client's body was cut short or badly framed while the proxy read it."""

    def __init__(self) -> None:
        super().__init__(400, "bad_request_body", "the request body was cut short or badly framed")


class RequestOverLimit(RequestFault):
    """The request target or the headers are over one of the proxy's size limits."""


# -- stamps -----------------------------------------------------------------------------------


class StampError(BanyanError, ValueError):
    """A stamp that must not be trusted; ``reason`` is one of the subclasses' names."""

    reason: ClassVar[str] = "invalid"


class MalformedStamp(StampError):
    """Not a stamp of a version this reader knows (bad shape, field or length)."""

    reason = "malformed"


class ForgedStamp(StampError):
    """Well-formed, but its signature does not match this request under this secret."""

    reason = "forged"


class ExpiredStamp(StampError):
    """A genuine ``primary`` stamp whose time is outside the reader's window."""

    reason = "expired"


# -- what operators write ---------------------------------------------------------------------


class ConfigError(BanyanError):
    """Something an operator wrote (a file, a pattern, a variable) is invalid."""


class FlagError(ConfigError):
    """An invalid flag file: where and why. ``str()`` gives ``file:line: reason``; line 0 means
    the problem is not on a line (the file could not be read, or is too big)."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


class RouteError(ConfigError, ValueError):
    """A route pattern that breaks the grammar; the message says which rule."""


class PathError(ConfigError, ValueError):
    """A parity rule's path pattern outside the supported JSONPath subset."""


class SettingsError(ConfigError, ValueError):
    """An environment variable with a value that cannot be used: ``str()`` names the variable
    and says what is wrong (``BANYAN_MAX_REQUESTS must be a whole number, got 'lots'``)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem


# -- what a command needs ---------------------------------------------------------------------


class ResourceError(BanyanError):
    """A file, database or port a command needs cannot be used; the message says what to do."""


class PrivateFileError(ResourceError):
    """A private file cannot be used; the message names it, says why and what to do."""


class HistoryError(ResourceError):
    """The audit log cannot be read at all (missing, a directory, unreadable)."""


class ControlError(ResourceError):
    """The control store cannot be used: a bad URL or schema name, or the database refused."""


class StackError(ResourceError):
    """``banyan up`` cannot start: the message says why and what to do."""


# -- the rest ---------------------------------------------------------------------------------


class BadQuery(BanyanError, ValueError):
    """An admin query parameter that cannot be read; its message names it."""


class TransitionError(BanyanError):
    """An operator's rollout transition refused: ``status``, ``code`` and ``message`` make the
    admin endpoint's JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class TooDeep(BanyanError, ValueError):
    """A JSON text nests deeper than the limit it was read under."""

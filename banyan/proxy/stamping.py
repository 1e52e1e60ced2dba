"""The proxy's side of write stamps: which time a write gets, and the ``X-Banyan-Stamp`` it carries.

Every unsafe request (POST, PUT, PATCH, DELETE) the proxy forwards is given one time, read from
the proxy's clock when the request arrives (:meth:`Stamper.take`). The primary is sent a
``primary`` stamp of that time; the shadow copy and every mirror delivery of the same write a
``mirror`` stamp of the very same time, naming the user of the request's token (the JWT ``sub``;
nobody for a request without one, such as a registration). The stamp is signed per backend, for
the target that backend receives (its URL's path prefix included) and the request's binding key
(``Idempotency-Key``, else ``X-Request-Id``: :func:`banyan.stamps.binding_key`). The mirror
queue stores the time and the user, not the stamp, and signs each delivery when it sends it, so a
retry days later carries the write's original time.

The secret is ``BANYAN_JWT_SECRET``, read at start (:class:`banyan.proxy.settings.Settings`). A
proxy started without it stamps nothing (the backends then write at their own clocks, as before)
and says so once in its log. A
client's own ``X-Banyan-Stamp`` never reaches a backend (:mod:`banyan.proxy.headers` drops it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from banyan import stamps
from banyan.logs import get_logger

log = get_logger("banyan.proxy.stamping")

SECRET_ENV = "BANYAN_JWT_SECRET"
_USER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class WriteStamp:
    """What every stamp of one write shares: its time, method, binding key and (for the copies)
    the user it acts for."""

    ms: int
    method: str
    key: str
    user: str | None


class Stamper:
    """Signs stamps with the shared secret; without a secret it stamps nothing."""

    def __init__(self, secret: str | None, clock: Callable[[], int] = wall_ms) -> None:
        self.secret = secret or None
        self.clock = clock

    @classmethod
    def configured(cls, secret: str | None) -> Stamper:
        """The proxy's stamper for its ``BANYAN_JWT_SECRET`` (``Settings.stamp_secret``); without
        one it stamps nothing and says so once in the log."""
        secret = secret or None
        if secret is None:
            log.warning(
                "stamps_disabled",
                reason=f"{SECRET_ENV} is not set: writes are not stamped and each backend "
                "records its own times",
            )
        return cls(secret)

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    def take(self, method: str, key: str, user: str | None) -> WriteStamp | None:
        """The stamp of a write arriving now (None for a safe method or without a secret)."""
        if self.secret is None or method.upper() not in stamps.UNSAFE_METHODS:
            return None
        return WriteStamp(self.clock(), method.upper(), key, acting_user(user))

    def value(self, stamp: WriteStamp, target: str, *, mirror: bool) -> str | None:
        """The header value for ``stamp`` sent to ``target`` (path and query as that backend
        receives them): ``primary``, or ``mirror`` naming the stamp's user."""
        if self.secret is None:
            return None
        return stamps.make_stamp(
            secret=self.secret,
            method=stamp.method,
            target=target,
            key=stamp.key,
            ms=stamp.ms,
            mirror=mirror,
            user=acting_user(stamp.user) if mirror else None,
        )

    def ask(self, ms: int, path: str, turn: str) -> str | None:
        """The stamp of a tutor ask copied to the candidate: its turn was stored at ``ms`` by
        the primary (None without a secret). See :mod:`banyan.stamps`."""
        if self.secret is None:
            return None
        return stamps.make_stamp(
            secret=self.secret, method=stamps.ASK, target=path, key=turn, ms=ms
        )

    def line(self, stamp: WriteStamp | None, target: bytes, *, mirror: bool) -> bytes:
        """The serialized header line for a request head (empty when nothing is stamped)."""
        if stamp is None:
            return b""
        value = self.value(stamp, origin_form(target), mirror=mirror)
        if value is None:
            return b""
        return f"{stamps.HEADER}: {value}\r\n".encode("ascii")


def origin_form(target: bytes) -> str:
    """A request target as the backend reads it (``request.raw_path``): an absolute-form target
    loses its scheme and authority."""
    text = target.decode("utf-8", "surrogateescape")
    if text.startswith("/"):
        return text
    scheme_end = text.find("://")
    if scheme_end < 0:
        return text
    rest = text[scheme_end + 3 :]
    for mark in ("/", "?"):
        at = rest.find(mark)
        if at >= 0:
            return rest[at:] if mark == "/" else "/" + rest[at:]
    return "/"


def acting_user(user: str | None) -> str | None:
    """The user a mirror stamp may name: a token's subject when it is a lower-case UUID (as every
    user id is), else nobody (the copy then authenticates by its token alone)."""
    return user if user is not None and _USER.fullmatch(user) is not None else None

"""Write stamps: the proxy's signed word on when a write happened and, for a mirrored copy, whom
it acts for.

The proxy sends ``X-Banyan-Stamp`` with every unsafe request it forwards (POST, PUT, PATCH,
DELETE), to the primary and with every copy of it (shadow copy, mirror delivery). A backend that
verifies the stamp uses its time as "now" for everything the request writes, so both stores record
the same created, updated and expiry times; a ``mirror`` stamp also names the user the copy acts
for, so a copy delivered after that user's token was revoked or expired is still accepted.

Wire form (one header value, fields separated by dots)::

    v1.<ms>.primary..<signature>
    v1.<ms>.mirror.<user id>.<signature>
    v1.<ms>.mirror..<signature>

``<ms>`` is the write's time in epoch milliseconds (ASCII digits, no sign or leading zero), the
user id a lower-case UUID: the JWT ``sub`` of the copied request (empty for ``primary``, and for a
``mirror`` copy of a request without a token — a registration), the signature the unpadded
base64url HMAC-SHA256 under the shared secret (``BANYAN_JWT_SECRET``) of every field above plus
the request it belongs to: method, target (path and query as sent) and key
(:func:`binding_key`: the ``Idempotency-Key``, else the ``X-Request-Id``). Each part is
length-prefixed, so no two stamps sign the same text. The body is not bound (the proxy streams
it): a stamp is as confidential as the token that travels with it.

A ``primary`` stamp is accepted within :data:`PRIMARY_WINDOW_MS` of the reader's clock (a captured
request replayed later is refused); a ``mirror`` stamp has no time window — a mirror queue may
deliver days later — and is bound to its exact request instead.

A WebSocket frame that writes carries its stamp in the frame instead of a header: a tutor ask
sent to the candidate as a shadow copy has a ``stamp`` field, a ``primary`` stamp bound to method
:data:`ASK`, the socket's path (no query) and the turn id as key, at the time the primary stored
that turn.

This module is pure (no I/O, no clock of its own) and imports nothing from ``banyan.proxy`` or
``banyan.backends``: both import it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from banyan.errors import ExpiredStamp, ForgedStamp, MalformedStamp

HEADER = "X-Banyan-Stamp"
VERSION = "v1"
Kind = Literal["primary", "mirror"]
PRIMARY: Kind = "primary"
MIRROR: Kind = "mirror"
PRIMARY_WINDOW_MS = 10 * 60 * 1000  # a primary stamp is accepted within +-10 min of the reader
MAX_HEADER_CHARS = 256
MAX_MS = 2**53 - 1  # what every JSON reader holds exactly
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IDEMPOTENCY_KEY = "Idempotency-Key"
REQUEST_ID = "X-Request-Id"
ASK = "ASK"  # the method a tutor ask's stamp binds (a frame, not a request: see below)

_DIGITS = re.compile(r"0|[1-9][0-9]{0,15}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, base64url without padding
_USER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # a UUID
_DOMAIN = b"banyan-stamp"


@dataclass(frozen=True, slots=True)
class Stamp:
    """A verified stamp and the request it was bound to."""

    ms: int
    kind: Kind
    user: str | None  # the user a mirror stamp acts for; None for primary or without a token
    method: str
    target: str
    key: str

    @property
    def mirror(self) -> bool:
        return self.kind == MIRROR

    @property
    def seed(self) -> str:
        """A value the same for every stamp of one write (primary or mirror, any user field):
        what a backend derives per-write values from (a token's ``jti``, an edit's client id),
        so both stores derive the same ones."""
        return _digest(_fields(str(self.ms), self.method, self.target, self.key))


def binding_key(headers: Mapping[str, str]) -> str:
    """What a stamp binds besides method and target: the ``Idempotency-Key`` when the request
    has one, else its ``X-Request-Id``, else the empty string. Header names are matched without
    regard to case (a plain ``dict`` works as well as aiohttp's headers)."""
    for name in (IDEMPOTENCY_KEY, REQUEST_ID):
        value = _header(headers, name)
        if value is not None:
            return value
    return ""


def make_stamp(
    *,
    secret: str,
    method: str,
    target: str,
    key: str,
    ms: int,
    mirror: bool = False,
    user: str | None = None,
) -> str:
    """The header value for a write at ``ms``: a ``primary`` stamp, or with ``mirror`` one for a
    copy delivered to the other store, acting for ``user`` (the request's JWT ``sub``; None for a
    request without a token). ``target`` is the path and query exactly as sent, ``key``
    :func:`binding_key` of the headers sent. ValueError for a time or user it cannot carry."""
    if not secret:
        raise ValueError("a stamp needs a secret")
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"ms must be between 0 and {MAX_MS}")
    if user is not None and not (mirror and _is_user(user)):
        raise ValueError("only a mirror stamp names a user, by a lower-case UUID")
    kind: Kind = MIRROR if mirror else PRIMARY
    signature = _sign(secret, str(ms), kind, user or "", method, target, key)
    return f"{VERSION}.{ms}.{kind}.{user or ''}.{signature}"


def read_stamp(
    header: str | None,
    *,
    secret: str,
    method: str,
    target: str,
    key: str,
    now_ms: int,
    window_ms: int = PRIMARY_WINDOW_MS,
) -> Stamp | None:
    """Verify ``header`` for this request: None when there is no stamp, the :class:`Stamp` when
    it verifies; :class:`MalformedStamp`, :class:`ForgedStamp` or :class:`ExpiredStamp` (all
    :class:`StampError`) otherwise. The signature is compared in constant time, and checked
    before the window, so a forged stamp is never reported as merely expired."""
    if header is None:
        return None
    if not secret:
        raise ValueError("reading a stamp needs a secret")
    ms, kind, user, signature = _parse(header)
    expected = _sign(secret, str(ms), kind, user or "", method, target, key)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise ForgedStamp("the stamp's signature does not match this request")
    if kind == PRIMARY and abs(now_ms - ms) > window_ms:
        raise ExpiredStamp(f"the stamp's time is more than {window_ms // 1000} s from this clock")
    return Stamp(ms, kind, user, method.upper(), target, key)


def _parse(header: str) -> tuple[int, Kind, str | None, str]:
    if len(header) > MAX_HEADER_CHARS:
        raise MalformedStamp(f"a stamp is at most {MAX_HEADER_CHARS} characters")
    parts = header.split(".")
    if len(parts) != 5:
        raise MalformedStamp("a stamp has five fields separated by dots")
    version, ms_text, kind_text, user, signature = parts
    if version != VERSION:
        raise MalformedStamp(f"unknown stamp version (this reader knows {VERSION})")
    if not _DIGITS.fullmatch(ms_text) or int(ms_text) > MAX_MS:
        raise MalformedStamp("the stamp's time is not epoch milliseconds")
    kind: Kind
    if kind_text == PRIMARY:
        kind = PRIMARY
        if user:
            raise MalformedStamp("a primary stamp names no user")
    elif kind_text == MIRROR:
        kind = MIRROR
        if user and not _is_user(user):
            raise MalformedStamp("a mirror stamp names its user by a lower-case UUID")
    else:
        raise MalformedStamp(f"the stamp's kind is {PRIMARY} or {MIRROR}")
    if not _SIGNATURE.fullmatch(signature):
        raise MalformedStamp("the stamp's signature is not 43 base64url characters")
    return int(ms_text), kind, (user or None), signature


def _is_user(value: str) -> bool:
    return _USER.fullmatch(value) is not None


def _fields(*parts: str) -> bytes:
    """Length-prefixed parts: ``<bytes>:<part>`` each, so fields cannot run into each other."""
    out = bytearray()
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        out += b"%d:" % len(raw) + raw
    return bytes(out)


def _sign(secret: str, ms: str, kind: str, user: str, method: str, target: str, key: str) -> str:
    message = _fields(VERSION, ms, kind, user, method.upper(), target, key)
    mac = hmac.digest(secret.encode("utf-8", "surrogatepass"), _DOMAIN + message, "sha256")
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _digest(data: bytes) -> str:
    return hashlib.sha256(_DOMAIN + b"-seed" + data).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = headers.get(name)
    if found is not None:
        return found
    lowered = name.lower()
    for candidate, value in headers.items():
        if candidate.lower() == lowered:
            return value
    return None

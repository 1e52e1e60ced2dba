"""JWT access tokens of the contract: HS256 with ``sub``, ``iat``, ``exp``, ``jti``.

The algorithm is pinned: a token signed with anything but HS256 (``none`` included) is refused. The
secret comes from ``BANYAN_JWT_SECRET`` and is shared by both backends, so a token one backend
issues is accepted by the other. Revocation (logout) is by ``jti`` and kept by each backend's
store.

There is no built-in secret. A backend checks at start (:func:`require_secret`) and refuses to run
without one (:class:`MissingSecret`) unless it is a development run (``--dev`` or ``BANYAN_DEV=1``),
which signs with a random secret made for that process: its tokens die with it and are never
accepted by another backend.

A client sends the same token with every request, so a token that passed the full check is
remembered (keyed by the whole token, signature included, and the secret it was checked with) and
later only its expiry is checked again: a forged or altered token never matches a remembered one.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from banyan.backends.common.errors import Unauthorized

ALGORITHM = "HS256"
SECRET_ENV = "BANYAN_JWT_SECRET"
DEV_ENV = "BANYAN_DEV"
MIN_SECRET_CHARS = 32  # HS256 wants a key of at least 256 bits (RFC 7518, 3.2)
DEFAULT_TTL_SECONDS = 24 * 3600
REMEMBERED = 4096  # verified tokens kept, oldest forgotten first


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    jti: str
    iat: int
    exp: int


class MissingSecret(RuntimeError):
    """No usable signing secret: the backend must not start (and signs or checks nothing)."""


_dev_secret: str | None = None  # set once by a development run, random per process


def new_secret() -> str:
    """A fresh random secret (64 URL-safe characters, 384 bits)."""
    return secrets.token_urlsafe(48)


def dev_requested() -> bool:
    """Whether ``BANYAN_DEV`` asks for a development run (any value but empty or ``0``)."""
    return os.environ.get(DEV_ENV, "").strip() not in ("", "0")


def require_secret(*, dev: bool = False) -> None:
    """Check at start that tokens can be signed; raise :class:`MissingSecret` if not.

    An exported ``BANYAN_JWT_SECRET`` must be at least :data:`MIN_SECRET_CHARS` long. Without one,
    a development run (``dev`` or ``BANYAN_DEV``) gets a random secret for this process."""
    global _dev_secret
    value = os.environ.get(SECRET_ENV)
    if value:
        if len(value) < MIN_SECRET_CHARS:
            raise MissingSecret(
                f"{SECRET_ENV} must be at least {MIN_SECRET_CHARS} characters"
                " (make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return
    if _dev_secret is not None:
        return
    if not (dev or dev_requested()):
        raise MissingSecret(
            f"{SECRET_ENV} is not set: export the secret both backends share"
            f" (or start a development run with --dev or {DEV_ENV}=1)"
        )
    _dev_secret = new_secret()


def secret() -> str:
    """The signing secret: ``BANYAN_JWT_SECRET``, else a development run's random one."""
    value = os.environ.get(SECRET_ENV) or _dev_secret
    if not value:
        raise MissingSecret(f"{SECRET_ENV} is not set and this is not a development run")
    return value


def token_ttl() -> int:
    return int(os.environ.get("BANYAN_TOKEN_TTL", DEFAULT_TTL_SECONDS))


def issue(user_id: str, *, now: float | None = None, ttl: int | None = None) -> tuple[str, Claims]:
    """Sign a new token for ``user_id``; returns the compact token and its claims."""
    issued = int(now if now is not None else time.time())
    claims = Claims(
        sub=user_id, jti=uuid.uuid4().hex, iat=issued, exp=issued + (ttl or token_ttl())
    )
    payload = {"sub": claims.sub, "jti": claims.jti, "iat": claims.iat, "exp": claims.exp}
    return jwt.encode(payload, secret(), algorithm=ALGORITHM), claims


_verified: dict[str, tuple[str, Claims]] = {}


def verify(token: str) -> Claims:
    """Check signature, algorithm and expiry; raise :class:`Unauthorized` with a precise code."""
    key = secret()
    known = _verified.get(token)
    if known is not None and known[0] == key and known[1].exp > time.time():
        return known[1]
    claims = _verify_fully(token, key)
    if len(_verified) >= REMEMBERED:
        del _verified[next(iter(_verified))]
    _verified[token] = (key, claims)
    return claims


def _verify_fully(token: str, key: str) -> Claims:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise Unauthorized("token algorithm is not accepted")
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "jti", "iat", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token has expired", code="token_expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token") from None
    if not all(isinstance(payload.get(k), str) for k in ("sub", "jti")):
        raise Unauthorized("invalid token")
    return Claims(
        sub=payload["sub"], jti=payload["jti"], iat=int(payload["iat"]), exp=int(payload["exp"])
    )


def bearer_from(authorization: str | None, query_token: str | None = None) -> str:
    """Extract the token from ``Authorization: Bearer`` (or ``?token=`` for WebSockets)."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("authorization header must be 'Bearer <token>'")
        return value.strip()
    if query_token:
        return query_token
    raise Unauthorized("missing bearer token")

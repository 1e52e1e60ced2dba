"""JWT access tokens of the contract: HS256 with ``sub``, ``iat``, ``exp``, ``jti``.

The algorithm is pinned: a token signed with anything but HS256 (``none`` included) is refused. The
secret comes from ``BANYAN_JWT_SECRET`` and is shared by both backends, so a token one backend
issues is accepted by the other. Revocation (logout) is by ``jti`` and kept by each backend's
store.

A client sends the same token with every request, so a token that passed the full check is
remembered (keyed by the whole token, signature included, and the secret it was checked with) and
later only its expiry is checked again: a forged or altered token never matches a remembered one.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import jwt

from banyan.backends.common.errors import Unauthorized

ALGORITHM = "HS256"
DEV_SECRET = "banyan-dev-secret-change-me-" + "0123456789abcdef" * 3
DEFAULT_TTL_SECONDS = 24 * 3600
REMEMBERED = 4096  # verified tokens kept, oldest forgotten first


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    jti: str
    iat: int
    exp: int


def secret() -> str:
    return os.environ.get("BANYAN_JWT_SECRET") or DEV_SECRET


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

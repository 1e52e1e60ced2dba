"""Password hashing with the standard library's scrypt (a slow, memory-hard KDF).

Stored form: ``scrypt$N$r$p$<salt hex>$<hash hex>`` so parameters can be raised later without
breaking old hashes. Both backends use this, so a backfilled user can log in on either side.

A registration salts with :func:`salt_for` (the user's id and creation time): a registration
mirrored to the other store with the same stamp stores the very same hash, so both stores hold one
credential and a repeated delivery can be recognised as the same registration. A salt only has to
be unique, which the pair is (the id is one per e-mail, the time one per registration of it).
"""

from __future__ import annotations

import hashlib
import hmac
import os

N, R, P = 2**14, 8, 1
DKLEN = 32


def salt_for(user_id: str, created_ms: int) -> bytes:
    """The salt of the registration of ``user_id`` at ``created_ms`` (16 bytes)."""
    return hashlib.sha256(f"banyan-salt:{user_id}:{created_ms}".encode()).digest()[:16]


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DKLEN)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest_hex) // 2,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)

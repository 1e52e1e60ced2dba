"""The admin token of a checkout: made by ``banyan up``, found by the CLI commands that need it.

``banyan up`` gives its proxy ``BANYAN_ADMIN_TOKEN``: the exported one, else a random token it
makes on the first run and keeps in the flag file's state folder (``.banyan/admin-token`` beside
the flag file, mode 0600; a file other users can read is refused). The commands that call the
admin API (``banyan rollout``, ``banyan mirror``, ``banyan status``, ``banyan parity ... --proxy``)
send ``$BANYAN_ADMIN_TOKEN`` when it is set, else the token in that file, so they work on
``make run`` without anything exported.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

TOKEN_ENV = "BANYAN_ADMIN_TOKEN"
TOKEN_FILE = "admin-token"
MIN_TOKEN_CHARS = 16


class AdminTokenError(Exception):
    """The token file cannot be used: the message says why and what to do."""


def token_path(flags_path: str | Path) -> Path:
    """``.banyan/admin-token`` beside the flag file (the folder ``banyan.rollout.store.state_dir``
    names; spelled out here so parity, which never imports the proxy, can use this module)."""
    return Path(flags_path).resolve().parent / ".banyan" / TOKEN_FILE


def stack_token(flags_path: str | Path) -> str:
    """The token ``banyan up`` gives its proxy: the exported one, else the state folder's own
    (made with a random value, readable only by this user, on the first run)."""
    exported = os.environ.get(TOKEN_ENV)
    if exported:
        return exported
    path = token_path(flags_path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def read_token(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AdminTokenError(
            f"{path} can be read by other users (mode {mode:o}): delete it to make a new token,"
            " or chmod 600 it"
        )
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < MIN_TOKEN_CHARS:
        raise AdminTokenError(f"{path} holds no usable admin token: delete it to make a new one")
    return value


def find_token(flags_path: str | Path | None) -> str | None:
    """The token a CLI command sends: ``$BANYAN_ADMIN_TOKEN``, else the flag file's state
    folder's (``--flags``, default ``$BANYAN_FLAGS`` or ``flags.yaml``), else none."""
    exported = os.environ.get(TOKEN_ENV)
    if exported:
        return exported
    path = token_path(flags_path or os.environ.get("BANYAN_FLAGS", "flags.yaml"))
    try:
        return read_token(path)
    except (OSError, AdminTokenError):
        return None  # no usable file: the call goes without a token and the proxy says why


def admin_headers(flags_path: str | Path | None) -> dict[str, str]:
    token = find_token(flags_path)
    return {"Authorization": f"Bearer {token}"} if token else {}

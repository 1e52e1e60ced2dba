"""The admin token of a checkout: made by ``banyan up``, found by the CLI commands that need it.

``banyan up`` gives its proxy ``BANYAN_ADMIN_TOKEN``: the exported one, else a random token it
makes on the first run and keeps in the flag file's state folder (``.banyan/admin-token`` beside
the flag file, mode 0600; a file other users can read is refused). The commands that call the
admin API (``banyan rollout``, ``banyan mirror``, ``banyan status``, ``banyan parity ... --proxy``)
send ``$BANYAN_ADMIN_TOKEN`` when it is set, else the token in that file, so they work on
``make run`` without anything exported.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from banyan import private_file
from banyan.env import flags_default, option_default
from banyan.private_file import PrivateFileError

TOKEN_ENV = "BANYAN_ADMIN_TOKEN"
TOKEN_FILE = "admin-token"
MIN_TOKEN_CHARS = 16


AdminTokenError = PrivateFileError  # the token file cannot be used: the message says why


def token_path(flags_path: str | Path) -> Path:
    """``.banyan/admin-token`` beside the flag file (the folder ``banyan.rollout.store.state_dir``
    names; spelled out here so parity, which never imports the proxy, can use this module)."""
    return Path(flags_path).resolve().parent / ".banyan" / TOKEN_FILE


def stack_token(flags_path: str | Path) -> str:
    """The token ``banyan up`` gives its proxy: the exported one, else the state folder's own
    (made with a random value, readable only by this user, on the first run)."""
    exported = option_default(TOKEN_ENV, "")
    if exported:
        return exported
    path = token_path(flags_path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return private_file.keep(
        path, lambda: secrets.token_urlsafe(32), what="admin token", min_chars=MIN_TOKEN_CHARS
    )


def read_token(path: Path) -> str:
    return private_file.read(path, what="admin token", min_chars=MIN_TOKEN_CHARS)


def find_token(flags_path: str | Path | None) -> str | None:
    """The token a CLI command sends: ``$BANYAN_ADMIN_TOKEN``, else the flag file's state
    folder's (``--flags``, default ``$BANYAN_FLAGS`` or ``flags.yaml``), else none."""
    exported = option_default(TOKEN_ENV, "")
    if exported:
        return exported
    path = token_path(flags_path or flags_default())
    try:
        return read_token(path)
    except (OSError, AdminTokenError):
        return None  # no usable file: the call goes without a token and the proxy says why


def admin_headers(flags_path: str | Path | None) -> dict[str, str]:
    token = find_token(flags_path)
    return {"Authorization": f"Bearer {token}"} if token else {}

"""A secret kept in a file only its owner can read: made once with a random value, read back
checked (``banyan up``'s JWT secret and admin token live in such files in its state folder).

The file is created with ``O_EXCL`` at mode 0600, so two processes starting at once agree on one
value; a file other users can read, or one holding too short a value, is refused with a message
that says what to do.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from banyan.errors import PrivateFileError


def keep(path: Path, make: Callable[[], str], *, what: str, min_chars: int, lose: str = "") -> str:
    """The value in ``path``, made with ``make()`` when the file does not exist yet. ``what``
    names the value in messages (``secret``, ``admin token``); ``lose`` says what deleting the
    file costs (appended to the advice)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read(path, what=what, min_chars=min_chars, lose=lose)
    value = make()
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def read(path: Path, *, what: str, min_chars: int, lose: str = "") -> str:
    """The value in an existing ``path``, refused when others can read it or it is too short."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PrivateFileError(
            f"{path} can be read by other users (mode {mode:o}): delete it to make a new {what}"
            f"{lose}, or chmod 600 it"
        )
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < min_chars:
        raise PrivateFileError(f"{path} holds no usable {what}: delete it to make a new one")
    return value

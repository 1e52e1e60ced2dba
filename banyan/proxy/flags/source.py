"""Reading the flag file's bytes without ever hanging or swallowing memory.

Owns the rules for what may be read as a flag file: it is opened with ``O_NONBLOCK`` (a FIFO or a
device put in its place cannot freeze ``open()``), it must then be a regular file (``fstat``;
symlinks are followed, and one that ends at a regular file is fine), and it may hold at most
``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, ``$BANYAN_FLAGS_MAX_BYTES`` to change it): the
size is checked before reading and the read itself stops one byte past the limit, so a file that
grows meanwhile cannot slip through. Every refusal is a :class:`FlagError` on line 0.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from banyan.env import option_default
from banyan.errors import FlagError

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
MAX_BYTES_ENV = "BANYAN_FLAGS_MAX_BYTES"
_CHUNK = 1 << 16


def max_bytes_from_env() -> int:
    """The size limit: ``$BANYAN_FLAGS_MAX_BYTES`` when it is a positive integer, else the
    default (a bad value is reported where the limit is used, in the refusal's message)."""
    raw = option_default(MAX_BYTES_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULT_MAX_BYTES


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _irregular(source: str, mode: int) -> FlagError:
    return FlagError(source, 0, f"cannot read the file: it is {_kind(mode)}, not a regular file")


def _too_big(source: str, size: str, limit: int) -> FlagError:
    return FlagError(
        source,
        0,
        f"the file is {size} bytes, over the {limit}-byte limit for flag files "
        f"({MAX_BYTES_ENV} raises it)",
    )


def require_regular_file(path: str | Path) -> None:
    """Raise the same :class:`FlagError` as :func:`read_flag_bytes` unless ``path`` (symlinks
    followed) is a regular file now: for writers, before they create anything beside it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise FlagError(str(path), 0, f"cannot read the file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise FlagError(
            str(path), 0, f"cannot read the file: it is {_kind(mode)}, not a regular file"
        )


def read_flag_bytes(path: str | Path, max_bytes: int | None = None) -> bytes:
    """The bytes of the flag file at ``path``, or :class:`FlagError` saying why not."""
    source = str(path)
    limit = max_bytes_from_env() if max_bytes is None else max_bytes
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise FlagError(source, 0, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _irregular(source, info.st_mode)
        if info.st_size > limit:
            raise _too_big(source, str(info.st_size), limit)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _too_big(source, f"more than {limit}", limit)
        return b"".join(chunks)
    except OSError as exc:
        raise FlagError(source, 0, f"cannot read the file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)

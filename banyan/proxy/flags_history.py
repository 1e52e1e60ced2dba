"""``banyan flags history``: read the audit log of flag changes and print it for people.

Owns reading the log that :mod:`banyan.proxy.audit` appends (one JSON object per line) line by line
with line numbers (opened without blocking; only a regular file is read), so a corrupt line is
reported as ``FILE:LINE: reason`` and skipped instead of stopping the rest, and rendering one
entry as one readable line::

    2026-11-23 07:00:00 UTC  guard  sessions  new -> legacy  digest 1f2e3d4c5b6a  (guard ...)

The default log is the one the proxy writes for the flag file: ``$BANYAN_AUDIT_LOG``, else
``<flags stem>.audit.jsonl`` beside the flag file's resolved path (a symlinked flag file has its
log beside the link's target, exactly as the proxy resolves it).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from banyan.errors import HistoryError
from banyan.proxy.audit import default_path

REQUIRED = ("at", "source", "feature", "before", "after", "digest")


@dataclass(frozen=True, slots=True)
class Entry:
    line: int
    raw: str
    data: dict[str, Any]


@dataclass(slots=True)
class History:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "FILE:LINE: reason", in file order


def log_path(flags_file: str | Path, audit: str | Path | None = None) -> Path:
    """The audit log to read: ``audit`` when given, else the one the proxy uses for the file."""
    return Path(audit) if audit else default_path(Path(flags_file).resolve())


def _problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"not an audit entry (a JSON {type(data).__name__}, not an object)"
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        return f"not an audit entry (missing {', '.join(missing)})"
    if not isinstance(data["at"], int | float) or isinstance(data["at"], bool):
        return "not an audit entry ('at' is not a number)"
    if not isinstance(data["feature"], str):
        return "not an audit entry ('feature' is not a string)"
    return None


def _open_log(path: Path) -> BinaryIO:
    """The log opened for reading line by line, without blocking: a FIFO or a device in its
    place is refused (OSError) instead of freezing the command."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _take(history: History, number: int, raw_bytes: bytes, feature: str | None) -> None:
    """Keep line ``number`` as an entry (of ``feature``), or note why it is skipped."""
    path = history.path
    if not raw_bytes.strip():
        return
    try:
        raw = raw_bytes.decode("utf-8").strip()
        data = json.loads(raw)
    except UnicodeDecodeError:
        history.problems.append(f"{path}:{number}: not UTF-8 text; line skipped")
        return
    except ValueError as exc:
        history.problems.append(f"{path}:{number}: not valid JSON ({exc}); line skipped")
        return
    reason = _problem(data)
    if reason is not None:
        history.problems.append(f"{path}:{number}: {reason}; line skipped")
        return
    if feature is None or data["feature"] == feature:
        history.entries.append(Entry(number, raw, data))


def read_history(
    path: str | Path, *, feature: str | None = None, limit: int | None = None
) -> History:
    """Every well-formed entry (of ``feature``), oldest first, the newest ``limit`` of them."""
    path = Path(path)
    history = History(path)
    try:
        with _open_log(path) as handle:
            for number, raw_bytes in enumerate(handle, start=1):
                _take(history, number, raw_bytes, feature)
    except FileNotFoundError:
        raise HistoryError(
            f"{path}: no audit log here (the proxy writes it at the first flag change; "
            "use --audit FILE or --file FLAGS to point at another)"
        ) from None
    except OSError as exc:
        raise HistoryError(f"{path}: cannot read the audit log: {exc.strerror or exc}") from None
    if limit is not None:
        history.entries = history.entries[-limit:] if limit > 0 else []
    return history


def _state(settings: Any) -> str:
    """A feature's routing state in a few words: ``legacy``, ``canary 10%``, ``shadow (new)``."""
    if settings is None:
        return "(absent)"
    if not isinstance(settings, dict):
        return json.dumps(settings, default=str)
    mode = str(settings.get("mode", "?"))
    if mode == "canary":
        percent = settings.get("percent", 0)
        return f"canary {percent:g}%" if isinstance(percent, int | float) else "canary"
    if mode == "shadow" and settings.get("primary", "legacy") != "legacy":
        return f"shadow (primary {settings['primary']})"
    return mode


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def describe_change(before: Any, after: Any) -> str:
    """``legacy -> canary 10%``, then every other changed setting (``writes skip -> mirror``)."""
    text = f"{_state(before)} -> {_state(after)}"
    if not isinstance(before, dict) or not isinstance(after, dict):
        return text
    old, new = _flatten(before), _flatten(after)
    routing = {"mode", "percent", "primary"}
    others = [
        f"{key} {_short(old.get(key))} -> {_short(new.get(key))}"
        for key in sorted(set(old) | set(new))
        if key not in routing and old.get(key) != new.get(key)
    ]
    if _state(before) == _state(after) and others:
        return "; ".join(others)
    return "; ".join([text, *others])


def format_entry(data: dict[str, Any]) -> str:
    """One entry as one line: time, source, feature, before -> after, file hash (and reason)."""
    when = datetime.fromtimestamp(float(data["at"]), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    digest = str(data.get("digest") or "")[:12] or "-"
    line = (
        f"{when}  {data['source']!s:<5}  {data['feature']}  "
        f"{describe_change(data['before'], data['after'])}  digest {digest}"
    )
    if data.get("reason"):
        line += f"  ({data['reason']})"
    return line

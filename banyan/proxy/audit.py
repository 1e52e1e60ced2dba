"""The audit trail of flag changes: one JSON line per change, appended, never rewritten.

Every change — an edit of the file seen by the reload watcher, the CLI, the admin API or a guard —
becomes ``{"at", "source", "feature", "before", "after", "digest", "reason"}`` where ``before`` and
``after`` are the feature's settings (``null`` when the feature was added or removed). The log
lives beside the flag file as ``<name>.audit.jsonl`` unless ``BANYAN_AUDIT_LOG`` names another
path. Writers append whole lines with one ``write`` under ``O_APPEND``, so several proxy replicas
can share the file. A change is audited once, by whoever made it: ``banyan flags set|rollback``
writes its own ``cli`` entries, and a proxy that sees the file change skips its ``file`` entries
when the newest entry already carries the new file digest (the CLI's, or another replica's).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from banyan.env import option_default
from banyan.proxy.flags import Feature, FlagSet

AUDIT_LOG_ENV = "BANYAN_AUDIT_LOG"


def beside(flags_path: str | Path) -> Path:
    """``<name>.audit.jsonl`` beside the flag file."""
    flags = Path(flags_path)
    return flags.with_name(flags.stem + ".audit.jsonl")


def default_path(flags_path: str | Path) -> Path:
    """The log a command reads by default: ``$BANYAN_AUDIT_LOG``, else :func:`beside` the flag
    file (the proxy takes its path from its settings instead)."""
    configured = option_default(AUDIT_LOG_ENV, "")
    return Path(configured) if configured else beside(flags_path)


_NOT_SETTINGS = frozenset({"name", "line"})
_SETTING_NAMES = tuple(f.name for f in fields(Feature) if f.name not in _NOT_SETTINGS)


def feature_settings(feature: Feature) -> dict[str, Any]:
    """Every setting of ``feature`` (not its name or line) as plain data, nested configs as
    dicts: what ``dataclasses.asdict`` gives, built without its deep copy (the values are
    immutable), so a reload of thousands of features stays cheap."""
    data: dict[str, Any] = {}
    for name in _SETTING_NAMES:
        value = getattr(feature, name)
        if name == "rollout" and value is not None:
            value = asdict(value)  # steps nest one level deeper; rare enough to copy
        elif is_dataclass(value):
            value = {f.name: getattr(value, f.name) for f in fields(value)}
        elif isinstance(value, dict):
            value = dict(value)
        data[name] = value
    return data


def _same_settings(a: Feature, b: Feature) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in _SETTING_NAMES)


def diff_flagsets(old: FlagSet | None, new: FlagSet) -> list[tuple[str, Any, Any]]:
    """``(feature, before, after)`` for every feature whose settings differ: changed and removed
    ones in the old file's order, then added ones in the new file's order."""
    changes: list[tuple[str, Any, Any]] = []
    before = {f.name: f for f in old.features} if old else {}
    for name, feature in before.items():
        other = new.feature(name)
        if other is None:
            changes.append((name, feature_settings(feature), None))
        elif not _same_settings(feature, other):
            changes.append((name, feature_settings(feature), feature_settings(other)))
    for feature in new.features:
        if feature.name not in before:
            changes.append((feature.name, None, feature_settings(feature)))
    return changes


_BATCH = 65536


def _entry(
    source: str, feature: str, before: Any, after: Any, digest: str, reason: str | None = None
) -> dict[str, Any]:
    return {
        "at": time.time(),
        "source": source,
        "feature": feature,
        "before": before,
        "after": after,
        "digest": digest,
        "reason": reason,
    }


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()


class AuditLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(
        self,
        *,
        source: str,
        feature: str,
        before: Any,
        after: Any,
        digest: str,
        reason: str | None = None,
    ) -> dict[str, Any]:
        entry = _entry(source, feature, before, after, digest, reason)
        self._write([_line(entry)])
        return entry

    def _write(self, lines: list[bytes]) -> None:
        """Append whole lines, one ``write`` per batch of up to 64 KiB (a line never splits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            batch: list[bytes] = []
            size = 0
            for line in lines:
                if batch and size + len(line) > _BATCH:
                    os.write(fd, b"".join(batch))
                    batch, size = [], 0
                batch.append(line)
                size += len(line)
            if batch:
                os.write(fd, b"".join(batch))
        finally:
            os.close(fd)

    def record_reload(self, old: FlagSet | None, new: FlagSet, *, source: str = "file") -> int:
        """Append one entry per feature changed between two applied flag sets."""
        changes = diff_flagsets(old, new)
        self._write(
            [
                _line(_entry(source, name, before, after, new.digest))
                for name, before, after in changes
            ]
        )
        return len(changes)

    def _tail(self, size: int = 65536) -> list[dict[str, Any]]:
        """The entries in the last ``size`` bytes of the log, newest first."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - size))
                tail = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        found = []
        for line in reversed(tail.strip().splitlines()):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    def last_digest(self) -> str | None:
        """The file digest of the newest entry, if any."""
        tail = self._tail()
        return str(tail[0].get("digest")) if tail and tail[0].get("digest") else None

    def has_entry(self, feature: str, digest: str) -> bool:
        """Whether a recent entry already records ``feature`` changing to file ``digest``."""
        return any(e.get("feature") == feature and e.get("digest") == digest for e in self._tail())

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue  # a torn line from a crash: skip it, keep the rest

    def history(self, *, feature: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (optionally of one feature), newest first."""
        found = [e for e in self.entries() if feature is None or e.get("feature") == feature]
        return list(reversed(found[-limit:]))

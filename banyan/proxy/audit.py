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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from banyan.proxy.flags import Feature, FlagSet


def default_path(flags_path: str | Path) -> Path:
    env = os.environ.get("BANYAN_AUDIT_LOG")
    if env:
        return Path(env)
    flags = Path(flags_path)
    return flags.with_name(flags.stem + ".audit.jsonl")


def feature_settings(feature: Feature) -> dict[str, Any]:
    data = asdict(feature)
    data.pop("name", None)
    data.pop("line", None)
    return data


def diff_flagsets(old: FlagSet | None, new: FlagSet) -> list[tuple[str, Any, Any]]:
    """``(feature, before, after)`` for every feature whose settings differ."""
    before = {f.name: feature_settings(f) for f in old.features} if old else {}
    after = {f.name: feature_settings(f) for f in new.features}
    changes = []
    for name in list(before) + [n for n in after if n not in before]:
        if before.get(name) != after.get(name):
            changes.append((name, before.get(name), after.get(name)))
    return changes


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
        entry = {
            "at": time.time(),
            "source": source,
            "feature": feature,
            "before": before,
            "after": after,
            "digest": digest,
            "reason": reason,
        }
        line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return entry

    def record_reload(self, old: FlagSet | None, new: FlagSet, *, source: str = "file") -> int:
        """Append one entry per feature changed between two applied flag sets."""
        changes = diff_flagsets(old, new)
        for feature, before, after in changes:
            self.append(
                source=source, feature=feature, before=before, after=after, digest=new.digest
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

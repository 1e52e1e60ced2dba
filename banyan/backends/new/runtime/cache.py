"""A TTL cache of query results, invalidated by the tables a mutation writes.

Entries are keyed by (function, canonical args, caller) and remember the tables the query read
(indexed by table, so a commit touches only the entries it makes stale); a commit that writes any
of them drops those entries at once. A result whose query was running when one of its tables was
written is not stored (it may predate the write): a logout is never undone by an identity lookup
that raced it. Hits and misses are counted.
"""

from __future__ import annotations

import json
import time
from typing import Any

WRITES_REMEMBERED = 300.0  # seconds; far longer than any query runs


class QueryCache:
    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, frozenset[str], Any]] = {}
        self._readers: dict[str, set[str]] = {}  # table -> keys of the entries that read it
        self._written: dict[str, float] = {}  # table -> when a commit last wrote it
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(name: str, args: dict[str, Any], user_id: str | None) -> str:
        return json.dumps([name, args, user_id], sort_keys=True, default=str)

    def get(self, key: str) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._drop(key)
            self.misses += 1
            return False, None
        self.hits += 1
        return True, entry[2]

    def put(self, key: str, reads: set[str], value: Any, *, since: float | None = None) -> None:
        """Store ``value``; with ``since`` (when its query started, ``time.monotonic()``) only if
        none of ``reads`` was written since."""
        if since is not None and any(self._written.get(t, -1.0) >= since for t in reads):
            return
        self._drop(key)
        if len(self._entries) >= self.max_entries:
            self.prune()
            if len(self._entries) >= self.max_entries:
                self._drop(next(iter(self._entries)))
        tables = frozenset(reads)
        self._entries[key] = (time.monotonic() + self.ttl, tables, value)
        for table in tables:
            self._readers.setdefault(table, set()).add(key)

    def invalidate(self, tables: set[str]) -> int:
        now = time.monotonic()
        stale: set[str] = set()
        for table in tables:
            self._written[table] = now
            stale |= self._readers.get(table, set())
        for key in stale:
            self._drop(key)
        return len(stale)

    def prune(self) -> int:
        now = time.monotonic()
        old = [t for t, when in self._written.items() if when < now - WRITES_REMEMBERED]
        for table in old:
            del self._written[table]
        expired = [k for k, (until, _, _) in self._entries.items() if until < now]
        for key in expired:
            self._drop(key)
        return len(expired)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for table in entry[1]:
            readers = self._readers.get(table)
            if readers is not None:
                readers.discard(key)
                if not readers:
                    del self._readers[table]

    def __len__(self) -> int:
        return len(self._entries)

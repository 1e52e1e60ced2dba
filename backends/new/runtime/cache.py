"""A TTL cache of query results, invalidated by the tables a mutation writes.

Entries are keyed by (function, canonical args, caller) and remember the tables the query read; a
commit that writes any of them drops those entries at once. Hits and misses are counted.
"""

from __future__ import annotations

import json
import time
from typing import Any


class QueryCache:
    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, frozenset[str], Any]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(name: str, args: dict[str, Any], user_id: str | None) -> str:
        return json.dumps([name, args, user_id], sort_keys=True, default=str)

    def get(self, key: str) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            self.misses += 1
            return False, None
        self.hits += 1
        return True, entry[2]

    def put(self, key: str, reads: set[str], value: Any) -> None:
        if len(self._entries) >= self.max_entries:
            self.prune()
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (time.monotonic() + self.ttl, frozenset(reads), value)

    def invalidate(self, tables: set[str]) -> int:
        stale = [k for k, (_, reads, _) in self._entries.items() if reads & tables]
        for key in stale:
            del self._entries[key]
        return len(stale)

    def prune(self) -> int:
        now = time.monotonic()
        expired = [k for k, (until, _, _) in self._entries.items() if until < now]
        for key in expired:
            del self._entries[key]
        return len(expired)

    def __len__(self) -> int:
        return len(self._entries)

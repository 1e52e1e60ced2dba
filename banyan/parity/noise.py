"""Learned noise: what differs between two answers of the SAME backend is not a migration bug.

For a share of shadowed safe requests the proxy asks the primary twice; :meth:`NoiseLearner.observe`
compares the two answers with the feature's rules and counts, per feature and endpoint, every
differing path (indices generalised to ``[*]``) that may be noise. A path seen differing
``threshold`` times (default 2) is noise: later primary/candidate differences there are reported
apart, not as mismatches. Nobody has to configure timestamps or random ids.

What may be learned, so that noise never hides a real difference:

- only a *leaf*: a scalar that changed value or type between the two answers (``$.now``,
  ``$.items[*].etag``, a listed header such as ``header:date``). Never a whole list or object,
  never an element added to or removed from a list (``$.items[*]``), never a key that appears or
  disappears, never the status, never a whole text or binary body (``line``, ``body``);
- from two answers with the same status only (a different status means the state changed, or one
  of them failed: nothing in that pair is noise);
- lists of the two answers are aligned first (equal elements paired, as ``diff`` pairs lines), so a
  list that grew or shifted between the two asks — a user created an item in between — shows up
  as elements added and removed, which are never learned, instead of every field of every
  element "changing".

A path that differs only between the primary and the candidate is never observed here at all.
Endpoints are ``METHOD /path`` with id-like segments (numbers, UUIDs, long hex or base64url tokens)
replaced by ``*``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from banyan.parity.compare import (
    DEFAULT_RULES,
    Difference,
    NoisePredicate,
    Response,
    Rules,
    compare_header,
    could_be_noise,
    learnable_body_differences,
)

_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|[A-Za-z0-9_-]{22,})$"
)


def endpoint_key(method: str, path: str) -> str:
    path = path.split("?", 1)[0]
    segments = ["*" if _ID_SEGMENT.match(s) else s for s in path.split("/")]
    return f"{method.upper()} {'/'.join(segments) or '/'}"


def learnable(first: Response, second: Response, rules: Rules = DEFAULT_RULES) -> list[str]:
    """The paths (generalised) at which two answers of one backend to one request differ and
    which may be noise: leaves only, see the module docstring."""
    if first.error or second.error or first.status != second.status:
        return []
    found: list[Difference] = []
    for name in rules.headers:
        found.extend(compare_header(name, first.headers, second.headers))
    found.extend(learnable_body_differences(first, second, rules))
    return sorted(
        {
            d.pattern
            for d in found
            if could_be_noise(d)
            and d.pattern not in ("status", "body", "line")
            and not (d.pattern.startswith("header:") and (d.primary is None or d.candidate is None))
        }
    )


class NoiseLearner:
    def __init__(self, threshold: int = 2, paths_per_endpoint: int = 100) -> None:
        self.threshold = threshold
        self.paths_per_endpoint = paths_per_endpoint  # counted paths; new ones past it are not
        self.counts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)

    def observe(
        self,
        feature: str,
        endpoint: str,
        first: Response,
        second: Response,
        rules: Rules = DEFAULT_RULES,
    ) -> list[str]:
        """Record one pair of answers of one backend; returns the learnable paths that differed."""
        seen = self.counts[(feature, endpoint)]
        found = []
        for pattern in learnable(first, second, rules):
            if pattern in seen or len(seen) < self.paths_per_endpoint:
                seen[pattern] = seen.get(pattern, 0) + 1
                found.append(pattern)
        return found

    def load(self, feature: str, endpoint: str, pattern: str, count: int) -> None:
        seen = self.counts[(feature, endpoint)]
        seen[pattern] = max(count, seen.get(pattern, 0))

    def is_noise(self, feature: str, endpoint: str, pattern: str) -> bool:
        return self.counts.get((feature, endpoint), {}).get(pattern, 0) >= self.threshold

    def predicate(self, feature: str, endpoint: str) -> NoisePredicate:
        seen = self.counts.get((feature, endpoint), {})
        threshold = self.threshold
        return lambda pattern: seen.get(pattern, 0) >= threshold

    def learned(self, feature: str | None = None) -> list[dict[str, Any]]:
        """What is noise now: ``{"feature", "endpoint", "path", "count"}``, sorted."""
        return [
            {"feature": f, "endpoint": e, "path": p, "count": n}
            for (f, e), seen in sorted(self.counts.items())
            if feature is None or f == feature
            for p, n in sorted(seen.items())
            if n >= self.threshold
        ]

    def clear(self, feature: str | None = None) -> None:
        """Drop every count (of ``feature``): nothing is noise until seen again."""
        for key in [k for k in self.counts if feature is None or k[0] == feature]:
            del self.counts[key]

    def forget(self, path: str, feature: str | None = None) -> int:
        """Forget ``path`` (every endpoint of ``feature``, or of every feature): it must be seen
        differing within one backend ``threshold`` times again to be noise. Returns how many
        learned entries were dropped."""
        dropped = 0
        for (f, _), seen in self.counts.items():
            if (feature is None or f == feature) and path in seen:
                dropped += seen.pop(path) >= self.threshold
        return dropped

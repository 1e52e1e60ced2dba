"""Learned noise: what differs between two answers of the SAME backend is not a migration bug.

For a share of shadowed safe requests the proxy asks the primary twice; :meth:`NoiseLearner.observe`
compares the two answers with the feature's rules and counts every differing path (indices
generalised to ``[*]``) for that endpoint. A path seen differing ``threshold`` times (default 2) is
noise: later primary/candidate differences there are reported apart, not as mismatches. Nobody has
to configure timestamps or random ids. Endpoints are ``METHOD /path`` with id-like segments
(numbers, UUIDs, long hex or base64url tokens) replaced by ``*``.
"""

from __future__ import annotations

import re
from collections import defaultdict

from banyan.parity.compare import DEFAULT_RULES, NoisePredicate, Response, Rules, compare

_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|[A-Za-z0-9_-]{22,})$"
)


def endpoint_key(method: str, path: str) -> str:
    path = path.split("?", 1)[0]
    segments = ["*" if _ID_SEGMENT.match(s) else s for s in path.split("/")]
    return f"{method.upper()} {'/'.join(segments) or '/'}"


class NoiseLearner:
    def __init__(self, threshold: int = 2) -> None:
        self.threshold = threshold
        self.counts: dict[str, dict[str, int]] = defaultdict(dict)
        self.samples: dict[str, int] = defaultdict(int)

    def observe(
        self, endpoint: str, first: Response, second: Response, rules: Rules = DEFAULT_RULES
    ) -> list[str]:
        """Record one pair of answers of one backend; returns the paths that differed."""
        self.samples[endpoint] += 1
        result = compare(first, second, rules)
        found = sorted({d.pattern for d in result.differences if d.kind != "error"})
        seen = self.counts[endpoint]
        for pattern in found:
            seen[pattern] = seen.get(pattern, 0) + 1
        return found

    def load(self, endpoint: str, pattern: str, count: int) -> None:
        self.counts[endpoint][pattern] = max(count, self.counts[endpoint].get(pattern, 0))

    def is_noise(self, endpoint: str, pattern: str) -> bool:
        return self.counts.get(endpoint, {}).get(pattern, 0) >= self.threshold

    def predicate(self, endpoint: str) -> NoisePredicate:
        seen = self.counts.get(endpoint, {})
        threshold = self.threshold
        return lambda pattern: seen.get(pattern, 0) >= threshold

    def noise_paths(self, endpoint: str) -> list[tuple[str, int]]:
        seen = self.counts.get(endpoint, {})
        return sorted((p, n) for p, n in seen.items() if n >= self.threshold)

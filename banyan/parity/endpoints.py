"""The endpoints parity counts by, kept few: ids collapse, and each feature has a cap.

An endpoint is ``METHOD /path`` with every segment that looks like an id written ``{id}``
(:func:`endpoint_of`): numbers, UUIDs, hex digests, base64url or base62 tokens, anything mixing
letters and digits, e-mail addresses, long or percent-encoded segments. What a heuristic cannot
tell from a route word (a room called ``quiet-otter``) is bounded by :class:`EndpointCap`: once a
feature has ``cap`` distinct endpoints, every new one is counted under the one endpoint ``other``.
So the parity store's rows do not grow with the paths clients send, whatever they are.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

OTHER = "other"
DEFAULT_CAP = 200

_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_NUMBER = re.compile(r"^[+-]?\d+([.,]\d+)?$")
_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{8,}$")
_PART = r"[A-Za-z][a-z]*(?:[A-Z][a-z]+)*"  # a word, or camelCase words
_WORD = re.compile(rf"^_?{_PART}(?:[-_.]{_PART})*$")
_VERSION = re.compile(r"^(v\d{1,2}|[a-z]{3,}\d{1,3})$")  # v1, base64, oauth2, sha256


def looks_like_id(segment: str) -> bool:
    """Whether a path segment is a value (an id, a hash, a token, a name) rather than a route
    word. Route words are letters, possibly joined by ``-``, ``_`` or ``.``, in lower, title or
    camel case, at most 32 characters (``sessions``, ``read-all``, ``robots.txt``,
    ``_proxy``), or a version or lower-case word with a short number (``v1``, ``base64``)."""
    if not segment or _VERSION.match(segment):
        return False
    if _UUID.match(segment) or _NUMBER.match(segment) or _HEX.match(segment):
        return True
    return len(segment) > 32 or not _WORD.match(segment)


def endpoint_of(method: str, path: str) -> str:
    """``METHOD /path`` with id-like segments as ``{id}`` (the query is left out)."""
    path = path.split("?", 1)[0]
    segments = ["{id}" if looks_like_id(s) else s for s in path.split("/")]
    return f"{method.upper()} {'/'.join(segments) or '/'}"


CACHED = 4096  # (method, path) pairs whose endpoint is remembered (most requests repeat a few)


class EndpointCap:
    """At most ``cap`` distinct endpoints per feature; the rest are ``other``.

    :func:`endpoint_of` runs a few regular expressions per segment; its answers for the last
    :data:`CACHED` distinct (method, path) pairs are kept, since every shadowed request asks."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.cap = cap
        self.known: dict[str, set[str]] = defaultdict(set)
        self._endpoints: dict[tuple[str, str], str] = {}

    def load(self, rows: Iterable[tuple[str, str]]) -> None:
        """Endpoints already in the store, (feature, endpoint): they keep their own rows."""
        for feature, endpoint in rows:
            if endpoint != OTHER:
                self.known[feature].add(endpoint)

    def clear(self, feature: str | None = None) -> None:
        """Forget the endpoints counted (of ``feature``): the cap starts again from none."""
        if feature is None:
            self.known.clear()
        else:
            self.known.pop(feature, None)

    def key(self, feature: str, method: str, path: str) -> str:
        endpoint = self._endpoints.get((method, path))
        if endpoint is None:
            endpoint = endpoint_of(method, path)
            if len(self._endpoints) >= CACHED:
                self._endpoints.clear()
            self._endpoints[(method, path)] = endpoint
        known = self.known[feature]
        if endpoint in known:
            return endpoint
        if len(known) >= self.cap:
            return OTHER
        known.add(endpoint)
        return endpoint

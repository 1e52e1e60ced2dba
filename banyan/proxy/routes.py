"""Route patterns: their grammar and a segment tree that matches paths and finds dead routes.

Owns the pattern grammar (``/api/x``, ``*`` for exactly one non-empty segment, ``**`` as the last
segment for any rest including nothing), :func:`covers` (one pattern makes another dead) and
:class:`RouteTable`, a tree of segments built once per flag load. A table answers both questions
the flag file asks in time that grows with the length of the path, not with the number of routes:
which route (the first in file order) matches a request path, and which earlier route makes a new
pattern dead. Ten thousand routes cost no more per request than ten.
"""

from __future__ import annotations

from banyan.errors import RouteError

NO_ROUTE = -1
_NEVER = 1 << 62  # larger than any route index


def parse_route(pattern: str) -> tuple[str, ...]:
    """Split a route pattern into segments, enforcing the grammar (raises :class:`RouteError`)."""
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise RouteError(f"route {pattern!r} must start with '/'")
    if any(ch.isspace() for ch in pattern) or "?" in pattern or "#" in pattern:
        raise RouteError(f"route {pattern!r} must not contain spaces, '?' or '#'")
    if pattern == "/":
        return ()
    segments = tuple(pattern[1:].split("/"))
    for index, segment in enumerate(segments):
        if segment == "":
            raise RouteError(f"route {pattern!r} has an empty segment")
        if segment == "**" and index != len(segments) - 1:
            raise RouteError(f"route {pattern!r}: '**' is only allowed as the last segment")
        if "*" in segment and segment not in {"*", "**"}:
            raise RouteError(f"route {pattern!r}: a wildcard must be a whole segment ('*' or '**')")
    return segments


def covers(earlier: tuple[str, ...], later: tuple[str, ...]) -> bool:
    """True when every path matched by ``later`` is already matched by ``earlier``."""
    for index, seg in enumerate(earlier):
        if seg == "**":
            return True
        if index >= len(later):
            return False
        other = later[index]
        if other == "**":
            return False
        if seg == "*":
            continue
        if seg != other:
            return False
    return len(earlier) == len(later)


class _Node:
    """One position in the tree: literal children, the ``*`` child, and the first route (lowest
    index) that ends here exactly (``end``) or with ``**`` (``rest``)."""

    __slots__ = ("children", "end", "rest", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.end = _NEVER
        self.rest = _NEVER


class RouteTable:
    """Parsed routes, numbered in the order added (file order: the lower number wins)."""

    def __init__(self) -> None:
        self._root = _Node()
        self.size = 0

    def add(self, segments: tuple[str, ...]) -> int:
        """Add one parsed route; returns its number."""
        index = self.size
        self.size += 1
        node = self._root
        for seg in segments:
            if seg == "**":
                node.rest = min(node.rest, index)
                return index
            if seg == "*":
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                child = node.children.get(seg)
                if child is None:
                    child = node.children[seg] = _Node()
                node = child
        node.end = min(node.end, index)
        return index

    def match(self, path: str) -> int:
        """The number of the first route matching ``path`` (no query), or :data:`NO_ROUTE`.

        One trailing ``/`` is ignored; ``*`` needs a non-empty segment; ``**`` takes any rest."""
        if not path.startswith("/"):
            return NO_ROUTE
        segments = path[1:].split("/")
        last = len(segments) - 1
        best = _NEVER
        frontier = [self._root]
        for position, seg in enumerate(segments):
            following: list[_Node] = []
            for node in frontier:
                best = min(best, node.rest)
                if position == last and seg == "":
                    best = min(best, node.end)  # the trailing '/' of ".../x/"
                child = node.children.get(seg)
                if child is not None:
                    following.append(child)
                if node.star is not None and seg:
                    following.append(node.star)
            if not following:
                return best if best != _NEVER else NO_ROUTE
            frontier = following
        for node in frontier:
            best = min(best, node.rest, node.end)
        return best if best != _NEVER else NO_ROUTE

    def covering(self, segments: tuple[str, ...]) -> int:
        """The number of the first route already added that equals ``segments`` or matches every
        path they match (so a route ``segments`` would be dead), or :data:`NO_ROUTE`."""
        best = _NEVER
        frontier = [self._root]
        for seg in segments:
            following: list[_Node] = []
            for node in frontier:
                best = min(best, node.rest)
                if seg == "**":
                    continue  # only an earlier '**' here covers a '**'
                if seg == "*":
                    if node.star is not None:
                        following.append(node.star)
                    continue
                child = node.children.get(seg)
                if child is not None:
                    following.append(child)
                if node.star is not None:
                    following.append(node.star)
            frontier = following
            if seg == "**" or not frontier:
                break
        else:
            for node in frontier:
                best = min(best, node.rest, node.end)
        return best if best != _NEVER else NO_ROUTE

"""The JSONPath subset parity rules use, and the rendering of concrete paths.

Patterns: ``$`` (the root), ``.name`` or ``['any name']`` (a key), ``[N]`` (an index), ``[*]``
(any index) and ``..name`` (the key ``name`` at any depth). A concrete location in a document is a
tuple of keys and indices, rendered as ``$.items[3].title``. A pattern *covers* a location when it
matches the location or one of its ancestors, so ignoring ``$.meta`` ignores everything under it.
"""

from __future__ import annotations

import re
from functools import lru_cache

from banyan.errors import PathError

Segment = str | int
Location = tuple[Segment, ...]
Token = tuple[
    str, str | int | None
]  # ("key", name) | ("index", n) | ("any", None) | ("deep", name)

_TOKEN = re.compile(
    r"""\.\.(?P<deep>[A-Za-z_][\w-]*)
      | \.(?P<key>[A-Za-z_][\w-]*)
      | \[\s*'(?P<quoted>(?:[^'\\]|\\.)*)'\s*\]
      | \[\s*(?P<index>\d+)\s*\]
      | \[\s*(?P<any>\*)\s*\]""",
    re.X,
)
_IDENT = re.compile(r"[A-Za-z_][\w-]*")


@lru_cache(maxsize=1024)
def parse(pattern: str) -> tuple[Token, ...]:
    if not pattern.startswith("$"):
        raise PathError(f"path {pattern!r} must start with '$'")
    tokens: list[Token] = []
    pos = 1
    while pos < len(pattern):
        match = _TOKEN.match(pattern, pos)
        if match is None:
            raise PathError(f"path {pattern!r}: cannot read from {pattern[pos:]!r}")
        if match.group("deep") is not None:
            tokens.append(("deep", match.group("deep")))
        elif match.group("key") is not None:
            tokens.append(("key", match.group("key")))
        elif match.group("quoted") is not None:
            tokens.append(("key", match.group("quoted").replace("\\'", "'")))
        elif match.group("index") is not None:
            tokens.append(("index", int(match.group("index"))))
        else:
            tokens.append(("any", None))
        pos = match.end()
    return tuple(tokens)


def _match(tokens: tuple[Token, ...], location: Location, prefix: bool) -> bool:
    if not tokens:
        return prefix or not location
    kind, value = tokens[0]
    if kind == "deep":
        for start in range(len(location)):
            if location[start] == value and _match(tokens[1:], location[start + 1 :], prefix):
                return True
        return False
    if not location:
        return False
    head = location[0]
    if kind == "key":
        ok = isinstance(head, str) and head == value
    elif kind == "index":
        ok = isinstance(head, int) and head == value
    else:
        ok = isinstance(head, int)
    return ok and _match(tokens[1:], location[1:], prefix)


def covers(pattern: str, location: Location) -> bool:
    """True when ``pattern`` matches ``location`` or one of its ancestors."""
    return _match(parse(pattern), location, prefix=True)


def matches(pattern: str, location: Location) -> bool:
    """True when ``pattern`` matches exactly ``location``."""
    return _match(parse(pattern), location, prefix=False)


def render(location: Location) -> str:
    out = ["$"]
    for segment in location:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        elif _IDENT.fullmatch(segment):
            out.append(f".{segment}")
        else:
            escaped = segment.replace("'", "\\'")
            out.append(f"['{escaped}']")
    return "".join(out)


def generalise(location: Location) -> str:
    """The location with every index replaced by ``[*]`` and every key that looks like an id (an
    object keyed by ids, dates, e-mails) by ``{id}``: how differences are counted and noise
    remembered, so their number does not grow with the data."""
    from banyan.parity.endpoints import looks_like_id

    general = tuple(
        -1 if isinstance(s, int) else "{id}" if looks_like_id(s) else s for s in location
    )
    return render(general).replace("[-1]", "[*]")

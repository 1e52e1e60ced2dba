"""How deep a JSON text nests, found without parsing it, and a parse that refuses deep texts.

Python's ``json`` parser recurses once per nesting level, so a text of 100,000 ``[`` raises
``RecursionError`` (not ``ValueError``) and costs a deep stack on the way. Everything in Banyan
that parses JSON it did not write (request bodies in the backends, socket frames and answers the
proxy compares) measures the depth first with :func:`nesting_depth`, which is linear and runs in C.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

from banyan.errors import TooDeep

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes

#: Deepest text :func:`loads_shallow` parses; far past any answer or frame of the AI Tutor.
DEFAULT_LIMIT = 128


def nesting_depth(raw: bytes, limit: int) -> int:
    """How deep objects and lists nest in ``raw``: 0 when it cannot exceed ``limit`` (too few
    brackets), ``limit + 1`` at once for a run of more openers than that, else the exact depth.

    Strings are cut out without a regex: escaped backslashes and escaped quotes go first, then
    every other piece between quotes is outside a string. Each step is one pass in C, so the
    scan stays linear whatever the input (an unterminated string simply runs to the end)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    steps = outside.translate(_STEPS, _NOT_BRACKETS)
    if b"\x01" * (limit + 1) in steps:  # a run of openers says it at once (100,000 ``[``)
        return limit + 1
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def loads_shallow(data: bytes | str, limit: int = DEFAULT_LIMIT) -> Any:
    """``json.loads`` for text from outside: raises :class:`TooDeep` (a ``ValueError``) instead of
    recursing past ``limit`` levels, and ``ValueError`` for anything else it cannot read."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if nesting_depth(raw, limit) > limit:
        raise TooDeep(f"JSON nested deeper than {limit} levels")
    try:
        return json.loads(raw)
    except RecursionError:  # pragma: no cover - the depth check above comes first
        raise TooDeep(f"JSON nested deeper than {limit} levels") from None

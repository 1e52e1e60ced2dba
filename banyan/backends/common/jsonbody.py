"""Decoding client JSON (request bodies and socket frames) under the contract's input rules.

Both backends decode every JSON body and socket frame here, so hostile input gets the same answer
on each (docs/api.md, "Request bodies"). First failure answers, in this order:

- bytes that are not UTF-8 -> ``invalid_json`` ``<subject> is not valid JSON``;
- nesting deeper than :data:`MAX_DEPTH` (an object or a list is one level; brackets inside
  strings do not count) -> ``invalid_json`` ``...: nested deeper than 64 levels``. This is
  checked before parsing, so 100,000 ``[`` never reach the parser's recursion;
- malformed JSON, ``NaN`` / ``Infinity`` (not JSON) -> ``invalid_json`` ``<subject> is not valid
  JSON``;
- then, in document order (keys before their values): a lone surrogate escape in a string ->
  ``invalid_json`` ``...: a string holds a lone surrogate``; ``U+0000`` in a string (PostgreSQL
  text cannot hold it) -> ``validation_error`` ``<path>: must not contain U+0000``; an integer
  outside 64 bits (what the stores hold) -> ``<path>: must be between -2^63 and 2^63-1``; a float
  that overflows (``1e400``) -> ``<path>: must be a finite number``.

Paths name the value as validation messages do (``context.a.b[1]``); a value at the top is
``body`` (``frame`` for sockets). The value checks walk the document only when the parser met a
number out of range or the raw text holds a surrogate or NUL escape, so ordinary bodies pay for
little more than the parse (``python -m bench.json_decode``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from banyan import jsondepth
from banyan.backends.common.errors import InvalidJson, ValidationError

MAX_DEPTH = 64
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
LONGEST_INT = len(str(INT_MIN))  # an integer written longer is out of range without parsing it

_ESCAPES = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")  # a surrogate half or U+0000, escaped
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(data: bytes | str, *, subject: str = "request body", root: str = "body") -> Any:
    """Parse ``data`` under the rules above; raise :class:`InvalidJson` or
    :class:`ValidationError` with the contract's message."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson(f"{subject} is not valid JSON") from None
    if nesting_depth(raw) > MAX_DEPTH:
        raise InvalidJson(f"{subject} is not valid JSON: nested deeper than {MAX_DEPTH} levels")
    numbers = _NumberWatch()
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_int=numbers.integer, parse_float=numbers.real
        )
    except (ValueError, RecursionError):
        raise InvalidJson(f"{subject} is not valid JSON") from None
    if numbers.risky or (b"\\u" in raw and _ESCAPES.search(raw)):
        _check(value, (), subject, root)
    return value


def nesting_depth(raw: bytes) -> int:
    """How deep objects and lists nest in ``raw`` (0 when it cannot exceed :data:`MAX_DEPTH`, and
    ``MAX_DEPTH + 1`` at once for a run of more openers than that); see
    :func:`banyan.jsondepth.nesting_depth`."""
    return jsondepth.nesting_depth(raw, MAX_DEPTH)


class _NumberWatch:
    """Parses numbers for :func:`json.loads` and notes whether one may break a value rule, so the
    document is walked only then. An integer too long to be in range is not parsed at all (long
    digit strings cost quadratic time): it stands as one past the range, which the walk refuses."""

    __slots__ = ("risky",)

    def __init__(self) -> None:
        self.risky = False

    def integer(self, text: str) -> int:
        if len(text) > LONGEST_INT:
            self.risky = True
            return INT_MIN - 1 if text.startswith("-") else INT_MAX + 1
        value = int(text)
        if not INT_MIN <= value <= INT_MAX:
            self.risky = True
        return value

    def real(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            self.risky = True
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check(value: Any, path: tuple[str | int, ...], subject: str, root: str) -> None:
    if isinstance(value, str):
        _check_text(value, path, subject, root)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValidationError(f"{render(path, root)}: must be between {INT_MIN} and {INT_MAX}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{render(path, root)}: must be a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, (*path, key), subject, root)
            _check(item, (*path, key), subject, root)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, (*path, index), subject, root)


def _check_text(text: str, path: tuple[str | int, ...], subject: str, root: str) -> None:
    if _SURROGATE.search(text):
        raise InvalidJson(f"{subject} is not valid JSON: a string holds a lone surrogate")
    if "\x00" in text:
        raise ValidationError(f"{render(path, root)}: must not contain U+0000")


def render(path: tuple[str | int, ...], root: str = "body") -> str:
    """``("context", "a", 1)`` -> ``context.a[1]``; the top value is ``root``."""
    out = root if not path or isinstance(path[0], int) else ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out

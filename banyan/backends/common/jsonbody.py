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
``body`` (``frame`` for sockets). The value checks walk the document only when a cheap scan of
the raw text shows it could fail one, so ordinary bodies pay for one regex search.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate, repeat
from operator import sub
from typing import Any

from banyan.backends.common.errors import InvalidJson, ValidationError

MAX_DEPTH = 64
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

# A JSON string, possessive so it never backtracks; an unterminated one runs to the end (or to a
# final lone backslash), so the scan is linear whatever the input.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # +1 / -1 once 1 is subtracted
# What could make a value check fail: a surrogate or NUL escape, 19+ digits, a 3-digit exponent.
_RISKY = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)|[0-9]{19}|[eE][+-]?[0-9]{3}")
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
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise InvalidJson(f"{subject} is not valid JSON") from None
    if _RISKY.search(raw):
        _check(value, (), subject, root)
    return value


def nesting_depth(raw: bytes) -> int:
    """How deep objects and lists nest in ``raw`` (0 when it cannot exceed :data:`MAX_DEPTH`)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0
    brackets = _STRING.sub(b"", raw).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(map(sub, brackets, repeat(1))), default=0)


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

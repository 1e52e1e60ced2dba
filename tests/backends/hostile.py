"""Hypothesis strategies for hostile client input, and what the contract says about each value.

Used by ``test_contract_fuzz.py``. Values cover the contract's input rules (docs/api.md, "Request
bodies"): text with lone surrogates, U+0000, controls and astral characters; integers around and
far beyond 64 bits; floats including inf and nan (``json.dumps`` writes them as the non-JSON
literals ``Infinity`` / ``NaN``); deep nesting; large sizes; garbage bytes; hostile query strings
and cursors; multipart parts. :func:`must_be_refused` says, independently of the backends' code,
whether a decoded value breaks a rule, so the fuzz can demand a 4xx for it.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

MAX_DEPTH = 64
INT64 = (-(2**63), 2**63 - 1)

any_char = st.characters(exclude_categories=())  # surrogates included
any_text = st.text(any_char, max_size=30)
plain_text = st.text(max_size=30)
edge_ints = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30, -(10**40)])
integers = (
    edge_ints
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-3, max_value=300)
)
numbers = integers | st.floats()  # inf, -inf and nan included
sized_text = st.sampled_from([1, 100, 101, 200, 201, 4000, 4001, 20_000, 20_001, 70_000]).map(
    lambda n: "y" * n
)
# the values issue 15 and its review found: each is a rule of the contract
refused_leaves = st.sampled_from(
    ["\ud800", "ok \udfff", "\ud83d", "a\x00b", float("inf"), float("nan"), 2**63, -(2**63) - 1]
)
leaves = refused_leaves | st.none() | st.booleans() | numbers | any_text | plain_text | sized_text

json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def fields_of(names: tuple[str, ...]) -> st.SearchStrategy[dict[Any, Any]]:
    """Objects built from an endpoint's own field names (and stray ones) with hostile values."""
    keys = st.sampled_from(names) | any_text if names else any_text
    return st.dictionaries(keys, refused_leaves | json_values, max_size=len(names) + 2)


def deeply_nested(levels: int, kind: str, closed: bool) -> bytes:
    """``levels`` of lists or objects, closed or left open (100,000 ``[`` was issue 15)."""
    opener, closer = (b"[", b"]") if kind == "list" else (b'{"a":', b"}")
    middle = b"1" if kind == "list" else b"{}"
    return opener * levels + (middle + closer * levels if closed else b"")


deep_bodies = st.builds(
    deeply_nested,
    st.integers(min_value=MAX_DEPTH + 1, max_value=120_000),
    st.sampled_from(["list", "object"]),
    st.booleans(),
)
big_bodies = st.sampled_from([2**16, 2**20 - 20, 2**20 + 1]).map(
    lambda n: b'{"text": "' + b"z" * n + b'"}'
)


def encode(value: Any) -> bytes:
    """JSON as a hostile client writes it: ``NaN``/``Infinity`` literals, ``\\ud800`` escapes."""
    return json.dumps(value).encode()


def nesting(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    return 0


def must_be_refused(value: Any) -> bool:
    """Whether ``value`` breaks one of the contract's input rules (whatever the endpoint)."""
    if isinstance(value, str):
        return "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return not INT64[0] <= value <= INT64[1]
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
        return nesting(value) > MAX_DEPTH or any(must_be_refused(v) for v in items)
    if isinstance(value, list):
        return nesting(value) > MAX_DEPTH or any(must_be_refused(v) for v in value)
    return False


# -- query strings --------------------------------------------------------------------------------

QUERY_KEYS = ("limit", "cursor", "folder_id", "from", "to", "format", "token")


def cursor_text(number: int, item: str) -> str:
    raw = f"{number}:{item}".encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


query_values = (
    any_text
    | numbers.map(str)
    | st.builds(cursor_text, integers, any_text | st.uuids().map(str))
    | st.datetimes().map(lambda d: d.isoformat() + "Z")
    | st.sampled_from(["none", "json", "update", "99999-01-01T00:00:00Z", "0", "-1", "201"])
)
queries = st.fixed_dictionaries(
    {}, optional={key: query_values for key in QUERY_KEYS}
) | st.dictionaries(plain_text, query_values, max_size=3)
HUGE_CURSOR = cursor_text(10**22, "0b8c9a1e-4b1a-4d8e-9a35-62616e79616e")  # issue 15: once a 500


def query_string(params: dict[str, str]) -> str:
    """``params`` percent-encoded as UTF-8 bytes (a lone surrogate becomes invalid UTF-8)."""

    def part(text: str) -> str:
        return quote(text.encode("utf-8", "surrogatepass"), safe="")

    return "&".join(f"{part(k)}={part(v)}" for k, v in params.items())


# -- multipart ------------------------------------------------------------------------------------

part_names = st.sampled_from(["file", "title"]) | plain_text
parts = st.lists(
    st.tuples(
        part_names,
        st.none() | any_text,  # the file name
        st.none() | st.sampled_from(["text/plain", "application/pdf", "image/png"]) | plain_text,
        st.binary(max_size=200) | any_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    max_size=4,
)


def multipart(items: list[tuple[str, str | None, str | None, bytes]]) -> bytes:
    """A multipart body with boundary ``B``; names and file names go in RFC 5987 form."""
    out = b""
    for name, filename, content_type, data in items:
        header = "Content-Disposition: form-data; name*=UTF-8''" + _ext(name)
        if filename is not None:
            header += "; filename*=UTF-8''" + _ext(filename)
        if content_type is not None:
            header += "\r\nContent-Type: " + quote(content_type, safe="/;= ")
        out += b"--B\r\n" + header.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--B--\r\n"


def _ext(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")

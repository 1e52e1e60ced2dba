"""Comparing two answers to the same request: status, chosen headers and bodies.

Bodies are decoded first (``Content-Encoding`` gzip, deflate — zlib or raw — and br). Two JSON
bodies are compared structurally and every difference is typed and located exactly:
``changed`` (same type, other value), ``type`` (other JSON type; ``true`` is not ``1``), ``added``
(only the candidate has it) and ``removed`` (only the primary has it), at paths like
``$.items[3].title``. Rules from the feature's ``parity:`` block apply: ``ignore`` (never compared,
with everything below), ``mask`` (only presence and type compared), ``unordered`` (arrays compared
as multisets) and ``tolerance`` (numbers equal when ``|a - b| <= tolerance * max(|a|, |b|, 1)``).
Server-sent event streams (``text/event-stream``) are compared as JSON too — the list of events,
each ``{"event", "data"}`` with ``data`` parsed when it is JSON — so a stream's event sequence and
payloads are located exactly (``$[3].data.answer.content``) and the feature's rules apply inside
them. Other text bodies are compared line by line (paths ``line:N``); binary bodies by digest.

Differences at paths the noise learner knows (the same backend answering differently to the same
request) are returned apart in ``Comparison.noise`` and do not make a mismatch.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from banyan.jsondepth import loads_shallow
from banyan.parity import paths
from banyan.parity.paths import Location

Kind = str  # changed | type | added | removed | error


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    latency_ms: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    ignore: tuple[str, ...] = ()
    unordered: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()
    headers: tuple[str, ...] = ("content-type",)
    tolerance: float = 0.0

    @classmethod
    def from_config(cls, config: Any) -> Rules:
        return cls(
            ignore=tuple(config.ignore),
            unordered=tuple(config.unordered),
            mask=tuple(config.mask),
            headers=tuple(h.lower() for h in config.headers),
            tolerance=float(config.tolerance),
        )


@dataclass(frozen=True, slots=True)
class Difference:
    path: str
    kind: Kind
    primary: Any
    candidate: Any
    pattern: str = ""  # the path with indices generalised, for counting and noise

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "primary": self.primary,
            "candidate": self.candidate,
            "pattern": self.pattern,
        }


@dataclass(slots=True)
class Comparison:
    match: bool
    status_match: bool
    primary_status: int
    candidate_status: int
    differences: list[Difference] = field(default_factory=list)
    noise: list[Difference] = field(default_factory=list)
    error: str | None = None


NoisePredicate = Callable[[str], bool]
DEFAULT_RULES = Rules()
_MISSING = object()


def decode_body(body: bytes, headers: Mapping[str, str]) -> bytes:
    """Undo ``Content-Encoding`` (possibly several, applied in order)."""
    encodings = [
        e.strip().lower() for e in headers.get("content-encoding", "").split(",") if e.strip()
    ]
    for encoding in reversed(encodings):
        if encoding in ("gzip", "x-gzip"):
            body = gzip.decompress(body)
        elif encoding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        elif encoding != "identity":
            raise ValueError(f"unsupported content-encoding {encoding!r}")
    return body


def parse_json(body: bytes, headers: Mapping[str, str]) -> Any:
    """The JSON value of a body, or ``_MISSING`` when it is not JSON."""
    content_type = headers.get("content-type", "")
    if not body.strip() or ("json" not in content_type and body.lstrip()[:1] not in (b"{", b"[")):
        return _MISSING
    try:
        return loads_shallow(body)
    except (ValueError, UnicodeDecodeError):
        return _MISSING


def is_event_stream(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """A server-sent event stream as a list of ``{"event", "data"[, "id"]}`` (``data`` is the
    parsed JSON when it is JSON, else the text; comments and retry hints are left out)."""
    events: list[dict[str, Any]] = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        name, data, ident = "message", [], None
        for line in block.split("\n"):
            field_name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field_name == "event":
                name = value
            elif field_name == "data":
                data.append(value)
            elif field_name == "id":
                ident = value
        if not data and ident is None:
            continue
        text = "\n".join(data)
        try:
            payload: Any = loads_shallow(text)
        except ValueError:
            payload = text
        event: dict[str, Any] = {"event": name, "data": payload}
        if ident is not None:
            event["id"] = ident
        events.append(event)
    return events


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def compare(
    primary: Response,
    candidate: Response,
    rules: Rules = DEFAULT_RULES,
    noise: NoisePredicate | None = None,
) -> Comparison:
    result = Comparison(
        match=False,
        status_match=primary.status == candidate.status,
        primary_status=primary.status,
        candidate_status=candidate.status,
    )
    if primary.error or candidate.error:
        result.error = candidate.error or primary.error
        side = "candidate" if candidate.error else "primary"
        result.differences.append(
            Difference("$", "error", primary.error, candidate.error, f"error:{side}")
        )
        return result
    found: list[Difference] = []
    if not result.status_match:
        found.append(Difference("status", "changed", primary.status, candidate.status, "status"))
    p_headers, c_headers = _lower(primary.headers), _lower(candidate.headers)
    for name in rules.headers:
        found.extend(compare_header(name, primary.headers, candidate.headers))
    found.extend(compare_bodies(primary.body, p_headers, candidate.body, c_headers, rules))
    for difference in found:
        if noise is not None and could_be_noise(difference) and noise(difference.pattern):
            result.noise.append(difference)
        else:
            result.differences.append(difference)
    result.match = not result.differences
    return result


def could_be_noise(difference: Difference) -> bool:
    """Only a scalar that changed value or type can be noise: learned noise at ``$.x`` or
    ``header:set-cookie`` never hides ``$.x`` missing, or a dropped ``Set-Cookie`` line."""
    return (
        difference.kind in ("changed", "type")
        and not isinstance(difference.primary, dict | list)
        and not isinstance(difference.candidate, dict | list)
    )


def header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name`` (lower case), in order: a multidict keeps repetitions."""
    return [v for k, v in headers.items() if k.lower() == name]


def compare_header(
    name: str, primary: Mapping[str, str], candidate: Mapping[str, str]
) -> list[Difference]:
    """A header compared as the ordered list of its values: a dropped, added, changed or moved
    repetition (one of three ``Set-Cookie`` lines) is a difference, located by its index
    (``header:set-cookie[1]``) when the header is repeated on either side."""
    a, b = header_values(primary, name), header_values(candidate, name)
    if a == b:
        return []
    pattern = f"header:{name}"
    if len(a) <= 1 and len(b) <= 1:
        first, second = (a[0] if a else None), (b[0] if b else None)
        kind = "added" if first is None else "removed" if second is None else "changed"
        return [Difference(pattern, kind, first, second, pattern)]
    out: list[Difference] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            old = a[i1 + k] if i1 + k < i2 else None
            new = b[j1 + k] if j1 + k < j2 else None
            index = i1 + k if old is not None else j1 + k
            kind = "added" if old is None else "removed" if new is None else "changed"
            out.append(Difference(f"{pattern}[{index}]", kind, old, new, pattern))
    return out


def compare_bodies(
    a: bytes, a_headers: Mapping[str, str], b: bytes, b_headers: Mapping[str, str], rules: Rules
) -> list[Difference]:
    try:
        a, b = decode_body(a, a_headers), decode_body(b, b_headers)
    except Exception as exc:  # gzip, zlib and brotli each raise their own error types
        return [Difference("body", "error", None, f"cannot decode: {exc}", "body")]
    if a == b:
        return []
    if is_event_stream(a_headers) and is_event_stream(b_headers):
        try:
            return list(compare_json(parse_events(a), parse_events(b), rules))
        except UnicodeDecodeError:
            pass
    left, right = parse_json(a, a_headers), parse_json(b, b_headers)
    if left is not _MISSING and right is not _MISSING:
        return list(compare_json(left, right, rules))
    try:
        return compare_lines(a.decode(), b.decode())
    except UnicodeDecodeError:
        return [
            Difference(
                "body",
                "changed",
                hashlib.sha256(a).hexdigest(),
                hashlib.sha256(b).hexdigest(),
                "body",
            )
        ]


def compare_lines(a: str, b: str) -> list[Difference]:
    out: list[Difference] = []
    left, right = a.splitlines(), b.splitlines()
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            old = left[i1 + k] if i1 + k < i2 else None
            new = right[j1 + k] if j1 + k < j2 else None
            line = (i1 if old is not None else j1) + k + 1
            kind = (
                "changed"
                if old is not None and new is not None
                else "removed"
                if new is None
                else "added"
            )
            out.append(Difference(f"line:{line}", kind, old, new, "line"))
    return out


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def compare_json(
    a: Any, b: Any, rules: Rules, location: Location = (), *, align: bool = False
) -> Iterable[Difference]:
    """Typed differences between two JSON values. ``align``: ordered lists are aligned first
    (equal elements paired, the rest added or removed unless a run of them is replaced one for
    one), as the noise learner needs; without it elements are paired by index."""
    if any(paths.covers(p, location) for p in rules.ignore):
        return
    kind_a, kind_b = _type(a), _type(b)
    here = paths.render(location)
    pattern = paths.generalise(location)
    if kind_a != kind_b:
        yield Difference(here, "type", a, b, pattern)
        return
    if any(paths.matches(p, location) for p in rules.mask):
        return
    if kind_a == "object":
        for key in a:
            if key not in b:
                child = (*location, key)
                if not any(paths.covers(p, child) for p in rules.ignore):
                    yield Difference(
                        paths.render(child), "removed", a[key], None, paths.generalise(child)
                    )
            else:
                yield from compare_json(a[key], b[key], rules, (*location, key), align=align)
        for key in b:
            if key not in a:
                child = (*location, key)
                if not any(paths.covers(p, child) for p in rules.ignore):
                    yield Difference(
                        paths.render(child), "added", None, b[key], paths.generalise(child)
                    )
    elif kind_a == "array":
        if any(paths.matches(p, location) for p in rules.unordered):
            yield from _compare_unordered(a, b, location, rules)
            return
        if align:
            yield from _compare_aligned(a, b, location, rules)
            return
        for index in range(min(len(a), len(b))):
            yield from compare_json(a[index], b[index], rules, (*location, index))
        for index in range(len(b), len(a)):
            child = (*location, index)
            yield Difference(
                paths.render(child), "removed", a[index], None, paths.generalise(child)
            )
        for index in range(len(a), len(b)):
            child = (*location, index)
            yield Difference(paths.render(child), "added", None, b[index], paths.generalise(child))
    elif kind_a == "number":
        if a != b and abs(a - b) > rules.tolerance * max(abs(a), abs(b), 1):
            yield Difference(here, "changed", a, b, pattern)
    elif a != b:
        yield Difference(here, "changed", a, b, pattern)


def _without_ignored(value: Any, location: Location, rules: Rules) -> Any:
    """``value`` minus every part an ignore rule covers (to pair unordered elements)."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            child = (*location, key)
            if not any(paths.covers(p, child) for p in rules.ignore):
                kept[key] = _without_ignored(item, child, rules)
        return kept
    if isinstance(value, list):
        return [_without_ignored(item, (*location, i), rules) for i, item in enumerate(value)]
    return value


def _compare_aligned(
    a: list[Any], b: list[Any], location: Location, rules: Rules
) -> Iterable[Difference]:
    keys_a = [_canonical(_without_ignored(x, (*location, i), rules)) for i, x in enumerate(a)]
    keys_b = [_canonical(_without_ignored(x, (*location, i), rules)) for i, x in enumerate(b)]
    matcher = difflib.SequenceMatcher(a=keys_a, b=keys_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            for k in range(i2 - i1):
                child = (*location, i1 + k)
                yield from compare_json(a[i1 + k], b[j1 + k], rules, child, align=True)
            continue
        for index in range(i1, i2):
            child = (*location, index)
            yield Difference(
                paths.render(child), "removed", a[index], None, paths.generalise(child)
            )
        for index in range(j1, j2):
            child = (*location, index)
            yield Difference(paths.render(child), "added", None, b[index], paths.generalise(child))


def learnable_body_differences(first: Response, second: Response, rules: Rules) -> list[Difference]:
    """The differences between two JSON (or event stream) bodies with lists aligned, for the
    noise learner; other bodies give none (a text or binary body is never noise as a whole)."""
    a_headers, b_headers = _lower(first.headers), _lower(second.headers)
    try:
        a, b = decode_body(first.body, a_headers), decode_body(second.body, b_headers)
    except Exception:  # gzip, zlib and brotli each raise their own error types
        return []
    if a == b:
        return []
    if is_event_stream(a_headers) and is_event_stream(b_headers):
        try:
            return list(compare_json(parse_events(a), parse_events(b), rules, align=True))
        except UnicodeDecodeError:
            return []
    left, right = parse_json(a, a_headers), parse_json(b, b_headers)
    if left is _MISSING or right is _MISSING:
        return []
    return list(compare_json(left, right, rules, align=True))


def _compare_unordered(
    a: list[Any], b: list[Any], location: Location, rules: Rules
) -> Iterable[Difference]:
    def key(item: Any, index: int) -> str:
        return _canonical(_without_ignored(item, (*location, index), rules))

    remaining: dict[str, list[int]] = {}
    for index, item in enumerate(b):
        remaining.setdefault(key(item, index), []).append(index)
    for index, item in enumerate(a):
        bucket = remaining.get(key(item, index))
        if bucket:
            bucket.pop(0)
            continue
        child = (*location, index)
        yield Difference(paths.render(child), "removed", item, None, paths.generalise(child))
    for indices in remaining.values():
        for index in indices:
            child = (*location, index)
            yield Difference(paths.render(child), "added", None, b[index], paths.generalise(child))

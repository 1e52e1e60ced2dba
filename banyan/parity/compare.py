"""Comparing two answers to the same request: status, chosen headers and bodies.

Bodies are decoded first (:mod:`banyan.parity.bodies`). Two JSON bodies are compared structurally
(:mod:`banyan.parity.json_diff`: typed differences at exact paths, under the feature's ``parity:``
rules). Server-sent event streams (``text/event-stream``) are compared as JSON too — the list of
events, each ``{"event", "data"}`` with ``data`` parsed when it is JSON — so a stream's event
sequence and payloads are located exactly (``$[3].data.answer.content``) and the feature's rules
apply inside them. Other text bodies are compared line by line (paths ``line:N``); binary bodies
by digest. Headers named by the rules are compared as the ordered list of their values.

Differences at paths the noise learner knows (the same backend answering differently to the same
request) are returned apart in ``Comparison.noise`` and do not make a mismatch.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from banyan.parity.bodies import MISSING, decode_body, is_event_stream, parse_events, parse_json
from banyan.parity.json_diff import DEFAULT_RULES, Difference, Rules, compare_json

__all__ = [
    "DEFAULT_RULES",
    "Comparison",
    "Difference",
    "NoisePredicate",
    "Response",
    "Rules",
    "compare",
    "compare_header",
    "could_be_noise",
    "learnable_body_differences",
]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    latency_ms: float = 0.0
    error: str | None = None


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
    if left is not MISSING and right is not MISSING:
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
    if left is MISSING or right is MISSING:
        return []
    return list(compare_json(left, right, rules, align=True))

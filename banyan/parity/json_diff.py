"""Typed differences between two JSON values, under a feature's ``parity:`` rules.

Every difference is typed and located exactly: ``changed`` (same type, other value), ``type``
(other JSON type; ``true`` is not ``1``), ``added`` (only the candidate has it) and ``removed``
(only the primary has it), at paths like ``$.items[3].title`` (:mod:`banyan.parity.paths`). The
rules: ``ignore`` (never compared, with everything below), ``mask`` (only presence and type
compared), ``unordered`` (arrays compared as multisets) and ``tolerance`` (numbers equal when
``|a - b| <= tolerance * max(|a|, |b|, 1)``). :mod:`banyan.parity.compare` uses it for whole
answers, the noise learner with lists aligned.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from banyan.parity import paths
from banyan.parity.paths import Location

Kind = str  # changed | type | added | removed | error


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


DEFAULT_RULES = Rules()


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

"""From flag-file bytes to a YAML node tree, within budgets, and typed reads of its nodes.

Owns :func:`compose`, which decodes the bytes and composes one YAML document with PyYAML's safe
loader while counting: more than :data:`MAX_DEPTH` levels of nesting or more than
:data:`MAX_NODES` values is refused at the line where the budget ran out (so neither deep
nesting — a ``RecursionError`` before — nor a file of a million tiny values can exhaust the
stack, the memory or the time of the process), and every YAML error becomes a
:class:`FlagError` with its line. :class:`NodeReader` turns nodes into typed values or a
``FlagError`` at the node's line; the schema itself lives in :mod:`banyan.proxy.flags.parse`.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn, cast

import yaml

from banyan.errors import FlagError

MAX_DEPTH = 64  # a valid file nests 6 levels deep (features.x.parity.ignore[0])
MAX_NODES = 150_000  # ~10 per feature: 10,000 features fit; each node costs ~600 bytes to compose
FAR = float("inf")


_LARGEST = 2**53  # integers beyond this lose digits as floats


def _shown(value: Any) -> str:
    """``repr`` cut to 80 characters (a value may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _OverBudget(Exception):
    def __init__(self, mark: yaml.Mark, reason: str) -> None:
        super().__init__(reason)
        self.mark = mark
        self.reason = reason


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing documents deeper than MAX_DEPTH or larger than MAX_NODES."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        mark = self.peek_event().start_mark
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _OverBudget(
                mark, f"more than {MAX_NODES} YAML values; a flag file needs far fewer"
            )
        if self.depth >= MAX_DEPTH:
            raise _OverBudget(mark, f"nested more than {MAX_DEPTH} levels deep")
        self.depth += 1
        try:
            return cast(yaml.Node, super().compose_node(parent, index))
        finally:
            self.depth -= 1


def compose(data: bytes, source: str) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    """The root node of the one YAML document in ``data`` (None when empty) and its loader."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FlagError(source, line, "the file is not valid UTF-8") from None
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
    except _OverBudget as exc:
        raise FlagError(source, exc.mark.line + 1, f"YAML too large: {exc.reason}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise FlagError(source, line, f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text[: exc.position].count("\n") + 1
        raise FlagError(source, line, f"YAML error: {exc.reason}") from None
    except RecursionError:  # a backstop: the depth budget should always come first
        line = loader.line + 1 if loader is not None else 1
        raise FlagError(source, line, "YAML too large: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, loader


class NodeReader:
    """Walks the composed YAML node tree, turning nodes into typed values or a FlagError."""

    def __init__(self, source: str, loader: yaml.SafeLoader) -> None:
        self.source = source
        self.loader = loader

    def fail(self, node: yaml.Node | int, reason: str) -> NoReturn:
        line = node if isinstance(node, int) else line_of(node)
        raise FlagError(self.source, line, reason)

    def mapping(
        self, node: yaml.Node, where: str, allowed: tuple[str, ...] | None
    ) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{where}: expected a mapping, got {self.kind(node)}")
        seen: dict[str, int] = {}
        items: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.fail(key_node, f"{where}: YAML merge keys ('<<') are not supported")
            key = self.construct(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, f"{where}: keys must be strings")
            if key in seen:
                self.fail(key_node, f"{where}: duplicate key {key!r} (first at line {seen[key]})")
            seen[key] = line_of(key_node)
            if allowed is not None and key not in allowed:
                self.fail(key_node, f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
            items.append((key, key_node, value_node))
        return items

    def kind(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        value = self.construct(node)
        if value is None:
            return "nothing"
        return f"{type(value).__name__} {_shown(value)}"

    def construct(self, node: yaml.Node) -> Any:
        """The Python value of a scalar node; a value YAML cannot build (an unknown ``!!tag``,
        an integer of thousands of digits, bad ``!!binary``) fails at its line."""
        try:
            return self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError) as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.fail(node, f"cannot read the value: {problem}")

    def scalar(self, node: yaml.Node, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{where}: expected a single value, got {self.kind(node)}")
        return self.construct(node)

    def is_null(self, node: yaml.Node) -> bool:
        """True for an explicit ``null`` / ``~`` / empty value."""
        return isinstance(node, yaml.ScalarNode) and self.construct(node) is None

    def string(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not value:
            self.fail(node, f"{where}: expected a non-empty string, got {self.kind(node)}")
        return value

    def choice(self, node: yaml.Node, where: str, options: tuple[str, ...]) -> str:
        value = self.scalar(node, where)
        if value not in options:
            self.fail(node, f"{where}: {_shown(value)} is not one of {', '.join(options)}")
        return cast(str, value)

    def boolean(self, node: yaml.Node, where: str) -> bool:
        value = self.scalar(node, where)
        if not isinstance(value, bool):
            self.fail(node, f"{where}: expected true or false, got {self.kind(node)}")
        return value

    def number(
        self,
        node: yaml.Node,
        where: str,
        low: float,
        high: float,
        *,
        low_open: bool = False,
        integer: bool = False,
    ) -> float:
        value = self.scalar(node, where)
        wanted = int if integer else (int, float)
        if (
            isinstance(value, bool)
            or not isinstance(value, wanted)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            noun = "an integer" if integer else "a number"
            self.fail(node, f"{where}: expected {noun}, got {self.kind(node)}")
        if isinstance(value, int) and abs(value) > _LARGEST:
            self.fail(node, f"{where}: {_shown(value)} is too large")
        too_low = value <= low if low_open else value < low
        if too_low or value > high:
            left = "(" if low_open else "["
            right = "]" if high != FAR else ")"
            shown_high = "inf" if high == FAR else f"{high:g}"
            self.fail(
                node, f"{where}: {_shown(value)} is outside {left}{low:g}, {shown_high}{right}"
            )
        return float(value)

    def strings(self, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node]]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{where}: expected a list, got {self.kind(node)}")
        return [(self.string(item, f"{where}[{i}]"), item) for i, item in enumerate(node.value)]

"""The ``rollout:`` block of a feature: its model and its schema (steps and analysis).

A rollout is a list of steps run in order, each a one-key mapping naming what the feature does
during it — ``mirror`` (legacy serves, writes mirrored to new), ``shadow`` (legacy serves, new is
compared), ``canary`` (``percent`` of callers on new), ``new`` (the last step: new serves, writes
mirrored back) — with an optional ``for`` duration (``30s``, ``10m``, ``2h``) over which the
``analysis`` gates judge the step. Parsed here into frozen :class:`Rollout` values with the same
``file:line`` errors as the rest of the flag file; the controller that runs them is
:mod:`banyan.rollout`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from banyan.proxy.flags.nodes import FAR, NodeReader, line_of

StepKind = Literal["mirror", "shadow", "canary", "new"]
STEP_KINDS: tuple[str, ...] = ("mirror", "shadow", "canary", "new")
ROLLOUT_KEYS: tuple[str, ...] = ("steps", "analysis")
ANALYSIS_KEYS: tuple[str, ...] = (
    "max_mismatch_rate",
    "max_error_rate",
    "max_status_shift",
    "max_latency_ratio",
    "min_samples",
)
_STEP_KEYS: dict[str, tuple[str, ...]] = {
    "mirror": ("for",),
    "shadow": ("for",),
    "canary": ("percent", "for"),
    "new": (),
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h)\Z")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 30 * 86400.0  # a step longer than 30 days is a typo


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """One step: its kind, the canary percent, and how long it is judged (seconds, 0: none)."""

    kind: StepKind
    percent: float = 0.0
    duration: float = 0.0
    line: int = field(default=0, compare=False)  # for messages; moving a step is no change

    @property
    def label(self) -> str:
        """``canary 10%`` / ``shadow`` ...: how the step is shown."""
        return f"canary {self.percent:g}%" if self.kind == "canary" else self.kind


@dataclass(frozen=True, slots=True)
class Analysis:
    """The gates of every step; None switches one off. Defaults: the issue's example values."""

    max_mismatch_rate: float | None = 0.01
    max_error_rate: float | None = 0.01
    max_status_shift: float | None = 0.01
    max_latency_ratio: float | None = 1.5
    min_samples: int = 200


@dataclass(frozen=True, slots=True)
class Rollout:
    steps: tuple[RolloutStep, ...]
    analysis: Analysis = Analysis()


def parse_duration(text: str) -> float | None:
    """Seconds of ``30s`` / ``10m`` / ``2h`` (decimals allowed), or None when not a duration."""
    match = _DURATION.match(text.strip())
    return float(match.group(1)) * _UNIT[match.group(2)] if match else None


def format_duration(seconds: float) -> str:
    """The shortest of ``2h`` / ``10m`` / ``30s`` that names ``seconds`` exactly."""
    for unit in ("h", "m"):
        amount = seconds / _UNIT[unit]
        if amount >= 1 and amount.is_integer():
            return f"{int(amount)}{unit}"
    return f"{seconds:g}s"


def _duration(reader: NodeReader, node: yaml.Node, where: str) -> float:
    value = reader.scalar(node, where)
    seconds = parse_duration(value) if isinstance(value, str) else None
    if seconds is None:
        reader.fail(node, f"{where}: {reader.kind(node)} is not a duration like 30s, 10m or 2h")
    if not 0 < seconds <= MAX_DURATION:
        reader.fail(node, f"{where}: {value!r} must be above 0 and at most 30 days")
    return seconds


def _step(reader: NodeReader, node: yaml.Node, where: str) -> RolloutStep:
    if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
        reader.fail(
            node, f"{where}: a step is a one-key mapping like 'shadow: {{for: 10m}}' or 'new: {{}}'"
        )
    kind, key_node, value = reader.mapping(node, where, STEP_KINDS)[0]
    here = f"{where}.{kind}"
    values: dict[str, Any] = {}
    if not reader.is_null(value):
        for key, _k, item in reader.mapping(value, here, _STEP_KEYS[kind]):
            if key == "for":
                values["duration"] = _duration(reader, item, f"{here}.for")
            else:
                values["percent"] = reader.number(item, f"{here}.percent", 0, 100, low_open=True)
    if kind == "canary" and "percent" not in values:
        reader.fail(key_node, f"{here}: missing 'percent' (share of callers on new, 0..100)")
    return RolloutStep(kind=kind, line=line_of(key_node), **values)  # type: ignore[arg-type]


def _analysis(reader: NodeReader, node: yaml.Node, where: str) -> Analysis:
    values: dict[str, Any] = {}
    for key, _k, value in reader.mapping(node, where, ANALYSIS_KEYS):
        here = f"{where}.{key}"
        if key == "min_samples":
            values[key] = int(reader.number(value, here, 1, FAR, integer=True))
        elif reader.is_null(value):
            values[key] = None  # that gate is off
        elif key == "max_latency_ratio":
            values[key] = reader.number(value, here, 0, FAR, low_open=True)
        else:
            values[key] = reader.number(value, here, 0, 1)
    return Analysis(**values)


def parse_rollout(reader: NodeReader, node: yaml.Node, where: str) -> Rollout:
    """The ``rollout`` block at ``where`` (``features.NAME.rollout``), or a FlagError."""
    items = {key: (k, v) for key, k, v in reader.mapping(node, where, ROLLOUT_KEYS)}
    if "steps" not in items:
        reader.fail(node, f"{where}: missing 'steps' (a list of one-key mappings)")
    steps_node = items["steps"][1]
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        reader.fail(steps_node, f"{where}.steps: expected a non-empty list of steps")
    steps = tuple(
        _step(reader, item, f"{where}.steps[{i}]") for i, item in enumerate(steps_node.value)
    )
    for i, step in enumerate(steps[:-1]):
        if step.kind == "new":
            reader.fail(step.line, f"{where}.steps[{i}]: 'new' can only be the last step")
    analysis = Analysis()
    if "analysis" in items:
        analysis = _analysis(reader, items["analysis"][1], f"{where}.analysis")
    return Rollout(steps=steps, analysis=analysis)

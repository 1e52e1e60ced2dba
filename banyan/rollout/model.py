"""The record of one rollout, as persisted and as ``GET /_proxy/rollouts`` shows it.

:class:`RolloutRecord` holds where a feature's rollout is (``state``: running, paused, succeeded,
aborted; ``step``: the index of the current step; whether that step's flags are ``applied``), when
its step started, the last gates judged and the reason of the last outcome. It converts to and from
plain JSON so any store can keep it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from banyan.proxy.flags.rollout import Rollout, RolloutStep, format_duration

State = Literal["running", "paused", "succeeded", "aborted"]
STATES: tuple[str, ...] = ("running", "paused", "succeeded", "aborted")
ACTIVE: frozenset[str] = frozenset({"running", "paused"})


def step_dict(step: RolloutStep) -> dict[str, Any]:
    """A step as the flag file spells it, plus its label: ``{"kind", "percent", "for", ...}``."""
    shown: dict[str, Any] = {"kind": step.kind, "label": step.label}
    if step.kind == "canary":
        shown["percent"] = step.percent
    if step.duration:
        shown["for"] = format_duration(step.duration)
    return shown


@dataclass
class RolloutRecord:
    feature: str
    state: State
    step: int
    steps: list[dict[str, Any]]
    applied: bool = False  # the current step's flags are in the file
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    step_started_at: float | None = None  # wall clock, once the step's flags are applied
    paused_at: float | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    reason: str | None = None
    abort_gate: str | None = None  # the gate that aborted the rollout, if one did

    @classmethod
    def new(cls, feature: str, rollout: Rollout) -> RolloutRecord:
        return cls(
            feature=feature,
            state="running",
            step=0,
            steps=[step_dict(s) for s in rollout.steps],
            reason="started",
        )

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def touch(self, reason: str | None = None) -> None:
        self.updated_at = time.time()
        if reason is not None:
            self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("state") not in STATES:
            raise ValueError(f"rollout record of {data.get('feature')!r}: bad state")
        return cls(**known)

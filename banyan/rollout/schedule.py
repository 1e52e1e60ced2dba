"""What each rollout step writes to the flag file, and the operator's transitions.

A step is applied as a change of the feature's keys through the flag writer
(:func:`banyan.proxy.flag_edit.set_fields`, the CLI's): ``mirror`` keeps legacy serving with
``writes: mirror``, ``shadow`` compares new behind legacy, ``canary`` sends ``percent`` of callers
to new, ``new`` moves the feature; writes stay mirrored at every step (``always`` is never
weakened), and an abort goes back to ``mode: legacy`` with writes still mirrored, so nothing
written on new during the step is lost. :func:`transition` is the state machine of the actions
``start | pause | resume | promote | abort``; it changes a record or raises
:class:`TransitionError` with the HTTP status to answer.
"""

from __future__ import annotations

import time
from typing import Any

from banyan.errors import TransitionError
from banyan.proxy.flags import Feature
from banyan.proxy.flags.rollout import Rollout, RolloutStep
from banyan.rollout.model import RolloutRecord

ACTIONS: tuple[str, ...] = ("start", "pause", "resume", "promote", "abort")


def _writes(feature: Feature) -> str:
    return "always" if feature.writes == "always" else "mirror"


def _percent(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def step_changes(feature: Feature, step: RolloutStep) -> dict[str, Any]:
    """The keys the flag file gets for ``step``."""
    changes: dict[str, Any] = {"writes": _writes(feature)}
    if step.kind == "mirror":
        changes["mode"] = "legacy"
    elif step.kind == "shadow":
        changes.update(mode="shadow", primary="legacy")
    elif step.kind == "canary":
        changes.update(mode="canary", percent=_percent(step.percent))
    else:
        changes["mode"] = "new"
    return changes


def abort_changes(feature: Feature) -> dict[str, Any]:
    """Back to legacy, writes still mirrored to new (nothing written during the step is lost)."""
    return {"mode": "legacy", "writes": _writes(feature)}


def in_step(feature: Feature, step: RolloutStep) -> bool:
    """Whether the feature's flags are still what ``step`` wrote (no guard or hand moved it)."""
    wanted = step_changes(feature, step)
    if feature.mode != wanted["mode"] or feature.writes != wanted["writes"]:
        return False
    return step.kind != "canary" or feature.percent == step.percent


def describe(record: RolloutRecord) -> str:
    """``step 2/5 (canary 10%)``."""
    label = record.steps[record.step]["label"] if record.step < len(record.steps) else "end"
    return f"step {record.step + 1}/{len(record.steps)} ({label})"


def advance(record: RolloutRecord, reason: str) -> None:
    """On to the next step (flags not yet applied), or succeeded after the last one."""
    record.gates, record.samples = [], 0
    record.step_started_at = None
    if record.step + 1 >= len(record.steps):
        record.state = "succeeded"
        record.applied = True
        record.touch(reason)
        return
    record.step += 1
    record.applied = False
    record.touch(reason)


def abort(record: RolloutRecord, reason: str, gate: str | None = None) -> None:
    """Aborted: the controller writes the legacy flags (``applied`` False until it has)."""
    record.state = "aborted"
    record.applied = False
    record.paused_at = None
    record.abort_gate = gate
    record.touch(reason)


def transition(
    record: RolloutRecord | None,
    action: str,
    feature: Feature,
    rollout: Rollout | None,
    now: float | None = None,
) -> RolloutRecord:
    """The record after the operator's ``action``; raises :class:`TransitionError`."""
    now = time.time() if now is None else now
    if action not in ACTIONS:
        raise TransitionError(
            400, "validation_error", f"action: {action!r} is not one of {', '.join(ACTIONS)}"
        )
    if action == "start":
        if rollout is None:
            raise TransitionError(
                409, "no_rollout", f"feature {feature.name!r} has no rollout block in the flag file"
            )
        if record is not None and record.active:
            raise TransitionError(
                409, "conflict", f"{feature.name}: a rollout is already {record.state}"
            )
        return RolloutRecord.new(feature.name, rollout)
    if record is None or not record.active:
        shown = "no rollout" if record is None else f"the rollout is {record.state}"
        raise TransitionError(409, "conflict", f"{feature.name}: cannot {action}: {shown}")
    if action == "pause":
        if record.state == "paused":
            raise TransitionError(409, "conflict", f"{feature.name}: already paused")
        record.state, record.paused_at = "paused", now
        record.touch(f"paused by the operator at {describe(record)}")
    elif action == "resume":
        if record.state != "paused":
            raise TransitionError(409, "conflict", f"{feature.name}: not paused")
        _unpause(record, now)
        record.touch(f"resumed by the operator at {describe(record)}")
    elif action == "promote":
        where = describe(record)
        _unpause(record, now)
        advance(record, f"promoted by the operator past {where}")
    else:
        abort(record, f"aborted by the operator at {describe(record)}")
    return record


def _unpause(record: RolloutRecord, now: float) -> None:
    if record.paused_at is not None and record.step_started_at is not None:
        record.step_started_at += now - record.paused_at  # the paused time is not the step's
    record.state, record.paused_at = "running", None

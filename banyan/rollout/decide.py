"""What a rollout tick decides, record by record, inside the store's transaction.

Pure rules over the records and the flags, no I/O: :func:`decide` turns each running rollout's
verdict (:mod:`banyan.rollout.gates`) into record changes and the flag writes to make
(:class:`Effect`); :func:`settle` records what became of a write. The controller
(:mod:`banyan.rollout.controller`) judges, writes the flags and audits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from banyan.proxy.flags import Feature, FlagSet
from banyan.rollout.gates import Verdict
from banyan.rollout.model import RolloutRecord, step_dict
from banyan.rollout.schedule import abort, abort_changes, advance, describe, in_step, step_changes
from banyan.rollout.store import Records

# (feature, its mode now) -> why its flags are not the step's: a guard's rollback or a hand edit
Moved = Callable[[str, str], str]


@dataclass(frozen=True)
class Effect:
    kind: str  # apply | abort
    feature: str
    step: int
    changes: dict[str, Any]


def decide(
    records: Records,
    flags: FlagSet,
    verdicts: dict[str, tuple[int, Verdict, bool]],
    now: float,
    notes: list[tuple[str, str]],
    moved: Moved,
) -> list[Effect]:
    """In the store's transaction: change records, return the flag writes to make; what to tell
    the audit trail goes to ``notes``."""
    effects: list[Effect] = []
    for name, record in records.items():
        feature = flags.feature(name)
        effect = _decide_one(name, record, feature, verdicts.get(name), now, notes, moved)
        if effect is not None:
            effects.append(effect)
    return effects


def _decide_one(
    name: str,
    record: RolloutRecord,
    feature: Feature | None,
    held: tuple[int, Verdict, bool] | None,
    now: float,
    notes: list[tuple[str, str]],
    moved: Moved,
) -> Effect | None:
    """One record's next move: an aborted one's flags written, a running one checked
    against the flag file, then judged on its step's verdict (:meth:`_judge`)."""
    if record.state == "aborted" and not record.applied:
        if feature is None:
            record.applied = True
            return None
        return Effect("abort", name, record.step, abort_changes(feature))
    if record.state != "running":
        return None
    rollout = feature.rollout if feature is not None else None
    if feature is None or rollout is None:
        abort(record, "the feature or its rollout block left the flag file")
        record.applied = True
        notes.append((name, f"aborted: {record.reason}"))
        return None
    if record.steps != [step_dict(s) for s in rollout.steps]:
        where = describe(record)
        abort(record, f"the rollout's steps changed in the flag file at {where}")
        notes.append((name, f"aborted: {record.reason}"))
        return Effect("abort", name, record.step, abort_changes(feature))
    step = rollout.steps[record.step]
    if not record.applied:
        return Effect("apply", name, record.step, step_changes(feature, step))
    if not in_step(feature, step):
        abort(record, f"{describe(record)}: {moved(feature.name, feature.mode)}")
        notes.append((name, f"aborted: {record.reason}"))
        return Effect("abort", name, record.step, abort_changes(feature))
    if held is None or held[0] != record.step:
        return None
    return _judge(name, record, feature, held, now, notes)


def _judge(
    name: str,
    record: RolloutRecord,
    feature: Feature,
    held: tuple[int, Verdict, bool],
    now: float,
    notes: list[tuple[str, str]],
) -> Effect | None:
    """A running step's verdict applied: a breach aborts, a step over with enough samples
    advances (the next step's flags to write), else it keeps waiting."""
    rollout = feature.rollout
    assert rollout is not None
    step = rollout.steps[record.step]
    _, verdict, fresh = held
    if fresh and record.step_started_at is not None and record.step_started_at < now:
        record.step_started_at = now  # a restart: the step's window starts again
    record.gates, record.samples = verdict.gates, verdict.samples
    if verdict.breached is not None:
        abort(record, f"{describe(record)}: {verdict.reason}", verdict.breached["name"])
        notes.append((name, f"aborted: {record.reason}"))
        return Effect("abort", name, record.step, abort_changes(feature))
    started = record.step_started_at if record.step_started_at is not None else now
    if now - started < step.duration or not verdict.enough:
        waiting = "waiting for min_samples" if not verdict.enough else "judging"
        record.touch(f"{describe(record)}: {waiting}")
        return None
    passed = f"{describe(record)} passed"
    if verdict.gates:
        passed += f" with {verdict.samples} samples, every gate ok"
    advance(record, passed)
    notes.append((name, passed))
    if record.state == "succeeded":
        record.touch(f"succeeded: {passed}")
        notes.append((name, "succeeded"))
        return None
    nxt = rollout.steps[record.step]
    return Effect("apply", name, record.step, step_changes(feature, nxt))


def settle(records: Records, effect: Effect, error: str | None, now: float) -> RolloutRecord | None:
    """In the store's transaction, once ``effect``'s flags were written (or failed to be, with
    ``error``): the record applied, advanced, succeeded or aborted; None when it moved on."""
    record = records.get(effect.feature)
    if record is None or record.step != effect.step or record.applied:
        return None
    if effect.kind == "abort" and record.state == "aborted":
        record.applied = True
        if error:
            record.touch(f"{record.reason}; the legacy flags could not be written: {error}")
        return record
    if effect.kind == "apply" and record.active:
        if error:
            abort(
                record,
                f"{describe(record)}: the step's flags could not be written: {error}",
            )
            record.applied = True
            return record
        record.applied = True
        record.step_started_at = now
        step = record.steps[record.step]
        if step["kind"] == "new" and record.step == len(record.steps) - 1:
            record.state = "succeeded"
            record.touch(f"succeeded: {describe(record)} applied")
        else:
            record.touch(f"{describe(record)} applied")
        return record
    return None

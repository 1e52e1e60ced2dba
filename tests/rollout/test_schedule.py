"""Tests for banyan/rollout/schedule.py: what each step writes, and the operator's transitions."""

from __future__ import annotations

import pytest

from banyan.proxy.flags import Feature
from banyan.proxy.flags.rollout import Rollout, RolloutStep
from banyan.rollout.model import RolloutRecord
from banyan.rollout.schedule import (
    TransitionError,
    abort_changes,
    describe,
    in_step,
    step_changes,
    transition,
)

ROLLOUT = Rollout(
    steps=(
        RolloutStep("mirror"),
        RolloutStep("shadow", duration=60),
        RolloutStep("canary", percent=12.5, duration=60),
        RolloutStep("new"),
    )
)
FEATURE = Feature("f", ("/f/**",), rollout=ROLLOUT)


def test_each_step_writes_its_mode_with_writes_mirrored() -> None:
    steps = ROLLOUT.steps
    assert [step_changes(FEATURE, s) for s in steps] == [
        {"writes": "mirror", "mode": "legacy"},
        {"writes": "mirror", "mode": "shadow", "primary": "legacy"},
        {"writes": "mirror", "mode": "canary", "percent": 12.5},
        {"writes": "mirror", "mode": "new"},
    ]
    assert step_changes(FEATURE, RolloutStep("canary", percent=10))["percent"] == 10
    revocations = Feature("logout", ("/x",), writes="always")
    assert step_changes(revocations, steps[3])["writes"] == "always"  # never weakened
    assert abort_changes(FEATURE) == {"mode": "legacy", "writes": "mirror"}
    assert abort_changes(revocations) == {"mode": "legacy", "writes": "always"}


def test_in_step_sees_flags_moved_by_someone_else() -> None:
    canary = ROLLOUT.steps[2]
    at = Feature("f", ("/f",), mode="canary", percent=12.5, writes="mirror")
    assert in_step(at, canary)
    assert not in_step(Feature("f", ("/f",), mode="canary", percent=50, writes="mirror"), canary)
    assert not in_step(Feature("f", ("/f",), mode="legacy", writes="mirror"), canary)
    assert not in_step(Feature("f", ("/f",), mode="canary", percent=12.5), canary)  # writes skip
    assert in_step(Feature("f", ("/f",), mode="shadow", writes="mirror"), ROLLOUT.steps[1])


def test_the_state_machine() -> None:
    record = transition(None, "start", FEATURE, ROLLOUT, now=100.0)
    assert (record.state, record.step, record.applied) == ("running", 0, False)
    assert describe(record) == "step 1/4 (mirror)"
    record.applied, record.step_started_at = True, 100.0
    record = transition(record, "pause", FEATURE, ROLLOUT, now=110.0)
    assert record.state == "paused" and record.paused_at == 110.0
    record = transition(record, "resume", FEATURE, ROLLOUT, now=130.0)
    assert record.state == "running" and record.step_started_at == 120.0  # paused time left out
    record = transition(record, "pause", FEATURE, ROLLOUT, now=140.0)
    record = transition(record, "promote", FEATURE, ROLLOUT, now=150.0)
    assert (record.state, record.step, record.applied) == ("running", 1, False)
    assert record.reason == "promoted by the operator past step 1/4 (mirror)"
    record.step = 3
    record = transition(record, "promote", FEATURE, ROLLOUT, now=160.0)
    assert record.state == "succeeded" and record.applied
    again = transition(record, "start", FEATURE, ROLLOUT)  # a finished rollout starts anew
    assert again.state == "running" and again.step == 0
    aborted = transition(again, "abort", FEATURE, ROLLOUT)
    assert aborted.state == "aborted" and not aborted.applied and aborted.abort_gate is None


@pytest.mark.parametrize(
    ("record", "action", "rollout", "status", "words"),
    [
        (None, "jump", ROLLOUT, 400, "'jump' is not one of start, pause"),
        (None, "start", None, 409, "has no rollout block"),
        (RolloutRecord("f", "running", 0, []), "start", ROLLOUT, 409, "already running"),
        (None, "pause", ROLLOUT, 409, "cannot pause: no rollout"),
        (RolloutRecord("f", "aborted", 0, []), "resume", ROLLOUT, 409, "the rollout is aborted"),
        (RolloutRecord("f", "paused", 0, []), "pause", ROLLOUT, 409, "already paused"),
        (RolloutRecord("f", "running", 0, []), "resume", ROLLOUT, 409, "not paused"),
    ],
)
def test_refused_transitions(
    record: RolloutRecord | None, action: str, rollout: Rollout | None, status: int, words: str
) -> None:
    with pytest.raises(TransitionError) as caught:
        transition(record, action, FEATURE, rollout)
    assert caught.value.status == status and words in caught.value.message


def test_records_round_trip_and_refuse_a_bad_state() -> None:
    record = RolloutRecord.new("f", ROLLOUT)
    assert RolloutRecord.from_dict({**record.to_dict(), "extra": 1}) == record
    assert record.steps[2] == {
        "kind": "canary",
        "label": "canary 12.5%",
        "percent": 12.5,
        "for": "1m",
    }
    with pytest.raises(ValueError, match="bad state"):
        RolloutRecord.from_dict({**record.to_dict(), "state": "flying"})

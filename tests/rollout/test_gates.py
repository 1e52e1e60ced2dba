"""Tests for banyan/rollout/gates.py: a step's window and the verdict of its gates."""

from __future__ import annotations

from banyan.proxy.flags.rollout import Analysis, RolloutStep
from banyan.rollout.gates import StepWindow, judge

ANALYSIS = Analysis(
    max_mismatch_rate=0.1,
    max_error_rate=0.1,
    max_status_shift=0.1,
    max_latency_ratio=2.0,
    min_samples=4,
)
SHADOW = RolloutStep("shadow", duration=60)
CANARY = RolloutStep("canary", percent=10, duration=60)


def gate(verdict: object, name: str) -> dict[str, object]:
    return next(g for g in verdict.gates if g["name"] == name)  # type: ignore[attr-defined]


def test_mirror_and_new_steps_have_no_gates() -> None:
    window = StepWindow("f", ANALYSIS)
    for step in (RolloutStep("mirror"), RolloutStep("new")):
        verdict = judge(window, step, ANALYSIS)
        assert verdict.gates == [] and verdict.enough and verdict.breached is None
    assert judge(None, SHADOW, ANALYSIS).gates == []


def test_shadow_counts_comparisons_and_candidate_failures() -> None:
    window = StepWindow("f", ANALYSIS)
    for outcome, pair in [("match", (200, 200)), ("error", (200, 0)), ("match", (200, 200))]:
        window.observe_comparison(outcome)
        window.observe_pair(*pair)
    verdict = judge(window, SHADOW, ANALYSIS)
    assert verdict.samples == 3 and not verdict.enough and verdict.breached is None
    assert gate(verdict, "min_samples") == {
        "name": "min_samples",
        "observed": 3,
        "limit": 4,
        "ok": False,
        "judged": True,
        "samples": 3,
    }
    assert gate(verdict, "max_error_rate")["judged"] is False
    window.observe_comparison("match")
    window.observe_pair(401, 401)  # refused on both sides: no shift, and no failure of new
    window.observe_comparison("match")
    window.observe_pair(200, 200)
    verdict = judge(window, SHADOW, ANALYSIS)
    assert verdict.enough and verdict.samples == 5
    error = gate(verdict, "max_error_rate")
    assert error["judged"] and error["ok"] is False and error["observed"] == 0.2
    assert verdict.breached is error
    assert gate(verdict, "max_status_shift")["samples"] == 3  # the 401 pair is not evidence
    assert verdict.reason == "gate max_error_rate failed: observed 0.2 > limit 0.1 over 5 samples"


def test_canary_judges_latency_and_leaves_parity_out() -> None:
    window = StepWindow("f", ANALYSIS)
    for _ in range(4):
        window.observe_request("legacy", False, 10, endpoint="GET /a", status=200)
        window.observe_request("new", False, 15, endpoint="GET /a", status=200)
    verdict = judge(window, CANARY, ANALYSIS)
    assert [g["name"] for g in verdict.gates] == [
        "min_samples",
        "max_error_rate",
        "max_status_shift",
        "max_latency_ratio",
    ]
    assert verdict.breached is None and gate(verdict, "max_latency_ratio")["observed"] == 1.5
    for _ in range(5):
        window.observe_request("new", False, 100, endpoint="GET /a", status=200)
    verdict = judge(window, CANARY, ANALYSIS)
    assert verdict.breached is not None and verdict.breached["name"] == "max_latency_ratio"
    assert verdict.breached["medians_ms"] == {"legacy": 10, "new": 100}
    assert verdict.reason == (
        "gate max_latency_ratio failed: observed 10 > limit 2 over 4 samples"
        " (medians: new 100 ms, legacy 10 ms)"
    )
    off = Analysis(None, None, None, None, 4)
    assert [g["name"] for g in judge(window, CANARY, off).gates] == ["min_samples"]

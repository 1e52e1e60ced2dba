"""Tests for banyan/proxy/guards.py: sliding windows, minimum evidence, one breach per guard."""

from __future__ import annotations

from banyan.proxy.flags import GuardConfig
from banyan.proxy.guards import FeatureGuard, GuardBoard


def test_error_rate_needs_evidence_then_trips_once() -> None:
    guard = FeatureGuard("s", GuardConfig(max_error_rate=0.1, window=50), min_samples=20)
    for _ in range(5):
        guard.observe_request("new", failed=True, latency_ms=5)
    assert guard.evaluate() is None  # 5 samples: not judged yet
    for _ in range(15):
        guard.observe_request("new", failed=False, latency_ms=5)
    breach = guard.evaluate()
    assert breach is not None and breach.rule == "max_error_rate"
    assert breach.observed == 0.25 and breach.samples == 20
    assert "max_error_rate breached for s" in breach.message
    assert guard.evaluate() is None and guard.tripped == breach


def test_window_slides_old_failures_out() -> None:
    guard = FeatureGuard("s", GuardConfig(max_error_rate=0.2, window=20), min_samples=20)
    for _ in range(10):
        guard.observe_request("new", failed=True, latency_ms=1)
    for _ in range(20):
        guard.observe_request("new", failed=False, latency_ms=1)
    assert guard.evaluate() is None
    assert guard.rates()["error_rate"] == 0.0


def test_legacy_failures_do_not_count_against_new() -> None:
    guard = FeatureGuard("s", GuardConfig(max_error_rate=0.0, window=10), min_samples=5)
    for _ in range(10):
        guard.observe_request("legacy", failed=True, latency_ms=1)
    assert guard.evaluate() is None


def test_mismatch_rate_and_latency_ratio() -> None:
    parity = FeatureGuard("p", GuardConfig(max_mismatch_rate=0.05, window=100), min_samples=20)
    for i in range(20):
        parity.observe_parity(mismatch=i < 2)
    breach = parity.evaluate()
    assert breach is not None and breach.rule == "max_mismatch_rate" and breach.observed == 0.1

    slow = FeatureGuard("l", GuardConfig(max_latency_ratio=1.5, window=100), min_samples=10)
    for _ in range(10):
        slow.observe_request("legacy", failed=False, latency_ms=10)
        slow.observe_request("new", failed=False, latency_ms=12)
    assert slow.evaluate() is None
    assert slow.rates()["latency_ratio"] == 1.2
    for _ in range(11):
        slow.observe_request("new", failed=False, latency_ms=40)
    breach = slow.evaluate()
    assert breach is not None and breach.rule == "max_latency_ratio" and breach.observed == 4.0


def test_board_resets_changed_features_and_skips_unguarded() -> None:
    board = GuardBoard(min_samples=1)
    guarded = GuardConfig(max_error_rate=0.5, window=10)
    board.sync({"a": ("canary:10", guarded), "b": ("new", GuardConfig())})
    first = board.get("a")
    assert first is not None and board.get("b") is None
    board.sync({"a": ("canary:10", guarded)})
    assert board.get("a") is first  # unchanged: same window
    board.sync({"a": ("canary:50", guarded)})
    assert board.get("a") is not first  # flipped: fresh window
    board.sync({})
    assert board.all() == {}
    empty = FeatureGuard("x", GuardConfig())
    assert not empty.enabled and empty.rates()["latency_ratio"] is None

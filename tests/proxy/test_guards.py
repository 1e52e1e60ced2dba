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
    for _ in range(20):  # a median of few samples is not judged: half a window (50) is needed
        slow.observe_request("legacy", failed=False, latency_ms=10)
        slow.observe_request("new", failed=False, latency_ms=40)
    assert slow.evaluate() is None
    slow = FeatureGuard("l", GuardConfig(max_latency_ratio=1.5, window=100), min_samples=10)
    for _ in range(50):
        slow.observe_request("legacy", failed=False, latency_ms=10)
        slow.observe_request("new", failed=False, latency_ms=12)
    assert slow.evaluate() is None
    assert slow.rates()["latency_ratio"] == 1.2
    for _ in range(51):
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


def test_status_shift_from_shadow_pairs_counts_only_what_legacy_served() -> None:
    guard = FeatureGuard("s", GuardConfig(max_status_shift=0.1, window=100), min_samples=10)
    for _ in range(20):
        guard.observe_pair(401, 401)  # unauthenticated on both sides: no evidence
        guard.observe_pair(400, 404)  # legacy refuses too: no evidence
        guard.observe_pair(0, 401)  # legacy gave no answer: no evidence
        guard.observe_pair(200, 0)  # new gave no answer: the error rate's business
    assert guard.status_shift() == (None, 0) and guard.evaluate() is None
    for i in range(10):
        guard.observe_pair(200, 200 if i else 500)  # a 5xx is an error, not a shift
    assert guard.evaluate() is None and guard.status_shift() == (0.0, 10)
    guard.observe_pair(201, 401)
    guard.observe_pair(200, 403)
    breach = guard.evaluate()
    assert breach is not None and breach.rule == "max_status_shift"
    assert breach.observed == 2 / 12 and breach.samples == 12
    assert guard.rates()["status_shift"] == 2 / 12


def test_status_shift_in_canary_compares_each_endpoints_class_rates() -> None:
    config = GuardConfig(max_status_shift=0.05, window=100)
    guard = FeatureGuard("c", config, min_samples=10)
    for i in range(20):  # both sides refuse a quarter of GET /a: the same kind of request
        code = 401 if i % 4 == 0 else 200
        guard.observe_request("legacy", False, 1, endpoint="GET /a", status=code)
        guard.observe_request("new", False, 1, endpoint="GET /a", status=code)
    guard.observe_request("new", False, 1, endpoint="GET /only-new", status=404)  # no baseline
    assert guard.status_shift() == (0.0, 20) and guard.evaluate() is None
    for _ in range(10):
        guard.observe_request("legacy", False, 1, endpoint="GET /b", status=200)
        guard.observe_request("new", False, 1, endpoint="GET /b", status=200)
    for _ in range(10):  # new now refuses /b to some callers legacy serves
        guard.observe_request("new", False, 1, endpoint="GET /b", status=401)
    shift, samples = guard.status_shift()
    assert samples == 40 and shift == 0.5 * 20 / 40
    breach = guard.evaluate()
    assert breach is not None and breach.rule == "max_status_shift"


def test_status_shift_tracks_a_bounded_number_of_endpoints() -> None:
    from banyan.proxy.guards import MAX_ENDPOINTS, status_class

    guard = FeatureGuard("e", GuardConfig(max_status_shift=0.5, window=5), min_samples=1)
    for i in range(MAX_ENDPOINTS + 10):
        guard.observe_request("new", False, 1, endpoint=f"GET /{i}", status=200)
    assert len(guard._classes["new"]) == MAX_ENDPOINTS
    assert [status_class(s) for s in (200, 302, 401, 403, 404, 409, 503)] == [
        "2xx",
        "3xx",
        "401",
        "403",
        "404",
        "4xx",
        "5xx",
    ]


def test_attached_windows_get_the_evidence_and_outlive_flag_changes() -> None:
    board = GuardBoard(min_samples=1)
    config = GuardConfig(max_error_rate=0.5, window=10)
    board.sync({"a": ("canary:10", config)})
    analysis = FeatureGuard("a", GuardConfig(max_status_shift=0.1, window=1000))
    other = FeatureGuard("b", GuardConfig(max_status_shift=0.1, window=1000))
    board.attach(analysis)
    board.attach(other)
    assert board.observers("a") == [board.get("a"), analysis]
    assert board.observers("b") == [other]
    board.sync({"a": ("canary:50", config)})
    assert board.observers("a")[1] is analysis  # a step change keeps the rollout's window
    board.detach(other)
    board.detach(other)
    assert board.observers("b") == []


def test_candidate_errors_never_trip_the_mismatch_rate() -> None:
    guard = FeatureGuard("p", GuardConfig(max_mismatch_rate=0.05, window=50), min_samples=5)
    for _ in range(40):
        guard.observe_comparison("error")  # the candidate is down: no verdict on parity
    assert guard.evaluate() is None and guard.rates()["parity_samples"] == 0
    for outcome in ("match", "match", "match", "match", "mismatch"):
        guard.observe_comparison(outcome)
    breach = guard.evaluate()
    assert breach is not None and breach.rule == "max_mismatch_rate" and breach.observed == 0.2


def test_export_and_combined_judge_the_union_of_windows() -> None:
    from banyan.proxy.flags import GuardConfig
    from banyan.proxy.guards import FeatureGuard

    config = GuardConfig(max_error_rate=0.5, max_latency_ratio=2.0, window=4)
    one, two = FeatureGuard("f", config, min_samples=2), FeatureGuard("f", config, min_samples=2)
    for guard in (one, two):
        guard.observe_request("new", True, 1.0)
        guard.observe_request("new", False, 30.0, endpoint="/a", status=404)
        guard.observe_request("legacy", False, 10.0, endpoint="/a", status=200)
        guard.observe_comparison("mismatch")
        guard.observe_pair(200, 404)
        assert guard.evaluate() is None  # one latency sample per side each: not yet evidence
    total = FeatureGuard.combined("f", config, [one.export(), two.export()], min_samples=2)
    rates = total.rates()
    assert rates["new_samples"] == 4 and rates["error_rate"] == 0.5
    assert rates["parity_samples"] == 2 and rates["latency_ratio"] == 3.0
    assert total.status_shift() == (1.0, 2)
    breach = total.evaluate()
    assert breach is not None and breach.rule == "max_latency_ratio" and breach.samples == 2

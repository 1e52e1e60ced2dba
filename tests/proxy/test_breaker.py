"""The shadow breaker: opens after failures in a row, probes after a rest, closes on an answer."""

from __future__ import annotations

from banyan.proxy.breaker import ShadowBreaker
from tests.clock import ManualClock


def test_opens_after_threshold_failures_in_a_row() -> None:
    clock = ManualClock(100.0)
    breaker = ShadowBreaker(threshold=3, cooldown=5, clock=clock)
    for _ in range(2):
        assert breaker.allows("new")
        breaker.observe("new", failed=True)
    breaker.observe("new", failed=False)  # an answer resets the count
    for _ in range(3):
        assert breaker.allows("new")
        breaker.observe("new", failed=True)
    assert not breaker.allows("new")
    assert breaker.status() == {"new": {"state": "open", "failures_in_a_row": 3, "opened": 1}}
    assert breaker.allows("legacy")  # one circuit per candidate


def test_one_probe_after_the_cooldown_then_closed_or_open_again() -> None:
    clock = ManualClock(100.0)
    breaker = ShadowBreaker(threshold=1, cooldown=5, clock=clock)
    breaker.observe("new", failed=True)
    clock.now += 4.9
    assert not breaker.allows("new")
    clock.now += 0.2
    assert breaker.status()["new"]["state"] == "probing"
    assert breaker.allows("new")  # the probe
    assert not breaker.allows("new")  # only one at a time
    breaker.observe("new", failed=True)
    assert breaker.status()["new"] == {"state": "open", "failures_in_a_row": 2, "opened": 2}
    clock.now += 5.1
    assert breaker.allows("new")
    breaker.observe("new", failed=False)
    assert breaker.status()["new"]["state"] == "closed"
    assert breaker.allows("new") and breaker.allows("new")


def test_a_probe_that_never_reports_is_replaced_after_a_cooldown() -> None:
    clock = ManualClock(100.0)
    breaker = ShadowBreaker(threshold=1, cooldown=5, clock=clock)
    breaker.observe("new", failed=True)
    clock.now += 5
    assert breaker.allows("new")  # the probe, lost (its copy never reports)
    clock.now += 4.9
    assert not breaker.allows("new")
    clock.now += 0.2
    assert breaker.allows("new")
    breaker.observe("new", failed=False)
    assert breaker.status()["new"] == {"state": "closed", "failures_in_a_row": 0, "opened": 1}


def test_resting_is_asked_without_taking_the_probe() -> None:
    clock = ManualClock(100.0)
    breaker = ShadowBreaker(threshold=1, cooldown=5, clock=clock)
    assert not breaker.resting("new")  # never failed
    breaker.observe("new", failed=True)
    assert breaker.resting("new") and breaker.resting("new")
    assert not breaker.allows("new")
    clock.now += 5.1
    for _ in range(3):  # due for its probe: no longer resting, and asking takes nothing
        assert not breaker.resting("new")
    assert breaker.status()["new"]["state"] == "probing"
    assert breaker.allows("new")  # the probe is still there to take
    assert breaker.resting("new")  # taken: resting until it reports
    breaker.observe("new", failed=False)
    assert not breaker.resting("new")

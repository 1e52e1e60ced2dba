"""Tests of banyan.backends.model.faults: header parsing, reproducible rates, malformed JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from banyan.backends.model.faults import (
    FaultPlan,
    FaultSettings,
    RequestFaults,
    malform,
    parse_fault_header,
)


def test_header_parsing() -> None:
    assert parse_fault_header(None) == RequestFaults()
    assert parse_fault_header("  ") == RequestFaults()
    faults = parse_fault_header("slow:25, malformed,,disconnect")
    assert faults.slow_ms == 25 and faults.malformed and faults.disconnect
    assert not faults.fail and faults.names == ("slow", "malformed", "disconnect")
    assert parse_fault_header("FAIL").fail
    assert parse_fault_header("rate_limit").rate_limit


@pytest.mark.parametrize("bad", ["explode", "slow:abc", "slow:-1"])
def test_bad_header_values(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_fault_header(bad)


@pytest.mark.parametrize(
    "settings",
    [{"fail_rate": 1.5}, {"malformed_rate": -0.1}, {"latency_ms": -1}, {"token_delay_ms": -5}],
)
def test_settings_are_checked(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultSettings(**settings)


def test_rates_are_reproducible_and_roughly_right() -> None:
    def failures(seed: int) -> list[bool]:
        plan = FaultPlan(FaultSettings(fail_rate=0.3, malformed_rate=0.5, seed=seed))
        return [plan.decide(None).fail for _ in range(400)]

    first = failures(1)
    assert first == failures(1)
    assert first != failures(2)
    assert 80 < sum(first) < 160


def test_rates_zero_and_one() -> None:
    never = FaultPlan(FaultSettings())
    assert not any(never.decide(None).names for _ in range(50))
    always = FaultPlan(FaultSettings(fail_rate=1.0, malformed_rate=1.0))
    decided = always.decide("fail")
    assert decided.fail and decided.malformed and decided.names == ("fail", "malformed")


@pytest.mark.parametrize("value", [{}, {"a": 1}, [1, 2, 3], {"answer": "some text here"}])
def test_malformed_json_never_parses(value: object) -> None:
    with pytest.raises(ValueError):
        json.loads(malform(json.dumps(value)))

"""banyan/proxy/limits.py: defaults no smaller than Envoy's, overrides from the environment."""

from __future__ import annotations

import os

import pytest

from banyan.proxy.limits import Limits, describe


def test_defaults_allow_what_envoy_allows() -> None:
    limits = Limits()
    assert limits.max_header_bytes >= 60 * 1024 and limits.max_headers >= 100
    assert limits.max_field_bytes > 8 * 1024  # a long cookie or JWT is normal traffic


def test_the_environment_overrides_and_bad_values_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANYAN_MAX_HEADER_BYTES", "4096")
    assert Limits.from_env(os.environ).max_header_bytes == 4096
    monkeypatch.setenv("BANYAN_MAX_HEADERS", "many")
    with pytest.raises(ValueError, match="BANYAN_MAX_HEADERS"):
        Limits.from_env(os.environ)
    monkeypatch.setenv("BANYAN_MAX_HEADERS", "-1")
    with pytest.raises(ValueError, match="positive"):
        Limits.from_env(os.environ)


def test_a_limit_is_named_with_its_option() -> None:
    assert describe("max_target_bytes", 10) == "max_target_bytes=10 (--max-target-bytes)"

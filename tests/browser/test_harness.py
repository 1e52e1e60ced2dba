"""The harness's rules for a missing browser: a loud skip locally, a failure in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import harness


def test_a_missing_browser_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI: no Chromium"):
        harness.missing("no Chromium")


def test_a_missing_browser_is_a_loud_skip_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="BROWSER TESTS SKIPPED"):
        harness.missing("no Chromium")


def test_the_browser_is_found_where_it_is_said_to_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    monkeypatch.setenv("BANYAN_CHROMIUM", str(browser))
    assert harness.find_chromium() is None  # not executable
    browser.chmod(0o755)
    assert harness.find_chromium() == str(browser)


def test_shipped_features_keep_the_file_order_and_take_overrides() -> None:
    text = harness.shipped_features({"tutor": {"websocket": "reconnect"}})
    assert text.startswith("features:\n  tutor:\n")
    assert "websocket: reconnect" in text
    assert text.rstrip().endswith("mode: legacy") and "  web:\n" in text

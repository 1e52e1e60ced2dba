"""Tests for banyan/control/overlay.py: the file with overrides on top, and previews."""

from __future__ import annotations

from pathlib import Path

import pytest

from banyan.control.overlay import effective, overlay_bytes, settings_with
from banyan.control.store import Override
from banyan.proxy.flags import FlagError, load_flags

FLAGS = """\
version: 1
backends:
  legacy: http://127.0.0.1:1
  new: http://127.0.0.1:2
features:
  # the tutor API
  api:
    routes: ["/api/**"]
    mode: canary   # reviewed
    percent: 5
    guards: {max_error_rate: 0.1, window: 10}
  docs:
    routes: ["/docs/**"]
    mode: legacy
default: legacy
"""


def override(feature: str, **changes: object) -> Override:
    return Override(feature, dict(changes), "admin", "test", None, 0.0, 1)


def test_no_overrides_is_the_file_byte_for_byte(tmp_path: Path) -> None:
    data = FLAGS.encode()
    assert overlay_bytes(data, "f", {}) is data
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS)
    assert effective(path, {}).digest == load_flags(path).digest


def test_overrides_apply_on_top_and_unknown_features_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS)
    found = {
        "api": override("api", mode="new", percent=None, guards={"window": 50}),
        "gone": override("gone", mode="new"),
    }
    flags = effective(path, found)
    api = flags.feature("api")
    assert api is not None and api.mode == "new" and api.guards.window == 50
    assert api.guards.max_error_rate == 0.1
    assert flags.feature("gone") is None
    assert path.read_text() == FLAGS  # never written
    text = overlay_bytes(FLAGS.encode(), "f", found).decode()
    assert "# the tutor API" in text and "percent" not in text


def test_settings_with_validates_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS)
    assert settings_with(path, "docs", None)["mode"] == "legacy"
    assert settings_with(path, "docs", {"mode": "new"})["mode"] == "new"
    with pytest.raises(FlagError, match="mode"):
        settings_with(path, "docs", {"mode": "sideways"})
    with pytest.raises(FlagError, match="no feature named 'nope'"):
        settings_with(path, "nope", {"mode": "new"})

"""Tests for banyan/proxy/flag_edit.py: every number and string an edit writes is read back by the
proxy's loader as exactly that value, and a hostile file in the flag file's place is refused
before anything is written."""

from __future__ import annotations

import math
import os
import shutil
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from banyan.proxy.flag_edit import float_text, set_each, set_fields, set_mode
from banyan.proxy.flags import FlagError, load_flags

REPO_FLAGS = Path(__file__).resolve().parents[2] / "flags.yaml"
FILE_FIXTURE = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def flags(tmp_path: Path) -> Path:
    path = tmp_path / "flags.yaml"
    shutil.copy(REPO_FLAGS, path)
    return path


def test_the_reported_percent_is_read_back_as_a_number(flags: Path) -> None:
    set_mode(flags, "sessions", "canary", 0.00001)  # was written as 1e-05: a string to YAML 1.1
    assert "    percent: 1.0e-05\n" in flags.read_text()
    assert load_flags(flags).feature("sessions").percent == 0.00001  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None, suppress_health_check=FILE_FIXTURE)
@given(st.floats(0, 100) | st.integers(0, 100))
@example(1e-05)
@example(5e-324)
@example(99.99999999999999)
@example(100.0)
@example(0.1)
def test_any_percent_written_is_read_back_exactly(flags: Path, percent: float) -> None:
    set_mode(flags, "sessions", "canary", percent)
    assert load_flags(flags).feature("sessions").percent == percent  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None, suppress_health_check=FILE_FIXTURE)
@given(st.floats(0, allow_infinity=False, allow_nan=False) | st.integers(0, 2**53))
@example(1e20)
@example(1e16)
@example(1.7976931348623157e308)
@example(1e-300)
def test_any_float_or_int_set_as_a_field_is_read_back_exactly(flags: Path, value: float) -> None:
    set_fields(flags, "sessions", {"parity": {"tolerance": value}})
    read = load_flags(flags).feature("sessions").parity.tolerance  # type: ignore[union-attr]
    assert read == value


def test_an_integer_field_stays_an_integer(flags: Path) -> None:
    set_fields(flags, "sessions", {"guards": {"window": 12345}})
    assert load_flags(flags).feature("sessions").guards.window == 12345  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-05, "1.0e-05"),
        (1e20, "1.0e+20"),
        (12.5, "12.5"),
        (100.0, "100.0"),
        (math.inf, ".inf"),
        (-math.inf, "-.inf"),
        (math.nan, ".nan"),
    ],
)
def test_float_text(value: float, text: str) -> None:
    assert float_text(value) == text


def test_non_finite_values_are_refused_before_writing(flags: Path) -> None:
    before = flags.read_text()
    with pytest.raises(FlagError, match="expected a number"):
        set_fields(flags, "sessions", {"parity": {"tolerance": math.inf}})
    assert flags.read_text() == before


def test_strings_yaml_1_1_reads_as_other_types_are_quoted(flags: Path) -> None:
    members = ["on", "no", "0o17", "1_000", "12:30", "0x1F", "1e5", "~", "user:alice"]
    set_fields(flags, "sessions", {"cohorts": {"new": members}})
    cohorts = load_flags(flags).feature("sessions").cohorts  # type: ignore[union-attr]
    assert cohorts == {"new": tuple(members)}


def edit_in_thread(path: Path) -> BaseException | None:
    """Run a ``set_mode`` on ``path`` in a thread; a blocking read fails the test, not hangs it."""
    outcome: list[BaseException | None] = []

    def edit() -> None:
        try:
            set_mode(path, "sessions", "new")
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=edit, daemon=True)
    worker.start()
    worker.join(30)
    assert outcome, f"editing {path} blocked"
    return outcome[0]


@pytest.mark.parametrize("kind", ["dev_zero", "fifo"])
def test_an_edit_refuses_a_file_that_is_not_regular(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "flags.yaml"
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        os.mkfifo(path)
    error = edit_in_thread(path)
    assert isinstance(error, FlagError) and "not a regular file" in error.reason
    assert [p.name for p in tmp_path.iterdir()] == ["flags.yaml"]  # not even a lock file
    assert not Path("/dev/.zero.lock").exists()  # nor one beside the link's target


def test_an_edit_refuses_deep_nesting_with_the_proxys_message(flags: Path) -> None:
    flags.write_text(flags.read_text() + "x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    before = flags.read_text()
    error = edit_in_thread(flags)
    assert isinstance(error, FlagError) and "nested more than 64 levels deep" in error.reason
    assert flags.read_text() == before


def test_a_fifo_in_the_locks_place_does_not_block(flags: Path) -> None:
    os.mkfifo(flags.with_name(".flags.yaml.lock"))
    error = edit_in_thread(flags)
    assert isinstance(error, FlagError) and "cannot open the lock" in error.reason


def test_several_features_change_in_one_write_or_not_at_all(flags: Path) -> None:
    """A rollout controller's flag writes of one pass: each feature its own changes, one
    edit (one digest for every change); one invalid change leaves the whole file alone."""
    result = set_each(
        flags,
        {"folders": {"mode": "shadow"}, "quizzes": {"mode": "canary", "percent": 10}},
        source="rollout",
    )
    assert [c["feature"] for c in result.changes] == ["folders", "quizzes"]
    assert {c["digest"] for c in result.changes} == {result.digest}
    loaded = load_flags(flags)
    folders, quizzes = loaded.feature("folders"), loaded.feature("quizzes")
    assert folders is not None and folders.mode == "shadow"
    assert quizzes is not None and (quizzes.mode, quizzes.percent) == ("canary", 10)
    before = flags.read_bytes()
    with pytest.raises(FlagError):
        set_each(flags, {"folders": {"mode": "new"}, "quizzes": {"mode": "sideways"}})
    assert flags.read_bytes() == before

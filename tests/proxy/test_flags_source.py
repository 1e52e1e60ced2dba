"""Tests for banyan/proxy/flags/source.py: only regular files of bounded size are read, and
nothing put in the flag file's place can block ``open()`` or ``read()``."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from banyan.proxy.flags import DEFAULT_MAX_BYTES, MAX_BYTES_ENV, FlagError, load_flags
from banyan.proxy.flags.source import max_bytes_from_env, read_flag_bytes

GOOD = "version: 1\nbackends: {legacy: http://a, new: http://b}\n"


def refusal(path: Path, max_bytes: int | None = None) -> FlagError:
    """The FlagError reading ``path`` gives; read in a thread so a blocking open fails the test
    (after a generous wait) instead of hanging it."""
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(read_flag_bytes(path, max_bytes))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(30)
    assert outcome, f"reading {path} blocked"
    error = outcome[0]
    assert isinstance(error, FlagError), error
    return error


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(GOOD)
    assert read_flag_bytes(path) == GOOD.encode()


def test_a_symlink_to_a_regular_file_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_text(GOOD)
    (tmp_path / "flags.yaml").symlink_to("real.yaml")
    assert load_flags(tmp_path / "flags.yaml").backends["new"].url == "http://b"


def test_a_symlink_to_dev_zero_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.symlink_to("/dev/zero")
    error = refusal(path)
    assert error.line == 0 and error.file == str(path)
    assert error.reason == "cannot read the file: it is a character device, not a regular file"


def test_a_fifo_without_a_writer_does_not_block_open(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    os.mkfifo(path)
    error = refusal(path)
    assert "a FIFO (named pipe), not a regular file" in error.reason and error.line == 0


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "flags.yaml").mkdir()
    assert "a directory, not a regular file" in refusal(tmp_path / "flags.yaml").reason


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path / "flags.yaml")
    assert error.reason == "cannot read the file: No such file or directory"


def test_the_size_limit_is_checked_and_named(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_bytes(b"#" * 101)
    assert read_flag_bytes(path, 101) == b"#" * 101
    error = refusal(path, 100)
    assert error.reason == (
        f"the file is 101 bytes, over the 100-byte limit for flag files ({MAX_BYTES_ENV} raises it)"
    )


def test_the_limit_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(GOOD)
    monkeypatch.setenv(MAX_BYTES_ENV, "10")
    assert max_bytes_from_env() == 10
    assert "over the 10-byte limit" in refusal(path).reason
    with pytest.raises(FlagError, match="over the 10-byte limit"):
        load_flags(path)
    for unusable in ("", "0", "-5", "lots"):
        monkeypatch.setenv(MAX_BYTES_ENV, unusable)
        assert max_bytes_from_env() == DEFAULT_MAX_BYTES
    assert DEFAULT_MAX_BYTES == 4 * 1024 * 1024


def test_a_file_growing_past_the_limit_while_read_is_refused(tmp_path: Path) -> None:
    # /proc files report size 0 to fstat but have content: the read itself must stop at the limit
    error = refusal(Path("/proc/self/mountinfo"), 10)
    assert error.reason.startswith("the file is more than 10 bytes, over the 10-byte limit")

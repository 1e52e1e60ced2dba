"""banyan/private_file.py: a secret made once at mode 0600, read back checked."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from banyan import private_file


def test_made_once_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    made = iter(["first-value-long-enough", "second-value-long-enough"])
    first = private_file.keep(path, lambda: next(made), what="secret", min_chars=8)
    again = private_file.keep(path, lambda: next(made), what="secret", min_chars=8)
    assert first == again == "first-value-long-enough"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_readable_or_short_file_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("long-enough-value\n")
    path.chmod(0o644)
    with pytest.raises(private_file.PrivateFileError, match=r"other users.*new key, or chmod"):
        private_file.read(path, what="key", min_chars=8)
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(private_file.PrivateFileError, match="no usable key"):
        private_file.keep(path, lambda: "unused", what="key", min_chars=8)

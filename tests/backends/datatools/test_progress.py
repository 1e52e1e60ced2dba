"""Tests for banyan.backends.datatools.progress."""

import io

from banyan.backends.datatools.progress import Progress, format_eta
from tests.clock import ManualClock


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_eta() -> None:
    assert format_eta(None) == "?"
    assert format_eta(-1) == "?"
    assert format_eta(3725) == "1:02:05"


def test_plain_lines_throttled_with_rate_and_eta() -> None:
    clock = ManualClock(0.0)
    out = io.StringIO()
    bar = Progress("users", 100, stream=out, clock=clock, min_interval=1.0, width=10)
    clock.now = 1.0
    bar.advance(10)
    clock.now = 1.5
    bar.advance(10)  # throttled
    clock.now = 2.0
    bar.advance(20)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("users [#---------] 10/100")
    assert "40/100" in lines[1] and "20 rows/s" in lines[1] and "eta 0:00:03" in lines[1]
    bar.finish()
    assert out.getvalue().splitlines()[-1].endswith("eta 0:00:03")


def test_tty_redraws_in_place_and_empty_total() -> None:
    clock = ManualClock(0.0)
    out = TtyStream()
    bar = Progress("none", 0, stream=out, clock=clock)
    assert bar.eta() is None and bar.rate() == 0.0
    bar.advance(0)
    bar.finish()
    text = out.getvalue()
    assert text.startswith("\rnone [") and "100.0%" in text and text.endswith("\n")

"""The process's log lines on their way to stderr: written at once, or held to the end of the
event-loop turn and written with the turn's other lines in one system call.

:data:`lines` is the one writer every line of :mod:`banyan.logs` goes through, so held lines and
lines written at once keep their order; it writes to whatever ``sys.stderr`` is when it writes.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading


class LineWriter:
    """The process's log lines on their way to whatever ``sys.stderr`` is when they are written.

    :meth:`now` writes a line at once (after any waiting ones, so the order holds); :meth:`soon`
    keeps a hot line until the end of the event-loop turn (``call_soon``) and writes all the
    turn's lines in one system call. Outside a running loop :meth:`soon` writes at once. Waiting
    lines are written at exit too, and whenever a line is written at once."""

    def __init__(self) -> None:
        self._waiting: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # where a flush is scheduled
        # a logging call from a worker thread flushes too; reentrant for a signal handler's line
        self._lock = threading.RLock()

    def now(self, line: str) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self._loop = None
            waiting.append(line + "\n")
            stream = sys.stderr
            stream.write("".join(waiting))
            stream.flush()

    def soon(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.now(line)
            return
        with self._lock:
            self._waiting.append(line + "\n")
            if self._loop is loop:
                return
            self._loop = loop  # a flush scheduled on a loop that since stopped is redone here
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the lines waiting, if any."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self._loop = None
            if waiting:
                stream = sys.stderr
                stream.write("".join(waiting))
                stream.flush()


lines = LineWriter()
atexit.register(lines.flush)

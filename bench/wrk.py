"""The benchmarks' load generator: ``wrk``, run as a child process, and what it prints, parsed.

A load generator must be faster than what it measures: ``wrk`` (C, epoll) spends a few
microseconds per request where a Python client spends about as much as the proxy. Two ways to
run it:

- :func:`wrk` as fast as it goes (``-t1 -cN``: throughput);
- :func:`paced` at a fixed rate. Debian's ``wrk`` has no ``-R`` (that is wrk2), so a Lua script
  makes each of ``connections`` connections pause ``connections / rate`` seconds before each
  request (wrk's ``delay()`` hook): that paces the whole run at about the rate (a little under it,
  by one round trip per request), and wrk's latency distribution counts each request's own time
  only, from its bytes leaving to its answer's end.

Also the CPU time a process (and its live children) spent, from ``/proc``, for figures per
request. Needs ``wrk`` on PATH (``apt-get install -y wrk``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

PATH = "/api/sessions/3f1c"
PACED = """\
local pause_ms = {pause_ms}
function delay()
  return pause_ms
end
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    """What one wrk run measured."""

    rps: float
    p50: float  # ms
    p99: float  # ms
    requests: int = 0
    cpu_us: float = 0.0  # the target process's CPU per request, microseconds


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (``state`` first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of process ``pid`` so far, and of its live children (the
    worker processes of ``banyan proxy --workers N``); 0.0 for no process or one gone."""
    if pid is None:
        return 0.0
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    total = int(fields[11]) + int(fields[12])
    for child in _children(pid):
        with contextlib.suppress(OSError):
            child_fields = _stat(child)
            total += int(child_fields[11]) + int(child_fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


def wrk_or_exit() -> str:
    found = shutil.which("wrk")
    if found is None:
        sys.exit("this benchmark needs wrk: apt-get install -y wrk (Debian), then run again")
    return found


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse(output: str) -> Run:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    count = re.search(r"(\d+) requests in", output)
    assert p50 is not None and p99 is not None and count is not None, output
    return Run(rps, _ms(p50.group(1)), _ms(p99.group(1)), int(count.group(1)))


async def wrk(url: str, *args: str, path: str = PATH) -> Run:
    """One wrk run (``--latency``) against ``url + path``; an error or a non-2xx answer raises."""
    process = await asyncio.create_subprocess_exec(
        wrk_or_exit(),
        "--latency",
        *args,
        url + path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode()
    if process.returncode != 0 or "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk against {url} failed or saw errors:\n{text}")
    return parse(text)


async def paced(
    url: str, rate: float, connections: int, duration: float, tmp: Path, path: str = PATH
) -> Run:
    """``duration`` seconds at about ``rate`` requests a second over ``connections``."""
    script = tmp / f"paced-{rate:.0f}-{connections}.lua"
    script.write_text(PACED.format(pause_ms=max(1, round(connections * 1000 / rate))))
    args = ("-t1", f"-c{connections}", f"-d{duration:g}s", "-s", str(script))
    return await wrk(url, *args, path=path)

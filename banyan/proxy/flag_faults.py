"""Hostile flag files, put in place on purpose: for the tests and ``bench/flag_reload.py``.

Owns the cases found against the proxy on loopback (issue 15): ``flags.yaml`` replaced by a
symlink to ``/dev/zero``, by a FIFO, by a valid file of 20 MB, by 10,000 one-route features and by
deeply nested YAML; how to build each beside the flag file and put it in place with one rename,
and how to put a good file back; :func:`run_case`, which puts one case under a running proxy
process while it probes ``/healthz`` and reads the process's resident memory; and
:func:`memory_kb`. Nothing in the proxy imports this module.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

Stager = Callable[[Path, str, str], None]  # builds a case at a staging path


def flags_text(legacy: str, new: str, features: str = "") -> str:
    """A valid flag file for two backend URLs; ``features`` is the indented body of the section."""
    body = features or '  api:\n    routes: ["/api/**"]\n    mode: legacy\n'
    head = f"version: 1\nbackends:\n  legacy: {legacy}\n  new: {new}\n"
    return f"{head}features:\n{body}default: legacy\n"


def many_features(count: int) -> str:
    """``count`` features of one route each, all valid (no route covers another)."""
    return "".join(f'  f{i}:\n    routes: ["/api/f{i}/**"]\n' for i in range(count))


def write_atomically(path: Path, text: str) -> None:
    """Replace whatever is at ``path`` with a regular file holding ``text``, in one rename."""
    tmp = staging_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def staging_path(path: Path) -> Path:
    """Where a case is built before one rename puts it in the flag file's place."""
    return path.with_name(f".{path.name}.fault")


def zero_symlink(staging: Path, legacy: str, new: str) -> None:
    """``ln -s /dev/zero flags.yaml``: endless bytes."""
    staging.symlink_to("/dev/zero")


def fifo(staging: Path, legacy: str, new: str) -> None:
    """A named pipe with no writer: a blocking ``open()`` waits for ever."""
    os.mkfifo(staging)


def twenty_megabytes(staging: Path, legacy: str, new: str) -> None:
    """A valid flag file of about 20 MB (half a million one-route features)."""
    staging.write_text(flags_text(legacy, new, many_features(520_000)), encoding="utf-8")


def ten_thousand_features(staging: Path, legacy: str, new: str) -> None:
    """A valid flag file of 10,000 one-route features (~390 KB): it is applied."""
    staging.write_text(flags_text(legacy, new, many_features(10_000)), encoding="utf-8")


def deep_nesting(staging: Path, legacy: str, new: str) -> None:
    """100,000 nested flow lists: a recursive composer overflows the stack."""
    levels = 100_000
    text = flags_text(legacy, new) + "x: " + "[" * levels + "]" * levels + "\n"
    staging.write_text(text, encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Case:
    """One hostile file: built at a staging path first (however long that takes), then put in
    the flag file's place with one rename (:meth:`place`), so only the proxy's reaction is timed."""

    name: str
    stage: Stager
    applies: bool  # True: a valid file the proxy must apply; False: one it must reject
    expect: str  # a fragment of last_error when rejected (empty when it applies)

    def build(self, path: Path, legacy: str, new: str) -> None:
        staging = staging_path(path)
        if staging.exists() or staging.is_symlink():
            staging.unlink()
        self.stage(staging, legacy, new)

    def place(self, path: Path) -> None:
        os.replace(staging_path(path), path)


CASES: tuple[Case, ...] = (
    Case("dev_zero_symlink", zero_symlink, False, "a character device, not a regular file"),
    Case("fifo", fifo, False, "a FIFO (named pipe), not a regular file"),
    Case("valid_20_mb", twenty_megabytes, False, "-byte limit for flag files"),
    Case("ten_thousand_features", ten_thousand_features, True, ""),
    Case("deep_nesting", deep_nesting, False, "nested more than"),
)


def memory_kb(pid: int) -> tuple[int, int]:
    """(resident now, resident peak) of process ``pid`` in KiB, from ``/proc/PID/status``."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Outcome:
    """What one case did to a running proxy: its ``/healthz`` answers (ms, every one answered),
    the flag status once the case had its effect, the resident peak, and the time to that effect."""

    case: str
    healthz_ms: list[float] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)  # before the case, on a good file
    statuses: list[int] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    peak_kb: int = 0
    effect_s: float = 0.0


def _seen(case: Case, before: dict[str, Any], now: dict[str, Any]) -> bool:
    if case.applies:
        return bool(now["reloads"] > before["reloads"])
    return bool(now["rejected"] > before["rejected"])


async def run_case(
    case: Case,
    flags_path: Path,
    proxy_url: str,
    pid: int,
    legacy: str,
    new: str,
    *,
    settle: float = 1.0,
    deadline: float = 180.0,
    hang: float = 10.0,
    baseline: float = 0.0,
) -> Outcome:
    """Put ``case`` in place under the proxy at ``proxy_url`` (process ``pid``), probing
    ``/healthz`` one request at a time (``hang`` seconds before a probe counts as hung and raises)
    until the flag status shows the case's effect, then ``settle`` seconds more. With
    ``baseline``, probe that many seconds first, on the good file: the machine's own noise."""
    outcome = Outcome(case.name)
    await asyncio.to_thread(case.build, flags_path, legacy, new)
    async with httpx.AsyncClient(base_url=proxy_url, timeout=hang) as http:
        until = time.monotonic() + baseline
        while time.monotonic() < until:
            sent = time.perf_counter()
            (await http.get("/healthz")).raise_for_status()
            outcome.baseline_ms.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(0.01)
        before = (await http.get("/_proxy/status")).json()["flags"]
        started = time.monotonic()
        case.place(flags_path)  # one rename
        seen_at: float | None = None
        probes = 0
        while seen_at is None or time.monotonic() < seen_at + settle:
            if time.monotonic() > started + deadline:
                raise TimeoutError(f"{case.name}: no effect within {deadline} s")
            sent = time.perf_counter()
            answer = await http.get("/healthz")
            outcome.healthz_ms.append((time.perf_counter() - sent) * 1000)
            outcome.statuses.append(answer.status_code)
            outcome.peak_kb = max(outcome.peak_kb, memory_kb(pid)[1])
            probes += 1
            if seen_at is None and probes % 5 == 0:
                now = (await http.get("/_proxy/status")).json()["flags"]
                if _seen(case, before, now):
                    seen_at = time.monotonic()
                    outcome.effect_s = seen_at - started
                    outcome.flags = now
            await asyncio.sleep(0.01)
    outcome.peak_kb = max(outcome.peak_kb, memory_kb(pid)[1])
    return outcome

"""Hot reload: the live flag set of one file, following every edit on disk.

Owns :class:`FlagStore`: the last good :class:`FlagSet` and its :class:`Router`, swapped as one
value; a directory watcher (``watchfiles``) plus a cheap ``stat`` poll as a backstop; the record
of the last rejection (``last_error`` as ``file:line: reason``, ``rejected``); and the subscribers
called after each apply. Reading and validating a new version happens in a worker thread (the
event loop keeps serving while a large file is parsed); only the swap and the subscribers run on
the loop. What may be read at all (regular files, bounded size) is
:mod:`banyan.proxy.flags.source`'s rule; a version that breaks it is rejected like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banyan.errors import FlagError
from banyan.proxy.flags.events import emit
from banyan.proxy.flags.model import FlagSet
from banyan.proxy.flags.parse import load_flags, parse_flags
from banyan.proxy.flags.source import read_flag_bytes
from banyan.proxy.routing import Router
from banyan.tasks import finish_or_cancel

Subscriber = Callable[[FlagSet, FlagSet], None]
POLL_INTERVAL = 0.25  # seconds between cheap stat() checks; the watcher usually wins
WATCH_DEBOUNCE_MS = 50
PARSE_SWITCH_INTERVAL = 0.0005  # seconds: how long the loop may wait for the GIL during a parse
_NEVER_FULL = 1 << 30  # a gen-2 threshold no parse reaches

Signature = tuple[str, int, int, int, int] | None


def _log(level: str, event: str, **fields: Any) -> None:
    emit("flags", level, event, **fields)


def file_signature(path: Path) -> Signature:
    """What changes when the file does: resolved target, device, inode, mtime and size."""
    try:
        target = os.path.realpath(path)
        st = os.stat(target)
    except OSError:
        return None
    return (target, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@contextlib.contextmanager
def _sharing_the_interpreter() -> Iterator[None]:
    """While a flag file is parsed in a worker thread, the event loop must get the GIL back
    quickly. Two things stood in its way: full passes of the cyclic collector, which a parse of
    thousands of features (hundreds of thousands of new objects) set off again and again, each
    walking the whole growing node tree while holding the GIL for 0.2-0.5 s; and Python's 5 ms
    switch interval, paid after every socket call of a request. So for the parse the oldest
    generation is not collected (the young ones still are, in small steps, in the worker; the
    node tree is freed by reference counting once dropped) and the interval shrinks to
    :data:`PARSE_SWITCH_INTERVAL`; both are put back after. Reads are serialised (one lock per
    store)."""
    thresholds = gc.get_threshold()
    previous = sys.getswitchinterval()
    gc.set_threshold(thresholds[0], thresholds[1], _NEVER_FULL)
    sys.setswitchinterval(min(previous, PARSE_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
        gc.set_threshold(*thresholds)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one read of the file found; built off the loop, settled on it."""

    generation: int  # the store's generation when the read began
    key: str = ""  # the version's digest, or the refusal itself for an unreadable file
    serving: bool = False  # the version on disk is the one serving
    error: FlagError | None = None
    live: tuple[FlagSet, Router] | None = None
    seconds: float = 0.0


class FlagStore:
    """The live flag set of one file: loads now, then follows edits on disk within a second.

    An invalid version is never applied: the last good one keeps serving, ``last_error`` says
    ``file:line: reason`` until a valid version (or the current one again) is on disk.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        watch: bool = True,
        poll_interval: float = POLL_INTERVAL,
        max_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.watch = watch  # False: rely on the stat poll alone (e.g. where inotify is scarce)
        self.poll_interval = poll_interval
        self.max_bytes = max_bytes  # None: $BANYAN_FLAGS_MAX_BYTES or the default, at each read
        self.watch_events = 0  # batches of directory events seen by the watcher
        # bytes -> bytes applied to each read before parsing (runtime overrides of a control
        # store, banyan.control); the initial load is plain, the owner reloads after setting it
        self.overlay: Callable[[bytes], bytes] | None = None
        flags = load_flags(self.path, max_bytes=max_bytes)
        self._live: tuple[FlagSet, Router] = (flags, Router(flags))
        self.loaded_at: float = time.time()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.reloads = 0
        self.rejected = 0
        self._subscribers: list[Subscriber] = []
        self._rejected_key: str | None = None
        self._generation = 0  # moves at every apply: an older read must not be applied after it
        self._signature: Signature = file_signature(self.path)
        self._recheck = False
        self._lock = asyncio.Lock()
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        _log(
            "info",
            "flags_applied",
            source=str(self.path),
            digest=flags.digest,
            features=len(flags.features),
            initial=True,
        )

    @property
    def current(self) -> FlagSet:
        """The flag set serving now."""
        return self._live[0]

    @property
    def router(self) -> Router:
        """The router of :attr:`current` (``router.flags is current``, swapped together)."""
        return self._live[1]

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(old, new)`` after every successful apply."""
        self._subscribers.append(callback)

    # -- one read: prepare (any thread), then settle (the loop) --------------------------------

    def _prepare(self) -> _Outcome:
        with _sharing_the_interpreter():
            return self._read_and_parse()

    def _read_and_parse(self) -> _Outcome:
        generation = self._generation
        started = time.perf_counter()
        source = str(self.path)
        try:
            data = read_flag_bytes(self.path, self.max_bytes)
        except FlagError as exc:
            return _Outcome(generation, key=f"unreadable: {exc}", error=exc)
        if self.overlay is not None:
            try:
                data = self.overlay(data)
            except Exception as exc:  # an override the file cannot take: keep the last good
                error = (
                    exc
                    if isinstance(exc, FlagError)
                    else FlagError(source, 0, f"cannot apply the overrides: {exc}")
                )
                return _Outcome(generation, key=f"overlay: {error}", error=error)
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.current.digest:
            return _Outcome(generation, key=digest, serving=True)
        if digest == self._rejected_key:
            return _Outcome(generation, key=digest)  # already reported; wait for the next edit
        try:
            new = parse_flags(data, source)
            live = (new, Router(new))
        except FlagError as exc:
            return _Outcome(generation, key=digest, error=exc)
        except Exception as exc:  # the router must never take the store down with it
            error = FlagError(source, 0, f"cannot route the file: {type(exc).__name__}: {exc}")
            return _Outcome(generation, key=digest, error=error)
        return _Outcome(generation, key=digest, live=live, seconds=time.perf_counter() - started)

    def _settle(self, outcome: _Outcome) -> bool:
        if outcome.generation != self._generation:
            self._recheck = True  # read before a newer apply: read once more, never go back
            return False
        if outcome.serving:
            if self.last_error is not None:
                self._clear_error()
            return False
        if outcome.error is not None:
            if outcome.key != self._rejected_key:
                self._reject(outcome.error, outcome.key)
            return False
        if outcome.live is None:
            return False
        self._apply(outcome.live, outcome.seconds)
        return True

    def _reject(self, error: FlagError, key: str) -> None:
        self._rejected_key = key
        self.rejected += 1
        self.last_error = str(error)
        self.last_error_at = time.time()
        _log(
            "error",
            "flags_rejected",
            source=error.file,
            line=error.line,
            reason=error.reason,
            digest=None if key.startswith("unreadable: ") else key,
            serving=self.current.digest,
        )

    def _clear_error(self) -> None:
        self.last_error = None
        self.last_error_at = None
        self._rejected_key = None

    def _apply(self, live: tuple[FlagSet, Router], seconds: float) -> None:
        old, new = self.current, live[0]
        self._live = live  # one assignment: readers see the old pair or the new pair
        self._generation += 1
        self.loaded_at = time.time()
        self.reloads += 1
        self._clear_error()
        _log(
            "info",
            "flags_applied",
            source=new.source,
            digest=new.digest,
            previous=old.digest,
            features=len(new.features),
            parse_ms=round(seconds * 1000, 1),
        )
        for callback in list(self._subscribers):
            try:
                callback(old, new)
            except Exception:
                _log("exception", "flags_subscriber_failed", callback=repr(callback))

    def _due(self, signature: Signature, force: bool) -> bool:
        """Whether to read: the stat signature moved (or ``force``); one extra read follows every
        change, so a write that finishes inside the same mtime tick is still seen."""
        if force or signature != self._signature:
            self._signature = signature
            self._recheck = True
            return True
        if self._recheck:
            self._recheck = False
            return True
        return False

    # -- synchronous (tests, tools): the caller's thread does the work -------------------------

    def reload_now(self) -> bool:
        """Re-read the file in this thread; True when a new valid version was applied."""
        return self._settle(self._prepare())

    def check(self, *, force: bool = False) -> bool:
        """Re-read in this thread when the file's stat signature changed (or ``force``)."""
        if self._due(file_signature(self.path), force):
            return self.reload_now()
        return False

    # -- asynchronous (the proxy): reading and parsing happen in a worker thread ---------------

    async def reload(self) -> bool:
        """Re-read the file off the event loop; True when a new valid version was applied."""
        async with self._lock:
            return self._settle(await asyncio.to_thread(self._prepare))

    async def refresh(self, *, force: bool = False) -> bool:
        """:meth:`check` off the event loop."""
        async with self._lock:
            signature = await asyncio.to_thread(file_signature, self.path)
            if not self._due(signature, force):
                return False
            return self._settle(await asyncio.to_thread(self._prepare))

    async def start(self) -> None:
        """Begin following the file: a directory watcher plus a cheap stat poll as a fallback."""
        if self._tasks:
            return
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._poll(self._stop), name="flags-poll"),
        ]
        if self.watch:
            self._tasks.append(asyncio.create_task(self._watch(self._stop), name="flags-watch"))

    async def stop(self) -> None:
        """Stop following the file (idempotent)."""
        if self._stop is not None:
            self._stop.set()
        tasks, self._tasks = self._tasks, []
        await finish_or_cancel(tasks, 1.0)  # the stop event ends them

    async def _poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
            if not stop.is_set():
                await self._safe_refresh()

    async def _safe_refresh(self) -> None:
        try:
            await self.refresh()
        except asyncio.CancelledError:
            raise
        except Exception:  # the watcher must outlive any surprise; the poll retries
            _log("exception", "flags_check_failed", source=str(self.path))

    def _watch_dirs(self) -> list[str]:
        dirs = {os.path.abspath(self.path.parent)}
        dirs.add(os.path.dirname(os.path.realpath(self.path)))
        return sorted(d for d in dirs if os.path.isdir(d))

    async def _watch(self, stop: asyncio.Event) -> None:
        from watchfiles import awatch

        try:
            async for _changes in awatch(
                *self._watch_dirs(),
                watch_filter=None,
                debounce=WATCH_DEBOUNCE_MS,
                step=WATCH_DEBOUNCE_MS,
                stop_event=stop,
                recursive=False,
            ):
                self.watch_events += 1
                await self._safe_refresh()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. inotify limits: the poll keeps working
            _log("warning", "flags_watch_unavailable", source=str(self.path), error=str(exc))

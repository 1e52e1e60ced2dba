"""The rollout controller in the proxy: applies each step, judges it, advances or aborts.

Every ``interval`` seconds the controller reads the records (:mod:`banyan.rollout.store`), judges
the current step of each running rollout on the event loop (:func:`banyan.rollout.gates.judge` over
the step's :class:`~banyan.rollout.gates.StepWindow`), then decides in one atomic update of the
store (:mod:`banyan.rollout.decide`): a failed gate aborts (``mode: legacy``, writes still
mirrored), a step whose ``for`` is over with ``min_samples`` reached and no failed gate advances,
flags moved by someone else (a guard's rollback, a hand edit) abort with what they became. The flag
changes themselves go through the CLI's writer (:func:`banyan.proxy.flag_edit.set_each`, all of a
pass's changes in one edit of the file, audited with source ``rollout``); an operator's action is
recorded at once and answered when the next tick has written its flags (or after ``ACT_WAIT``), so
actions arriving together share that tick and its one edit. Outcomes (started, passed, promoted,
paused, resumed, aborted and why, succeeded) are audit entries too. A record says whether its step's
flags are ``applied``, so a restarted proxy re-applies a step it had not finished writing and
resumes judging where it was (the step's window starts again: its evidence lived in memory). With
several proxy processes, the one holding ``rollouts.leader`` (an advisory lock in the state folder)
drives rollouts; any of them records the operator's actions, which the leader picks up at its next
tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from banyan.control.db import ControlError
from banyan.logs import get_logger
from banyan.proxy.flag_edit import set_each, set_fields
from banyan.proxy.flags import FlagError, FlagSet
from banyan.rollout.decide import Effect, decide, settle
from banyan.rollout.gates import StepWindow, Verdict, judge
from banyan.rollout.model import RolloutRecord
from banyan.rollout.schedule import transition
from banyan.rollout.store import Records, RolloutStore

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

log = get_logger("rollout")

INTERVAL = 0.25
# How long an operator's action waits for its flag write before answering with the record as it
# stands (still ``applied: false``): the next ticks finish it. Eleven rollouts started at once on a
# loaded host took the last one past the CLI's 30 s when each action wrote its flags in turn.
ACT_WAIT = 10.0


class RolloutController:
    def __init__(
        self,
        state: ProxyState,
        store: RolloutStore,
        leader_path: str | Path,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.store = store
        self.leader_path = Path(leader_path)
        self.interval = interval
        self.clock = clock
        self.windows: dict[str, tuple[int, StepWindow]] = {}
        self._leader_fd: int | None = None
        self._unwritable = False
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()  # an action was recorded: tick now, not at the interval
        self._ticked = asyncio.Event()  # set when a tick of the loop ends (then replaced)
        self.act_wait = ACT_WAIT

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for _, window in self.windows.values():
            self.state.guards.detach(window)
        self.windows.clear()
        if self._leader_fd is not None:
            os.close(self._leader_fd)  # releases the leader lock
            self._leader_fd = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bad tick must not end the controller
                log.exception("rollout_tick_failed")
            ticked, self._ticked = self._ticked, asyncio.Event()
            ticked.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
            self._kick.clear()

    @property
    def leader(self) -> bool:
        if self._leader_fd is not None:
            return True
        try:
            self.leader_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.leader_path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only state folder: say so once, drive nothing
            if not self._unwritable:
                self._unwritable = True
                log.error("rollout_state_unwritable", path=str(self.leader_path), error=str(exc))
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._leader_fd = fd
        return True

    # -- the operator's actions ------------------------------------------------------------------

    async def act(self, feature_name: str, action: str) -> RolloutRecord:
        """Apply ``action`` (raises :class:`~banyan.rollout.schedule.TransitionError`), audit it,
        and answer the record once its flags are written by the next tick (at most
        :attr:`act_wait` seconds; at once when another process leads). Actions arriving together
        are written together, in one edit of the flag file."""
        flags = self.state.flags
        feature = flags.feature(feature_name)
        assert feature is not None

        def change(records: Records) -> RolloutRecord:
            record = transition(
                records.get(feature_name), action, feature, feature.rollout, self.clock()
            )
            records[feature_name] = record
            return record

        async with self._lock:
            record = await asyncio.to_thread(self.store.update, change)
        self._audit(flags, feature_name, f"{action}: {record.reason}")
        log.info("rollout_action", feature=feature_name, action=action, reason=record.reason)
        self._kick.set()
        return await self._settled(feature_name, record)

    async def _settled(self, name: str, record: RolloutRecord) -> RolloutRecord:
        """``name``'s record once no flag write of it is pending (its step applied, its abort
        written), or as it stands after :attr:`act_wait` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.act_wait
        while True:
            current = (await asyncio.to_thread(self.store.load)).get(name) or record
            pending = current.state in ("running", "aborted") and not current.applied
            left = deadline - loop.time()
            if not pending or not self.leader or left <= 0:
                return current
            with contextlib.suppress(TimeoutError):  # read the record again after each tick
                await asyncio.wait_for(self._ticked.wait(), left)

    # -- one pass --------------------------------------------------------------------------------

    async def tick(self) -> None:
        if not self.leader:
            return
        async with self._lock:
            for _ in range(3):  # an advance is applied in the same tick
                if not await self._pass():
                    break

    async def _pass(self) -> bool:
        records = await asyncio.to_thread(self.store.load)
        if not records and not self.windows:
            return False  # no rollout: nothing to decide, nothing to let go
        flags = self.state.flags
        now = self.clock()
        verdicts: dict[str, tuple[int, Verdict, bool]] = {}
        for name, record in records.items():
            feature = flags.feature(name)
            if record.state not in ("running", "paused") or not record.applied:
                continue
            if feature is None or feature.rollout is None:
                continue
            if record.step >= len(feature.rollout.steps):
                continue
            fresh = name not in self.windows or self.windows[name][0] != record.step
            window = self._window(name, record.step, feature.rollout.analysis)
            step = feature.rollout.steps[record.step]
            verdicts[name] = (record.step, judge(window, step, feature.rollout.analysis), fresh)
        notes: list[tuple[str, str]] = []
        effects: list[Effect] = await asyncio.to_thread(
            self.store.update, lambda rs: self._decide(rs, flags, verdicts, now, notes)
        )
        for name, note in notes:
            self._audit(flags, name, note)
        if effects:
            await self._perform(effects)
        self._drop_windows(await asyncio.to_thread(self.store.load))
        return bool(effects)

    def _window(self, name: str, step: int, analysis: Any) -> StepWindow:
        held = self.windows.get(name)
        if held is not None and held[0] == step:
            return held[1]
        if held is not None:
            self.state.guards.detach(held[1])
        window = StepWindow(name, analysis)
        self.state.guards.attach(window)
        self.windows[name] = (step, window)
        return window

    def _drop_windows(self, records: Records) -> None:
        for name, (step, window) in list(self.windows.items()):
            record = records.get(name)
            if record is None or not record.active or record.step != step or not record.applied:
                self.state.guards.detach(window)
                del self.windows[name]

    def _decide(
        self,
        records: Records,
        flags: FlagSet,
        verdicts: dict[str, tuple[int, Verdict, bool]],
        now: float,
        notes: list[tuple[str, str]],
    ) -> list[Effect]:
        """In the store's transaction: change records, return the flag writes to make."""
        return decide(records, flags, verdicts, now, notes, self._moved)

    def _moved(self, name: str, mode: str) -> str:
        breach = next((b for b in reversed(self.state.breaches) if b.get("feature") == name), None)
        if breach is not None and mode == "legacy":
            return f"rolled back by the feature's guard ({breach.get('message')})"
        return f"the flags were changed outside the rollout (mode is now {mode})"

    async def _perform(self, effects: list[Effect]) -> None:
        """Write the effects' flag changes (one edit of the file for all), reload the flags once,
        then settle each record with its outcome."""
        errors = await self._write(effects)
        await self.state.store.reload()
        for effect in effects:
            await self._settle(effect, errors.get(effect.feature))

    async def _write(self, effects: list[Effect]) -> dict[str, str]:
        """The flag writes; returns the error of each feature whose write failed."""
        control = self.state.control
        if control is None and len(effects) > 1:
            try:
                together = {effect.feature: effect.changes for effect in effects}
                result = await asyncio.to_thread(
                    set_each, self.state.flags_path, together, source="rollout"
                )
                self.state.edits.record(result.changes)  # audited by the proxy, on its loop
                return {}
            except (FlagError, OSError) as exc:  # one at a time: a bad one stops only itself
                log.warning("rollout_flag_writes_apart", error=str(exc))
        errors: dict[str, str] = {}
        for effect in effects:
            try:
                if control is not None:  # a control store: an override every replica applies
                    await control.edit(effect.feature, effect.changes, source="rollout")
                else:
                    result = await asyncio.to_thread(
                        set_fields,
                        self.state.flags_path,
                        effect.feature,
                        effect.changes,
                        source="rollout",
                    )
                    self.state.edits.record(result.changes)
            except (FlagError, ControlError, OSError) as exc:
                errors[effect.feature] = str(exc)
                log.error("rollout_flag_write_failed", feature=effect.feature, error=str(exc))
        return errors

    async def _settle(self, effect: Effect, error: str | None) -> None:
        now = self.clock()
        record = await asyncio.to_thread(
            self.store.update, lambda records: settle(records, effect, error, now)
        )
        if record is not None:
            self._audit(self.state.flags, effect.feature, record.reason or effect.kind)
            log.info(
                "rollout_step",
                feature=effect.feature,
                state=record.state,
                step=record.step,
                reason=record.reason,
            )

    def _audit(self, flags: FlagSet, feature: str, reason: str) -> None:
        if self.state.audit is None:
            return
        try:
            self.state.audit.append(
                source="rollout",
                feature=feature,
                before=None,
                after=None,
                digest=flags.digest,
                reason=reason,
            )
        except OSError:
            log.exception("rollout_audit_failed", feature=feature)


def view(record: RolloutRecord, flags: FlagSet, now: float | None = None) -> dict[str, Any]:
    """A record as the API and ``banyan rollout status --json`` show it."""
    now = time.time() if now is None else now
    feature = flags.feature(record.feature)
    body = record.to_dict()
    started = record.step_started_at
    if record.paused_at is not None and started is not None:
        now = record.paused_at
    body["elapsed_s"] = round(now - started, 3) if started is not None and record.active else None
    body["mode"] = feature.mode if feature is not None else None
    body["percent"] = feature.percent if feature is not None else None
    return body

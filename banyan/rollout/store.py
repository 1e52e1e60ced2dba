"""Where rollout records live: a small interface, and its default — a JSON file in ``.banyan/``.

:class:`RolloutStore` is two calls: :meth:`~RolloutStore.load` (every record by feature) and
:meth:`~RolloutStore.update` (read, change and write the records atomically with respect to every
other writer, returning what the change returned). Any store that can do a read-modify-write in
one transaction can stand in (a PostgreSQL table with ``SELECT ... FOR UPDATE``). The default,
:class:`FileRolloutStore`, keeps ``rollouts.json`` in the state folder next to the flag file
(``.banyan/``, or ``$BANYAN_ROLLOUTS``), serialises writers in any process with an advisory lock
on ``rollouts.json.lock``, and replaces the file atomically, so a crash leaves the old or the new
records, never half. Calls block: the proxy makes them in a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from banyan.env import option_default
from banyan.proxy.flag_edit import write_atomically
from banyan.rollout.model import RolloutRecord

T = TypeVar("T")
Records = dict[str, RolloutRecord]


class RolloutStore(Protocol):
    def load(self) -> Records: ...

    def update(self, change: Callable[[Records], T]) -> T: ...


def state_dir(flags_path: str | Path) -> Path:
    """The state folder of a flag file: ``.banyan/`` beside it."""
    return Path(flags_path).resolve().parent / ".banyan"


def default_path(flags_path: str | Path) -> Path:
    """``$BANYAN_ROLLOUTS`` for a command, else ``rollouts.json`` in the state folder (a proxy
    takes ``BANYAN_ROLLOUTS`` from its settings, read at start)."""
    configured = option_default("BANYAN_ROLLOUTS", "")
    return Path(configured) if configured else state_dir(flags_path) / "rollouts.json"


class FileRolloutStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _read(self) -> Records:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ValueError(f"{self.path}: not a rollout file: {exc}") from None
        rollouts = data.get("rollouts", {}) if isinstance(data, dict) else None
        if not isinstance(rollouts, dict):
            raise ValueError(f"{self.path}: not a rollout file")
        return {name: RolloutRecord.from_dict(record) for name, record in rollouts.items()}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def load(self) -> Records:
        return self._read()

    def update(self, change: Callable[[Records], T]) -> T:
        with self._locked():
            records = self._read()
            before = {name: record.to_dict() for name, record in records.items()}
            result = change(records)
            after = {name: record.to_dict() for name, record in records.items()}
            if after != before:
                text = json.dumps({"version": 1, "rollouts": after}, indent=2, sort_keys=True)
                write_atomically(self.path, text + "\n")
            return result


def proxy_file(flags_path: str | Path) -> Path:
    return state_dir(flags_path) / "proxy.json"


def advertise(flags_path: str | Path, host: str, port: int) -> None:
    """Note where the proxy of this flag file listens, for ``banyan rollout`` to find it."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    path = proxy_file(flags_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps({"url": f"http://{shown}:{port}", "pid": os.getpid()}) + "\n")

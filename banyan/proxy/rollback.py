"""A guard tripped: put its feature back on legacy, once, and say so everywhere.

Without a control store the flag file is edited (in a worker thread: the file is locked, parsed
and written) and the edit's changes are audited back on the event loop with the breach as the
reason (:mod:`banyan.proxy.edits`); with one, an override every replica applies is stored there
instead and the file is never written. Either way the rollback is counted, logged, kept for the
status page and shown in the feature's parity report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from banyan.control.plane import ControlPlane
from banyan.logs import get_logger
from banyan.proxy.edits import EditJournal
from banyan.proxy.flag_edit import rollback
from banyan.proxy.flags import FlagStore
from banyan.proxy.guards import Breach
from banyan.proxy.metrics import ProxyMetrics

log = get_logger("proxy")


class GuardRollback:
    def __init__(
        self,
        *,
        flags_path: Path,
        store: FlagStore,
        metrics: ProxyMetrics,
        edits: EditJournal,
        breaches: list[dict[str, Any]],
        control: ControlPlane | None,
        report: Callable[[Mapping[str, Any]], None] | None,
    ) -> None:
        self.flags_path = flags_path
        self.store = store
        self.metrics = metrics
        self.edits = edits
        self.breaches = breaches  # the status page's list of rollbacks
        self.control = control
        self.report = report  # the parity report's record of it, when a shadow runs

    async def roll_back(self, breach: Breach) -> None:
        current = self.store.current.feature(breach.feature)
        if current is None or current.mode == "legacy":
            return
        details = asdict(breach)
        if self.control is not None and not await self._decided(breach, details):
            return
        log.error("guard_rollback", **details)
        self.metrics.rollbacks.inc(breach.feature, breach.rule)
        self.breaches.append({"at": time.time(), **details, "message": breach.message})
        if self.report is not None:
            self.report({**details, "message": breach.message})
        if self.control is not None:
            return
        try:
            result = await asyncio.to_thread(
                rollback, self.flags_path, breach.feature, source="guard"
            )
        except Exception:
            log.exception("guard_rollback_failed", feature=breach.feature)
        else:
            self.edits.record(result.changes, reason=breach.message)
        await self.store.reload()

    async def _decided(self, breach: Breach, details: dict[str, Any]) -> bool:
        """One decision across replicas: whether this replica's override is the one stored."""
        assert self.control is not None
        try:
            decided = await self.control.roll_back(breach.feature, breach.message)
        except Exception:
            log.exception("guard_rollback_failed", feature=breach.feature)
            return False
        if not decided:  # another replica (or an operator) already put it on legacy
            log.info("guard_rollback_decided_elsewhere", **details)
        return decided

"""One proxy replica's side of the control store: apply overrides, write runtime changes there.

Owns :class:`ControlPlane`, what ``banyan proxy --control-db URL`` adds to a replica: its flag
store reads the file with the overrides on top (:mod:`banyan.control.overlay`) and reloads
whenever the control store's overrides change (NOTIFY, or the poll); guard rollbacks and admin
edits become overrides instead of file writes — the file is never written by a replica; audit
entries go to the shared table, an edit of the file itself audited once whichever replicas see
it. The guard windows judged on every replica's observations are :mod:`banyan.control.guards`'s
(:meth:`ControlPlane.share_guards`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from banyan.control.db import ControlError, schema_from_env
from banyan.control.guards import SharedGuards
from banyan.control.noise import SharedNoise
from banyan.control.overlay import overlay_bytes, settings_with
from banyan.control.store import POLL_INTERVAL, ControlStore, Override, Snapshot, default_actor
from banyan.logs import get_logger
from banyan.proxy.audit import diff_flagsets
from banyan.proxy.flags import FlagSet, FlagStore, load_flags

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

log = get_logger("banyan.control")


class ControlPlane:
    def __init__(
        self,
        url: str,
        flags_path: str | Path,
        *,
        schema: str | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.flags_path = Path(flags_path)
        self.store = ControlStore(
            url,
            schema=schema or schema_from_env(),
            poll_interval=poll_interval,
            actor=default_actor("proxy"),
        )
        self.guards = SharedGuards(self.store)
        self.noise = SharedNoise()
        self._flags: FlagStore | None = None
        self._file_digest: str | None = None  # of the file bytes behind the last read
        self._audited_digest: str | None = None  # the file version whose edit was last audited

    async def start(self, flags: FlagStore) -> None:
        """Connect, then serve the file with the overrides on top from now on."""
        await self.store.start()
        self._flags = flags
        self._audited_digest = flags.current.digest  # the plain file, read at startup
        flags.overlay = self._overlay
        self.store.subscribe(self._changed)
        await flags.reload()

    def share_guards(self, state: ProxyState) -> None:
        """Judge this replica's guards on every replica's evidence from now on, and learn the
        parity noise every replica learned."""
        self.guards.start(state)
        self.noise.start(state.shadow)

    async def stop(self) -> None:
        await self.guards.stop()
        await self.noise.stop()
        if self._flags is not None:
            self._flags.overlay = None
        await self.store.close()

    def _overlay(self, data: bytes) -> bytes:
        self._file_digest = hashlib.sha256(data).hexdigest()
        return overlay_bytes(data, str(self.flags_path), self.store.snapshot.overrides)

    async def _changed(self, old: Snapshot, new: Snapshot) -> None:
        if old.overrides != new.overrides and self._flags is not None:
            await self._flags.reload()

    @property
    def overrides(self) -> dict[str, Override]:
        return dict(self.store.snapshot.overrides)

    # -- runtime changes -------------------------------------------------------------------------

    def _describe(self, feature: str) -> Any:
        def describe(changes: dict[str, Any] | None) -> dict[str, Any] | None:
            return settings_with(self.flags_path, feature, changes)

        return describe

    async def edit(
        self,
        feature: str,
        changes: Mapping[str, Any],
        *,
        source: str,
        reason: str | None = None,
    ) -> Override | None:
        """Store ``changes`` as (part of) ``feature``'s override and apply them here at once;
        :class:`~banyan.proxy.flags.FlagError` when the file cannot take them,
        :class:`~banyan.control.db.ControlError` when the store cannot be reached."""
        try:
            override = await self.store.set_override(
                feature, changes, source=source, reason=reason, describe=self._describe(feature)
            )
            await self.store.refresh()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ControlError(f"the control store refused the change: {exc}") from exc
        return override

    async def roll_back(self, feature: str, reason: str) -> bool:
        """Put ``feature`` on legacy unless it already is (as decided under the feature's lock,
        so among replicas breaching at once exactly one writes and audits). True if this one did."""
        file_flags = await asyncio.to_thread(load_flags, self.flags_path)
        in_file = file_flags.feature(feature)
        file_mode = in_file.mode if in_file is not None else "legacy"

        def not_yet_legacy(current: dict[str, Any]) -> bool:
            return str(current.get("mode", file_mode)) != "legacy"

        override = await self.store.set_override(
            feature,
            {"mode": "legacy"},
            source="guard",
            reason=reason,
            only_if=not_yet_legacy,
            describe=self._describe(feature),
        )
        await self.store.refresh()
        return override is not None

    async def audit_reload(self, old: FlagSet, new: FlagSet) -> int:
        """Audit an applied reload that came from an edit of the file (one an override caused is
        audited by its writer): one entry per changed feature, once across replicas."""
        digest = self._file_digest
        if digest is None or digest == self._audited_digest:
            return 0
        previous, self._audited_digest = self._audited_digest, digest
        written = 0
        for name, before, after in diff_flagsets(old, new):
            written += await self.store.audit(
                source="file",
                feature=name,
                before=before,
                after=after,
                digest=digest,
                event=f"file:{previous}:{digest}:{name}",
            )
        return written

    async def history(
        self, *, feature: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self.store.history(feature=feature, limit=limit)

    def status(self) -> dict[str, Any]:
        """For ``/_proxy/status``: the store's version and every override with who and when."""
        snapshot = self.store.snapshot
        return {
            "schema": self.store.schema,
            "version": snapshot.version,
            "notifications": self.store.notifications,
            "overrides": {
                name: {
                    "changes": o.changes,
                    "source": o.source,
                    "actor": o.actor,
                    "reason": o.reason,
                    "set_at": o.set_at,
                }
                for name, o in sorted(snapshot.overrides.items())
            },
        }

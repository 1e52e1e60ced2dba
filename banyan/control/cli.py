"""``banyan flags`` against a control store: flips, status, explain's override lines, reconcile.

Owns what the flag commands do when ``--control-db URL`` (or ``$BANYAN_CONTROL_DB``) is given:
``set`` and ``rollback`` store overrides (validated against the file, audited in the shared table,
applied by every replica within a second) and never write the file; ``status`` and ``explain``
show each feature's value in the file, its override, who set it and when; ``reconcile`` writes
the overrides into the file (comments kept, :mod:`banyan.proxy.flag_edit`) for the next commit
and clears those still unchanged since they were read. Each command opens the store, does its
work and closes it (one ``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from banyan.control.db import schema_from_env
from banyan.control.overlay import effective, settings_with
from banyan.control.store import ControlStore, Override, default_actor
from banyan.proxy.audit import feature_settings
from banyan.proxy.flag_edit import set_fields
from banyan.proxy.flags import FlagSet, load_flags

T = TypeVar("T")


def _run(url: str, work: Callable[[ControlStore], Awaitable[T]]) -> T:
    async def main() -> T:
        store = ControlStore(url, schema=schema_from_env(), actor=default_actor("cli"))
        try:
            await store.open()
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def flip(
    url: str,
    file: str | Path,
    features: list[str] | None,
    changes: dict[str, Any],
    *,
    source: str = "cli",
    reason: str | None = None,
) -> list[str]:
    """Store ``changes`` as overrides of ``features`` (None: every feature of the file); the
    features whose override changed."""
    names = features if features is not None else [f.name for f in load_flags(file).features]

    async def work(store: ControlStore) -> list[str]:
        changed = []
        for name in names:

            def describe(
                candidate: dict[str, Any] | None, name: str = name
            ) -> dict[str, Any] | None:
                return settings_with(file, name, candidate)

            done = await store.set_override(
                name, changes, source=source, reason=reason, describe=describe
            )
            if done is not None:
                changed.append(name)
        return changed

    return _run(url, work)


def overrides(url: str) -> dict[str, Override]:
    async def work(store: ControlStore) -> dict[str, Override]:
        return dict(store.snapshot.overrides)

    return _run(url, work)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _short(settings: dict[str, Any] | None) -> str:
    if settings is None:
        return "-"
    text = f"mode={settings.get('mode')}"
    if settings.get("mode") == "canary":
        percent = settings.get("percent")
        text += f" percent={percent:g}" if isinstance(percent, int | float) else f" {percent}"
    return text


def status_rows(file: str | Path, found: dict[str, Override]) -> list[dict[str, Any]]:
    """One row per feature of the file: its file value, its override and the value in force."""
    plain = load_flags(file)
    served = effective(file, found)
    rows = []
    for feature in plain.features:
        override = found.get(feature.name)
        now = served.feature(feature.name)
        rows.append(
            {
                "feature": feature.name,
                "file": feature_settings(feature),
                "override": None if override is None else override.changes,
                "effective": feature_settings(now) if now is not None else None,
                "source": None if override is None else override.source,
                "actor": None if override is None else override.actor,
                "reason": None if override is None else override.reason,
                "set_at": None if override is None else override.set_at,
            }
        )
    for name, override in sorted(found.items()):
        if plain.feature(name) is None:  # stored for a feature the file no longer has
            rows.append(
                {
                    "feature": name,
                    "file": None,
                    "override": override.changes,
                    "effective": None,
                    "source": override.source,
                    "actor": override.actor,
                    "reason": override.reason,
                    "set_at": override.set_at,
                }
            )
    return rows


def format_status(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        line = f"{row['feature']}: file {_short(row['file'])}"
        if row["override"] is None:
            line += ", no override"
        else:
            line += (
                f", override {row['override']} -> {_short(row['effective'])}"
                f" (set by {row['source']} {row['actor']} at {_when(row['set_at'])}"
                + (f": {row['reason']}" if row["reason"] else "")
                + ")"
            )
        lines.append(line)
    return lines


def explain_lines(file: str | Path, feature: str, found: dict[str, Override]) -> list[str]:
    """``explain``'s lines for the feature a request went to: file value, override, who, when."""
    rows = [row for row in status_rows(file, found) if row["feature"] == feature]
    if not rows:
        return []
    (row,) = rows
    lines = [f"file:     {_short(row['file'])}"]
    if row["override"] is None:
        lines.append("override: none")
    else:
        lines.append(f"override: {row['override']}")
        lines.append(f"set by:   {row['source']} ({row['actor']})")
        lines.append(f"set at:   {_when(row['set_at'])}")
        if row["reason"]:
            lines.append(f"reason:   {row['reason']}")
    return lines


def effective_flags(url: str, file: str | Path) -> tuple[FlagSet, dict[str, Override]]:
    found = overrides(url)
    return effective(file, found), found


def reconcile(url: str, file: str | Path) -> tuple[list[str], list[str]]:
    """Write every override into the file, then clear the ones not changed meanwhile. Returns
    (features written to the file, overrides left out because the file has no such feature)."""

    async def work(store: ControlStore) -> tuple[list[str], list[str]]:
        found = dict(store.snapshot.overrides)
        plain = await asyncio.to_thread(load_flags, file)
        written: list[str] = []
        missing: list[str] = []
        for name, override in sorted(found.items()):
            if plain.feature(name) is None:
                missing.append(name)
                continue
            await asyncio.to_thread(set_fields, file, name, override.changes, source="reconcile")
            written.append(name)
        digest = (await asyncio.to_thread(load_flags, file)).digest
        await store.clear_overrides(
            {name: found[name].version for name in written},
            source="reconcile",
            reason=f"written into {file}",
            digest=digest,
        )
        return written, missing

    return _run(url, work)


def history(url: str, *, feature: str | None, limit: int | None) -> list[dict[str, Any]]:
    """The shared audit table's entries (of ``feature``), oldest first, the newest ``limit``."""

    async def work(store: ControlStore) -> list[dict[str, Any]]:
        return await store.history(feature=feature, limit=limit if limit is not None else 10**9)

    return list(reversed(_run(url, work)))

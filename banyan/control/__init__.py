"""The control store: runtime state shared by proxy replicas, in PostgreSQL (``--control-db``).

The flag file stays the reviewed desired state and may be read-only; what changes at run time
(guard rollbacks, admin and CLI flips, rollout steps) is stored here as overrides on top of it,
and every replica applies a change within a second. One concern per module:
:mod:`~banyan.control.db` (URL, schema, tables), :mod:`~banyan.control.store` (overrides,
key/value state, the shared audit table, the change feed), :mod:`~banyan.control.overlay` (the
file with the overrides on top), :mod:`~banyan.control.plane` (a proxy replica's side),
:mod:`~banyan.control.cli` (``banyan flags status|explain|reconcile`` and flips with
``--control-db``).
"""

from __future__ import annotations

from banyan.control.db import CONTROL_DB_ENV, ControlError, control_db_from_env
from banyan.control.store import ControlStore, Entry, Override, Snapshot

__all__ = [
    "CONTROL_DB_ENV",
    "ControlError",
    "ControlStore",
    "Entry",
    "Override",
    "Snapshot",
    "control_db_from_env",
]

"""What in a proxy's status needs an operator: the ``attention`` list of ``/_proxy/status`` and
the top of ``banyan status``.

Each item is ``{"kind", "message", ...}``: ``dead_letters`` (mirrored writes the other store did
not take, with their ``count``: nothing is lost, but the stores differ until an operator retries
or drops them with ``banyan mirror``), ``guard_rollback`` (a guard put a ``feature`` back on
legacy, with the rule and figures), ``flags_error`` (the flag file on disk is invalid; the last
good one serves) and ``backend_down`` (a ``backend`` failing its health probe). An empty list
means nothing to look at. Pure: it reads the status document only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def attention(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    dead = int((status.get("mirror") or {}).get("dead") or 0)
    if dead:
        items.append(
            {
                "kind": "dead_letters",
                "count": dead,
                "message": f"{dead} mirrored write{'s' if dead != 1 else ''} the other store did "
                "not take: see `banyan mirror list`, then retry or drop",
            }
        )
    for breach in status.get("rollbacks") or []:
        items.append(
            {
                "kind": "guard_rollback",
                "feature": breach.get("feature"),
                "rule": breach.get("rule"),
                "at": breach.get("at"),
                "message": f"rolled back to legacy: {breach.get('message', breach.get('rule'))}",
            }
        )
    flags = status.get("flags") or {}
    if flags.get("last_error"):
        items.append(
            {
                "kind": "flags_error",
                "message": f"the flag file is invalid (the last good version serves): "
                f"{flags['last_error']}",
            }
        )
    for name, health in sorted((status.get("backends") or {}).items()):
        if isinstance(health, Mapping) and health.get("healthy") is False:
            reason = health.get("error") or "failing its health probe"
            items.append({"kind": "backend_down", "backend": name, "message": f"{name}: {reason}"})
    return items

"""What a target's answer to a mirrored write means, and which lane a stored write waits in.

Pure rules, no I/O: :mod:`banyan.proxy.mirror` applies them to each delivery round, and the
shadow (:mod:`banyan.proxy.shadow.http`) reads answers with the same :func:`outcome`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from banyan.application import plugged
from banyan.proxy.routing import user_from_authorization

Outcome = Literal["done", "retry", "refused"]


def outcome(method: str, status: int) -> Outcome:
    """What a target's answer to a delivered write means: ``done`` (it has the write: 2xx/3xx,
    or a DELETE of what is not there), ``retry`` (:func:`not_yet`), or ``refused`` (any other
    4xx: the target will not take this write as it stands — a dead letter at once, with the
    answer as its reason, for an operator to fix and retry or drop)."""
    if not_yet(method, status):
        return "retry"
    if status < 400 or (status == 404 and method.upper() == "DELETE"):
        return "done"
    return "refused"


def not_yet(method: str, status: int) -> bool:
    """Whether an answer means "not yet": server trouble, or a 401/404 from a target that has not
    received an earlier write yet — the registration that creates the user (mirrored in another
    lane, the caller had no token) or the record this write refers to. A DELETE that finds nothing
    is done."""
    if status >= 500 or status in (408, 429):
        return True
    if status == 404:
        return method.upper() != "DELETE"
    return status == 401


def lane_of(row: Mapping[str, Any]) -> str:
    """The delivery lane of a stored write: its user, whatever the feature — the user its stamp
    acts for, else its token's ``sub``, else, for a registration (no token yet), the id of the
    user it creates (``registered_user`` of the application, :mod:`banyan.application`), so the
    user's first writes wait behind the registration that creates them; else its credentials."""
    return _lane(row)[0]


def _lane(row: Mapping[str, Any]) -> tuple[str, bool]:
    """:func:`lane_of`, and whether the write is the registration that creates the lane's user."""
    if row.get("user_id"):
        return str(row["user_id"]), False
    auth = json.loads(row["headers"]).get("authorization", "")
    user = user_from_authorization(auth, None)
    if user:
        return user, False
    if not auth:
        registered = plugged().registered_user(row["path_qs"], row["body"])
        if registered:
            return registered, True
    return str(auth), False


def due_lanes(
    rows: list[dict[str, Any]], now: float
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Pending rows (in id order) grouped by (target, lane), each lane cut at its first row that
    is not due yet: what one round may attempt without a user's writes overtaking each other.

    A due registration goes first in its lane, even behind a write of its user stored before it
    (which then waits for its retry): nothing of a user can precede the write that creates the
    user, and that earlier write would otherwise be refused ("unknown user") until it died."""
    lanes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    first: dict[tuple[str, str], list[dict[str, Any]]] = {}
    blocked: set[tuple[str, str]] = set()
    for row in rows:
        user, registers = _lane(row)
        lane = (row["target"], user)
        if registers and row["next_at"] <= now:
            first.setdefault(lane, []).append(row)
            continue
        if lane in blocked:
            continue
        if row["next_at"] > now:
            blocked.add(lane)  # an earlier write of this lane waits for its retry
            continue
        lanes.setdefault(lane, []).append(row)
    for lane, registrations in first.items():
        lanes[lane] = registrations + lanes.get(lane, [])
    return lanes


def error_detail(body: bytes) -> str:
    """`` <code>: <message>`` of a JSON error body (docs/api.md), else nothing; at most 300
    characters: a dead letter's reason says what the target objected to."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    return f" {error.get('code', '')}: {error.get('message', '')}"[:300]

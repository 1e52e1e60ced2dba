"""One stored mirror write sent to its target, signed with its original time.

:func:`send` is the queue's only network call (:mod:`banyan.proxy.mirror` decides which rows and
when). Each delivery, a retry included, carries a ``mirror`` stamp of the write's own time and
user (:mod:`banyan.proxy.stamping`), signed as it leaves, so the target stores the write's times
and accepts it even after the user's token was revoked or expired.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl

from banyan import stamps
from banyan.proxy.mirror_rules import error_detail, outcome
from banyan.proxy.stamping import Stamper, WriteStamp
from banyan.proxy.upstream.origin import origin_of


async def send(
    session: aiohttp.ClientSession,
    base: str | None,
    row: dict[str, Any],
    *,
    stamper: Stamper | None,
    timeout: aiohttp.ClientTimeout,
) -> tuple[str | None, bool]:
    """Deliver one stored write to the backend at ``base``: (None, False) when the target has it,
    else why not and whether the target refused it (no retry will change its answer)."""
    if base is None:
        return f"no backend named {row['target']}", False
    try:
        origin = origin_of(base)
        target = origin.target(row["path_qs"].encode()).decode()
        headers = json.loads(row["headers"])
        stamp = mirror_stamp(stamper, row, target, headers)
        if stamp is not None:
            headers[stamps.HEADER] = stamp
        parts = urlsplit(base)
        url = yarl.URL(f"{parts.scheme}://{parts.netloc}{target}", encoded=True)
        async with session.request(
            row["method"], url, headers=headers, data=row["body"], timeout=timeout
        ) as response:
            body = await response.read()
            verdict = outcome(row["method"], response.status)
            if verdict != "done":
                reason = f"{row['target']} answered {response.status}{error_detail(body)}"
                return reason, verdict == "refused"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}", False
    return None, False


def mirror_stamp(
    stamper: Stamper | None, row: dict[str, Any], target: str, headers: dict[str, str]
) -> str | None:
    """The ``mirror`` stamp of a stored write at its original time, for ``target`` as the
    backend receives it; None for a write stored without a time (or without a secret)."""
    if stamper is None or row.get("stamp_ms") is None:
        return None
    write = WriteStamp(
        int(row["stamp_ms"]), row["method"].upper(), stamps.binding_key(headers), row["user_id"]
    )
    return stamper.value(write, target, mirror=True)

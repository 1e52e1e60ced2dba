"""Replaying a stored comparison: the same request sent again to both backends, compared again.

Used by ``banyan parity replay`` and by the console (``POST /_proxy/parity/examples/{id}/replay``).
Stored requests are redacted (:mod:`banyan.parity.redact`), so credentials are never replayed:
the caller may give a bearer token to send instead. The answer says whether the backends still
differ, with the differences and each side's status, and a verdict: two refusals (say two 401s:
the replay had no credentials) are ``both refused``, never ``agree``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from banyan.parity.compare import Response, Rules, compare

REDACTED_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-api-key"}
NOT_SENT = {"host", "content-length"}


def replay_headers(stored: Mapping[str, str], token: str | None) -> dict[str, str]:
    """The stored request's headers minus credentials and framing, plus ``token`` if given."""
    headers = {k: v for k, v in stored.items() if k.lower() not in REDACTED_HEADERS | NOT_SENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def _send(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: Any
) -> Response:
    started = time.perf_counter()
    try:
        async with session.request(method, url, headers=headers, data=body) as r:
            raw = await r.read()
            return Response(r.status, dict(r.headers), raw, (time.perf_counter() - started) * 1000)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Response(0, {}, b"", error=f"{type(exc).__name__}: {exc}")


def verdict(primary: Response, candidate: Response, match: bool) -> str:
    """``agree`` | ``differ`` | ``both refused`` (both answered 4xx: two 401s compare equal but
    nothing was compared — a replay without credentials) | ``both failed`` (both 5xx or no
    answer)."""

    def failed(answer: Response) -> bool:
        return answer.error is not None or answer.status == 0 or answer.status >= 500

    if failed(primary) and failed(candidate):
        return "both failed"
    if 400 <= primary.status < 500 and 400 <= candidate.status < 500:
        return "both refused"
    return "agree" if match else "differ"


async def replay(
    example: Mapping[str, Any],
    backends: Mapping[str, str],
    rules: Rules,
    *,
    token: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Send ``example``'s request to its primary and candidate backends (base URLs by name)."""
    headers = replay_headers(example["request"]["headers"], token)
    body = example["request"]["body"].encode() if example["request"]["body"] else None
    answers: dict[str, Response] = {}
    async with aiohttp.ClientSession(
        auto_decompress=False, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:
        for role in ("primary", "candidate"):
            base = backends[example[f"{role}_backend"]]
            answers[role] = await _send(
                session, example["method"], base + example["url"], headers, body
            )
    result = compare(answers["primary"], answers["candidate"], rules)
    primary, candidate = answers["primary"], answers["candidate"]
    return {
        "example": example["id"],
        "request": f"{example['method']} {example['url']}",
        "verdict": verdict(primary, candidate, result.match),
        "primary": {"backend": example["primary_backend"], "status": primary.status},
        "candidate": {"backend": example["candidate_backend"], "status": candidate.status},
        "still_differs": not result.match,
        "differences": [d.as_dict() for d in result.differences],
        "status": {
            example["primary_backend"]: answers["primary"].status,
            example["candidate_backend"]: answers["candidate"].status,
        },
        "errors": [a.error for a in answers.values() if a.error],
    }

"""The contract suite's shadow targets: their flag file and the parity verdict at their end.

``proxy-shadow`` (legacy answers, new is compared) and ``proxy-shadow-new`` (new answers, legacy is
compared) run the proxy on the repository's own ``flags.yaml`` — its features, routes and parity
rules (ignores, unordered arrays, noise sampling, timeouts) exactly as shipped — with every feature
switched to ``mode: shadow``, the target's ``primary``, ``parity.sample: 100`` and
``writes: mirror``. :func:`shadow_flags` derives that file; :func:`parity_problems` reads the
parity report and the proxy's request counters once the suite's module is done and lists, in
words, every feature that showed a real mismatch (learned noise does not count), a candidate error,
or no comparison at all although the suite sent it traffic. :func:`wait_on_both` lets the suite's
waits for background work poll both backends directly, so progress is never compared, only the
settled state.

Why ``auth`` is mirrored here although the shipped file says ``writes: skip``: shadowing compares
two stores that must hold the same data. A registration that reaches only the primary leaves the
candidate without the user, and every later comparison of that user is a 401 against a 200 — noise
that would hide every real difference. The shipped ``skip`` protects a live system from replaying
logins; the suite's throwaway stores need no such protection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

REPOSITORY_FLAGS = Path(__file__).resolve().parents[3] / "flags.yaml"
SHADOW_PRIMARY: dict[str, str] = {"proxy-shadow": "legacy", "proxy-shadow-new": "new"}

# Features whose traffic the proxy cannot compare, with the reason; they are exempt from the
# "exercised but never compared" rule (their mismatches, if any were recorded, still count).
# None today: HTTP, and the tutor, whiteboard and live sockets all have a comparison.
NOT_COMPARED: dict[str, str] = {}


# A running shadow target's proxy URL -> the URLs of both its backends (for waits, see below).
BACKENDS: dict[str, tuple[str, str]] = {}


def candidate_of(primary: str) -> str:
    return "new" if primary == "legacy" else "legacy"


async def wait_on_both(
    client: httpx.AsyncClient,
    path: str,
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 20.0,
) -> None:
    """On a shadow target, wait until ``path`` is ``done`` on each backend, asking them directly.

    Background work (a document's processing job) runs at its own pace on each store, so reads
    that poll its progress through the proxy would compare two clocks, not two behaviours. The
    polls go to the backends directly — nothing is compared — and the caller's next read through
    the proxy compares the settled state. A no-op for every other target."""
    backends = BACKENDS.get(str(client.base_url).rstrip("/"))
    if backends is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for url in backends:
        async with httpx.AsyncClient(base_url=url, headers=client.headers, timeout=10) as direct:
            while loop.time() < deadline:
                answer = await direct.get(path)
                if answer.status_code == 200 and done(answer.json()):
                    break
                await asyncio.sleep(0.05)


def shadow_flags(
    legacy_url: str, new_url: str, primary: str, source: Path = REPOSITORY_FLAGS
) -> str:
    """The flag file of a shadow target: ``source``'s features, all shadowed with ``primary``.

    Kept from ``source``: routes, their order, and every ``parity`` setting. Set: ``mode: shadow``,
    ``primary``, ``writes: mirror``, ``parity.sample: 100``, and the default backend. Dropped:
    ``guards`` (a guard that trips rewrites the flag file back to ``legacy`` in the middle of the
    suite, which would silently stop the comparisons this target exists for) and the canary-only
    keys (``percent``, ``cohorts``, ``stick_by``)."""
    if primary not in ("legacy", "new"):
        raise ValueError(f"primary must be legacy or new, not {primary!r}")
    data: dict[str, Any] = yaml.safe_load(source.read_text())
    features: dict[str, Any] = {}
    for name, spec in (data.get("features") or {}).items():
        spec = {
            k: v for k, v in spec.items() if k not in ("guards", "percent", "cohorts", "stick_by")
        }
        parity = dict(spec.get("parity") or {})
        parity["sample"] = 100
        spec.update(mode="shadow", primary=primary, writes="mirror", parity=parity)
        features[name] = spec
    out = {
        "version": 1,
        "backends": {"legacy": legacy_url, "new": new_url},
        "features": features,
        "default": primary,
    }
    return yaml.safe_dump(out, sort_keys=False)


async def settle(admin: httpx.AsyncClient, shadow: Any, *, timeout: float = 10.0) -> None:
    """Wait until the proxy holds no open WebSocket and no WebSocket tap (a tap compares when its
    socket closes) and no shadow comparison is in flight, twice in a row (a handler may still be
    between its answer and its copy), then write every record."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    calm = 0
    while calm < 2 and loop.time() < deadline:
        status = (await admin.get("/_proxy/status")).raise_for_status().json()
        busy = status["open_websockets"] or shadow.taps or shadow.inflight
        calm = 0 if busy else calm + 1
        await asyncio.sleep(0.05)
    await shadow.recorder.flush()


def _pattern(path: str) -> str:
    """``$.items[3].id`` -> ``$.items[*].id`` (how the store names a differing field)."""
    return re.sub(r"\[\d+\]", "[*]", path)


def _example(top: dict[str, Any]) -> str:
    """One example of a differing field: the request and the two values."""
    examples = top.get("examples") or []
    if not examples:
        return ""
    first = examples[0]
    where = f"{first.get('method')} {first.get('url')}"
    for difference in first.get("differences", []):
        path = str(difference.get("path", ""))
        if _pattern(path) == top["path"] or (top["path"] == "line" and path.startswith("line:")):
            return (
                f" (e.g. {where}: primary {difference.get('primary')!r}, "
                f"candidate {difference.get('candidate')!r})"
            )
    return f" (e.g. {where})"


def parity_problems(
    report: dict[str, Any], status: dict[str, Any], *, exempt: dict[str, str] | None = None
) -> list[str]:
    """Every reason the run does not show 100% parity, one readable line each (empty: all good).

    ``report`` is ``/_proxy/parity.json`` (schema ``banyan.parity/v1``), ``status`` is
    ``/_proxy/status`` (its per-feature request counters say which features the suite used)."""
    exempt = NOT_COMPARED if exempt is None else exempt
    problems: list[str] = []
    by_feature = {f["feature"]: f for f in report.get("features", [])}
    for name, entry in sorted(by_feature.items()):
        for endpoint in entry.get("endpoints", []):
            mismatched, errors = endpoint.get("mismatched", 0), endpoint.get("errors", 0)
            if not mismatched and not errors:
                continue
            head = (
                f"{name} {endpoint['endpoint']}: {mismatched} mismatched, {errors} candidate "
                f"errors of {endpoint.get('compared', 0)} compared"
            )
            fields = [
                f"    {top['kind']} at {top['path']} x{top['count']}{_example(top)}"
                for top in endpoint.get("top_fields", []) + endpoint.get("error_fields", [])
            ]
            problems.append("\n".join([head, *fields]))
    for name, feature in sorted(status.get("features", {}).items()):
        sent = sum(feature.get("requests", {}).values())
        compared = by_feature.get(name, {}).get("compared", 0)
        if sent and not compared and name not in exempt:
            problems.append(f"{name}: the suite sent it {sent} requests but none was compared")
    return problems


async def verdict(base_url: str, shadow: Any) -> list[str]:
    """Settle the shadow target at ``base_url`` and judge its parity report (see
    :func:`parity_problems`); read over HTTP from ``/_proxy/parity.json`` and ``/_proxy/status``
    as QA would."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as admin:
        await settle(admin, shadow)
        report = (await admin.get("/_proxy/parity.json")).raise_for_status().json()
        status = (await admin.get("/_proxy/status")).raise_for_status().json()
    return parity_problems(report, status)

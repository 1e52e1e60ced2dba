"""``banyan status [--proxy URL] [--flags F] [--json]``: the running proxy on one screen.

Reads ``GET /_proxy/status`` (and the first dead letters from ``GET /_proxy/mirror``) and shows
what needs attention first (dead letters, guard rollbacks, an invalid flag file, a backend down:
:mod:`banyan.proxy.attention`), then each feature's mode, writes and traffic, the mirror queue,
the running rollouts (feature, state, step) and the backends. ``--json`` prints
``{"status": <the status document>, "dead_letters": [...]}``.
The proxy and the admin token are found as ``banyan mirror`` finds them.
Exit codes: 0 nothing needs attention, 1 something does (or the proxy is unreachable), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from banyan.admin_token import admin_headers
from banyan.proxy.attention import attention
from banyan.rollout.cli import proxy_url

SHOWN_LETTERS = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banyan status", description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default=None, help="the proxy's base URL")
    parser.add_argument("--flags", default=None, help="the flag file (finds its proxy)")
    parser.add_argument("--json", action="store_true", help="print the JSON documents")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    return parser


def _mode(feature: dict[str, Any]) -> str:
    mode = str(feature.get("mode"))
    if mode == "canary":
        return f"canary {feature.get('percent')}%"
    if mode == "shadow":
        return f"shadow ({feature.get('primary')} answers)"
    return mode


def render(status: dict[str, Any], letters: list[dict[str, Any]]) -> str:
    items = status.get("attention")
    if items is None:  # a proxy from before the attention list
        items = attention(status)
    lines = [f"banyan proxy {status.get('version')}, flags {str(status['flags']['digest'])[:12]}"]
    if items:
        lines.append(f"NEEDS ATTENTION ({len(items)}):")
        lines += [f"  ! {item['message']}" for item in items]
    else:
        lines.append("nothing needs attention")
    lines.append("")
    lines.append(f"{'feature':<14} {'mode':<24} {'writes':<7} {'legacy':>8} {'new':>8}")
    for name, feature in status.get("features", {}).items():
        requests = feature.get("requests") or {}
        lines.append(
            f"{name:<14} {_mode(feature):<24} {feature.get('writes', ''):<7} "
            f"{requests.get('legacy', 0):>8} {requests.get('new', 0):>8}"
        )
    mirror = status.get("mirror")
    lines.append("")
    if mirror is None:
        lines.append("mirror queue: off")
    else:
        counts = ", ".join(f"{mirror.get(k, 0)} {k}" for k in ("pending", "dead", "delivered"))
        lines.append(f"mirror queue: {counts}")
        for letter in letters[:SHOWN_LETTERS]:
            lines.append(
                f"  dead #{letter['id']} {letter.get('feature')} -> {letter.get('target')} "
                f"{letter.get('method')} {letter.get('path_qs')}: {letter.get('reason')}"
            )
        if int(mirror.get("dead") or 0) > SHOWN_LETTERS:
            lines.append("  ... `banyan mirror list` shows them all")
    rollouts = status.get("rollouts") or []
    for rollout in rollouts:
        lines.append(
            f"rollout {rollout['feature']}: {rollout['state']} at step {int(rollout['step']) + 1}"
            f"/{rollout.get('steps', '?')} ({rollout.get('label') or '-'})"
        )
    if not rollouts:
        lines.append("rollouts: none running")
    rollbacks = status.get("rollbacks") or []
    lines.append(f"guard rollbacks since start: {len(rollbacks)}")
    backends = status.get("backends") or {}
    if backends:
        shown = ", ".join(
            f"{name} {'up' if health.get('healthy') else 'DOWN'}"
            for name, health in sorted(backends.items())
        )
        lines.append(f"backends: {shown}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    base = proxy_url(args.flags, args.proxy)
    letters: list[dict[str, Any]] = []
    try:
        with httpx.Client(
            base_url=base, headers=admin_headers(args.flags), timeout=args.timeout
        ) as http:
            response = http.get("/_proxy/status")
            if response.status_code != 200:
                print(f"banyan status: {response.status_code} {response.text}", file=sys.stderr)
                return 1
            status = response.json()
            if int((status.get("mirror") or {}).get("dead") or 0):
                listed = http.get("/_proxy/mirror", params={"limit": SHOWN_LETTERS})
                if listed.status_code == 200:
                    letters = listed.json().get("letters", [])
    except httpx.HTTPError as exc:
        print(f"banyan status: cannot reach the proxy at {base}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"status": status, "dead_letters": letters}, indent=2, sort_keys=True))
    else:
        print(render(status, letters))
    items = status.get("attention")
    return 1 if (items if items is not None else attention(status)) else 0

"""``banyan rollout start|status|pause|resume|promote|abort FEATURE [--flags F] [--proxy URL]``.

Talks to the running proxy: ``--proxy URL``, else ``$BANYAN_PROXY_URL``, else the address the
proxy of the flag file noted in its state folder (``.banyan/proxy.json`` beside ``--flags``,
default ``$BANYAN_FLAGS`` or ``flags.yaml``), else ``http://127.0.0.1:8080``. Actions send the
admin token as the admin API wants (``$BANYAN_ADMIN_TOKEN``, else the one ``banyan up`` keeps in
the state folder: :mod:`banyan.admin_token`). ``status`` shows one feature's
rollout (or every rollout without FEATURE); ``--json`` prints the API's JSON; ``--watch`` repeats
every ``--interval`` seconds until the rollout ends. Exit codes: 0 success (for ``status``, a
rollout that has not aborted), 1 refused, aborted or unreachable proxy, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from banyan.admin_token import admin_headers
from banyan.env import flags_default, option_default
from banyan.rollout.gates import medians_of
from banyan.rollout.schedule import ACTIONS
from banyan.rollout.store import proxy_file

DEFAULT_URL = "http://127.0.0.1:8080"


def proxy_url(flags: str | None, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    env = option_default("BANYAN_PROXY_URL", "")
    if env:
        return env.rstrip("/")
    path = proxy_file(flags or flags_default())
    try:
        noted = json.loads(Path(path).read_text(encoding="utf-8"))
        return str(noted["url"]).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banyan rollout", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("status", *ACTIONS))
    parser.add_argument("feature", nargs="?", default=None)
    parser.add_argument("--flags", default=None, help="the flag file (finds its proxy)")
    parser.add_argument("--proxy", default=None, help="the proxy's base URL")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.add_argument("--watch", action="store_true", help="status: repeat until it ends")
    parser.add_argument("--interval", type=float, default=1.0, help="--watch period, seconds")
    parser.add_argument("--timeout", type=float, default=30.0, help="per call, seconds")
    return parser


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def render(record: dict[str, Any]) -> str:
    """One rollout as a few lines a person reads."""
    steps = record.get("steps") or []
    index = int(record.get("step", 0))
    label = steps[index]["label"] if index < len(steps) else "-"
    line = f"{record['feature']}: {record['state']} at step {index + 1}/{len(steps)} ({label})"
    if record.get("elapsed_s") is not None:
        wanted = steps[index].get("for") if index < len(steps) else None
        line += f", {record['elapsed_s']:.0f}s" + (f" of {wanted}" if wanted else "")
    lines = [line, "  steps: " + " -> ".join(s["label"] for s in steps)]
    for gate in record.get("gates") or []:
        verdict = "ok" if gate["ok"] else "FAILED"
        if not gate.get("judged", True):
            verdict = "not judged yet"
        lines.append(
            f"  gate {gate['name']}: {_number(gate['observed'])} (limit {_number(gate['limit'])},"
            f" {gate.get('samples', 0)} samples) {verdict}{medians_of(gate)}"
        )
    if record.get("reason"):
        lines.append(f"  reason: {record['reason']}")
    return "\n".join(lines)


def _show(body: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(body, indent=2, sort_keys=True, default=str))
    elif isinstance(body, list):
        print("\n".join(render(r) for r in body) if body else "no rollouts")
    else:
        print(render(body))


def _call(client: httpx.Client, method: str, path: str) -> tuple[int, Any]:
    answer = client.request(method, path)
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, {"error": {"message": answer.text[:200]}}


def _failed(status: int, body: Any) -> bool:
    if status < 400:
        return False
    error = body.get("error", {}) if isinstance(body, dict) else {}
    print(f"banyan rollout: {status} {error.get('message', body)}", file=sys.stderr)
    return True


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action != "status" and not args.feature:
        print(f"banyan rollout {args.action}: FEATURE is required", file=sys.stderr)
        return 2
    base = proxy_url(args.flags, args.proxy)
    try:
        headers = admin_headers(args.flags)
        with httpx.Client(base_url=base, headers=headers, timeout=args.timeout) as client:
            if args.action != "status":
                status, body = _call(
                    client, "POST", f"/_proxy/rollouts/{args.feature}/{args.action}"
                )
                if _failed(status, body):
                    return 1
                _show(body, args.json)
                return 0
            path = "/_proxy/rollouts" + (f"/{args.feature}" if args.feature else "")
            while True:
                status, body = _call(client, "GET", path)
                if _failed(status, body):
                    return 1
                _show(body, args.json)
                records = body if isinstance(body, list) else [body]
                active = any(r["state"] in ("running", "paused") for r in records)
                if not args.watch or not active:
                    aborted = any(r["state"] == "aborted" for r in records)
                    return 1 if aborted and args.feature else 0
                sys.stdout.flush()
                time.sleep(args.interval)
    except httpx.HTTPError as exc:
        print(f"banyan rollout: cannot reach the proxy at {base}: {exc}", file=sys.stderr)
        return 1

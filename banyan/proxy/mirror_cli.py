"""``banyan mirror list|retry|drop [ID|--all] [--proxy URL] [--flags F] [--json]``.

The mirror queue's dead letters — mirrored writes the other store did not take — through the
running proxy's admin API (:mod:`banyan.proxy.mirror_admin`): ``list`` shows the queue's counts
and each letter with its reason; ``retry ID`` gives a letter fresh attempts (after the cause was
fixed), ``drop ID`` deletes it (the write then exists on one store only: ``banyan data verify``
reports it); ``--all`` acts on every dead letter. The proxy is found as ``banyan rollout`` finds
it (``--proxy``, ``$BANYAN_PROXY_URL``, the address its flag file's proxy noted, else
``http://127.0.0.1:8080``); the admin token (retry and drop need it) is ``$BANYAN_ADMIN_TOKEN``,
else the one ``banyan up`` keeps in the state folder (:mod:`banyan.admin_token`).
Exit codes: 0 done (``list``: whatever it shows), 1 refused, not found or unreachable proxy,
2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import httpx

from banyan.admin_token import admin_headers
from banyan.rollout.cli import proxy_url


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banyan mirror", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("list", "retry", "drop"))
    parser.add_argument("id", nargs="?", default=None, help="a dead letter's id (retry, drop)")
    parser.add_argument("--all", action="store_true", help="retry or drop every dead letter")
    parser.add_argument("--proxy", default=None, help="the proxy's base URL")
    parser.add_argument("--flags", default=None, help="the flag file (finds its proxy)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.add_argument("--limit", type=int, default=100, help="list: at most this many")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    return parser


def render(body: dict[str, Any]) -> str:
    counts = ", ".join(
        f"{body.get(k, 0)} {k}" for k in ("pending", "dead", "delivered", "retried", "dropped")
    )
    lines = [f"mirror queue: {counts}"]
    letters = body.get("letters") or []
    if not letters:
        lines.append("no dead letters")
    for letter in letters:
        queued = letter.get("created_at")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(queued)) if queued else "-"
        lines.append(
            f"#{letter['id']}  {when}Z  {letter.get('feature')} -> {letter.get('target')}  "
            f"{letter.get('method')} {letter.get('path_qs')}  "
            f"({letter.get('attempts')} attempt{'s' if letter.get('attempts') != 1 else ''})"
        )
        lines.append(f"    reason: {letter.get('reason') or '-'}")
    return "\n".join(lines)


def _problem(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"{response.status_code} {error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return f"{response.status_code} {response.text[:200]}"


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.action == "list" and (args.id is not None or args.all):
        parser.error("list takes no ID and no --all")
    if args.action != "list" and (args.id is None) == (not args.all):
        parser.error(f"{args.action} takes a dead letter's ID or --all (one of them)")
    if args.id is not None and not args.id.isdigit():
        parser.error(f"ID must be a number, not {args.id!r}")
    base = proxy_url(args.flags, args.proxy)
    try:
        with httpx.Client(
            base_url=base, headers=admin_headers(args.flags), timeout=args.timeout
        ) as http:
            if args.action == "list":
                response = http.get("/_proxy/mirror", params={"limit": args.limit})
            else:
                letter = "all" if args.all else args.id
                if args.action == "retry":
                    response = http.post(f"/_proxy/mirror/{letter}/retry")
                else:
                    response = http.delete(f"/_proxy/mirror/{letter}")
    except httpx.HTTPError as exc:
        print(f"banyan mirror: cannot reach the proxy at {base}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"banyan mirror: {args.action}: {_problem(response)}", file=sys.stderr)
        return 1
    body = response.json()
    if args.json:
        print(json.dumps(body, indent=2, sort_keys=True))
    elif args.action == "list":
        print(render(body))
    else:
        done = "retried" if args.action == "retry" else "dropped"
        print(f"{done} {body.get(done, 0)} dead letter{'s' if body.get(done) != 1 else ''}")
    return 0

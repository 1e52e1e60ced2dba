"""``banyan parity report``, ``replay``, ``noise`` and ``reset``.

The store is ``--db`` (a URL or a SQLite file path), by default the one the running stack writes:
``BANYAN_PARITY_DB``, else ``.banyan/parity.db`` beside the flag file
(:mod:`banyan.parity.location`). ``report --proxy URL`` asks a running proxy for its report
instead (``/_proxy/parity.json``, with the admin token: :mod:`banyan.admin_token`). ``--since`` takes
``10m``, ``2h``, ``1d`` or an ISO time: counters are kept by the hour, so they count from the start
of the hour ``since`` falls in; examples, skips and rollbacks from ``since`` exactly.

``replay`` re-sends a stored example's request to both backends named in the flag file and compares
again with the feature's rules: exit 0 when they now agree, 1 when they still differ, 3 when both
refused or failed (two 401s are not agreement: nothing was compared). Stored requests are
redacted, so credentials are supplied again with ``--token`` (or ``BANYAN_REPLAY_TOKEN``) as a
bearer token.

``noise`` lists the learned noise per feature with its counts, and ``--forget PATH`` forgets a
path (of ``--feature``, or of every feature). With ``--proxy URL`` it asks the running proxy
(``/_proxy/parity/noise``; forgetting needs ``BANYAN_ADMIN_TOKEN``), which also drops the path
from what the proxy holds in memory; without, it works on the store (a running proxy keeps what it
had learned until it restarts).

``reset [--feature F]`` deletes what the store holds (of one feature): counters, examples,
latencies, skips, rollbacks and learned noise. With ``--proxy URL`` (admin token) the running
proxy does it (``POST /_proxy/parity/reset``) and also forgets, in memory, the noise it learned
and the endpoints it counted: it starts over at once, not at its next restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from banyan.admin_token import admin_headers
from banyan.env import flags_default, option_default
from banyan.isotime import iso_ms
from banyan.parity.compare import Rules
from banyan.parity.location import default_url, store_url
from banyan.parity.replay import replay as replay_example
from banyan.parity.report import render_html, render_json, render_text
from banyan.parity.store import ParityStore


def default_db(flags: str) -> str:
    return default_url(flags)


def db_of(args: argparse.Namespace) -> str:
    return store_url(args.db) if args.db else default_url(args.flags)


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """``1h``, ``30m``, ``2d``, ``45s`` ago, or an ISO timestamp; None when not given."""
    if not text:
        return None
    now = time.time() if now is None else now
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now - float(match.group(1)) * scale
    ms = iso_ms(text)
    if ms is None:
        raise ValueError(f"not a duration (30m, 2h, 1d) or an ISO 8601 time: {text!r}")
    return ms / 1000


async def report(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    if args.proxy:
        data = await _report_by_proxy(args, since)
        if data is None:
            return 2
    else:
        store = ParityStore(db_of(args))
        try:
            await store.open()
            data = await store.summary(feature=args.feature, since=since)
        finally:
            await store.close()
    render = {"text": render_text, "json": render_json, "html": render_html}[args.format]
    print(render(data))
    return 0


def _admin_headers(args: argparse.Namespace) -> dict[str, str]:
    if args.admin_token:
        return {"Authorization": f"Bearer {args.admin_token}"}
    return admin_headers(args.flags)


async def _report_by_proxy(args: argparse.Namespace, since: float | None) -> dict[str, Any] | None:
    params = {k: str(v) for k, v in (("feature", args.feature), ("since", since)) if v}
    url = args.proxy.rstrip("/") + "/_proxy/parity.json"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, params=params, headers=_admin_headers(args)) as answer,
        ):
            body = await answer.json(content_type=None)
    except (aiohttp.ClientError, ValueError) as exc:
        print(f"banyan parity report: cannot ask {args.proxy}: {exc}", file=sys.stderr)
        return None
    if answer.status != 200:
        message = body.get("error", {}).get("message", body) if isinstance(body, dict) else body
        print(f"banyan parity report: {answer.status}: {message}", file=sys.stderr)
        return None
    return dict(body)


async def reset(args: argparse.Namespace) -> int:
    if args.proxy:
        return await _reset_by_proxy(args)
    store = ParityStore(db_of(args))
    try:
        await store.open()
        deleted = await store.reset(args.feature)
    finally:
        await store.close()
    what = f"feature {args.feature}" if args.feature else "every feature"
    print(f"parity store reset for {what}: {deleted} rows deleted")
    return 0


async def _reset_by_proxy(args: argparse.Namespace) -> int:
    """Reset through the running proxy: its store, and the noise and endpoints it holds in memory."""
    params = {"feature": args.feature} if args.feature else {}
    url = args.proxy.rstrip("/") + "/_proxy/parity/reset"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, params=params, headers=_admin_headers(args)) as answer,
    ):
        body = await answer.json(content_type=None)
    if answer.status != 200:
        message = body.get("error", {}).get("message", body) if isinstance(body, dict) else body
        print(f"banyan parity reset: {answer.status}: {message}", file=sys.stderr)
        return 2
    what = f"feature {args.feature}" if args.feature else "every feature"
    print(f"parity reset for {what} on {args.proxy}: {body['deleted']} rows deleted")
    return 0


def _backends(flags: str) -> dict[str, str]:
    import yaml

    data = yaml.safe_load(Path(flags).read_text()) or {}
    out = {}
    for name, spec in (data.get("backends") or {}).items():
        out[name] = spec["url"] if isinstance(spec, dict) else str(spec)
    return out


def _rules(flags: str, feature: str) -> Rules:
    from banyan.proxy.flags import load_flags

    found = load_flags(flags).feature(feature)
    return Rules.from_config(found.parity) if found else Rules()


async def replay(args: argparse.Namespace) -> int:
    store = ParityStore(db_of(args))
    try:
        await store.open()
        example = await store.example(args.id)
    finally:
        await store.close()
    if example is None:
        print(f"banyan parity: no stored example #{args.id}", file=sys.stderr)
        return 2
    token = args.token or (option_default("BANYAN_REPLAY_TOKEN", "") or None)
    rules = _rules(args.flags, example["feature"])
    summary = await replay_example(example, _backends(args.flags), rules, token=token)
    print(json.dumps(summary, indent=2, default=str) if args.json else _replay_text(summary))
    if summary["verdict"] in ("both refused", "both failed"):
        return 3
    return 1 if summary["still_differs"] else 0


def _replay_text(summary: dict[str, Any]) -> str:
    primary, candidate = summary["primary"], summary["candidate"]
    lines = [
        f"replay #{summary['example']}: {summary['request']}",
        f"  {primary['backend']} answered {primary['status'] or 'nothing'}, "
        f"{candidate['backend']} answered {candidate['status'] or 'nothing'}",
    ]
    verdict = summary["verdict"]
    if verdict == "both refused":
        lines.append(
            "both refused: nothing was compared (stored credentials are redacted: pass --token)"
        )
    elif verdict == "both failed":
        lines.append("both failed: nothing was compared")
    elif verdict == "agree":
        lines.append("the backends now agree")
    for d in summary["differences"]:
        lines.append(
            f"  {d['kind']:<8} {d['path']}: {json.dumps(d['primary'], default=str)} != {json.dumps(d['candidate'], default=str)}"
        )
    return "\n".join(lines)


NOISE_THRESHOLD = 2  # as NoiseLearner's: a path seen differing twice within a backend is noise


async def noise(args: argparse.Namespace) -> int:
    if args.proxy:
        return await _noise_by_proxy(args)
    store = ParityStore(db_of(args))
    try:
        await store.open()
        if args.forget:
            forgotten = await store.forget_noise(args.forget, args.feature)
            print(f"forgot {args.forget} ({forgotten} learned entries)")
            return 0 if forgotten else 1
        rows = [
            {"feature": f, "endpoint": e, "path": p, "count": n}
            for f, e, p, n in await store.noise_counts(args.feature)
            if n >= NOISE_THRESHOLD
        ]
    finally:
        await store.close()
    _print_noise(rows)
    return 0


async def _noise_by_proxy(args: argparse.Namespace) -> int:
    headers = _admin_headers(args)
    params = {k: v for k, v in (("feature", args.feature), ("path", args.forget)) if v}
    url = args.proxy.rstrip("/") + "/_proxy/parity/noise"
    async with aiohttp.ClientSession() as session:
        method = "DELETE" if args.forget else "GET"
        async with session.request(method, url, params=params, headers=headers) as answer:
            body = await answer.json(content_type=None)
    if answer.status != 200:
        message = body.get("error", {}).get("message", body) if isinstance(body, dict) else body
        print(f"banyan parity noise: {answer.status}: {message}", file=sys.stderr)
        return 2
    if args.forget:
        print(f"forgot {args.forget} ({body['forgotten']} learned entries)")
        return 0 if body["forgotten"] else 1
    _print_noise(body["noise"])
    return 0


def _print_noise(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("No noise learned.")
    for row in rows:
        print(f"{row['feature']}  {row['endpoint']}  {row['path']}  (seen {row['count']}x)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banyan parity")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="print the parity report")
    rep.add_argument("--format", choices=("text", "json", "html"), default="text")
    rep.add_argument("--feature")
    rep.add_argument("--since", help="e.g. 1h, 30m, 2d, or an ISO timestamp")
    rep.add_argument("--db", help="a store URL or a SQLite file (default: the stack's store)")
    rep.add_argument("--proxy", metavar="URL", help="ask the running proxy instead of the store")
    rep.add_argument("--admin-token", help="default: BANYAN_ADMIN_TOKEN, else banyan up's")
    rep.add_argument("--flags", default=flags_default())
    rpl = sub.add_parser("replay", help="re-send a stored mismatch to both backends")
    rpl.add_argument("id", type=int)
    rpl.add_argument("--db")
    rpl.add_argument("--flags", default=flags_default())
    rpl.add_argument("--token")
    rpl.add_argument("--json", action="store_true")
    nse = sub.add_parser("noise", help="list learned noise, or forget a path")
    nse.add_argument("--feature")
    nse.add_argument("--forget", metavar="PATH", help="forget this learned path, e.g. $.items")
    nse.add_argument("--db")
    nse.add_argument("--proxy", metavar="URL", help="ask the running proxy instead of the store")
    nse.add_argument("--admin-token", help="default: BANYAN_ADMIN_TOKEN, else banyan up's")
    nse.add_argument("--flags", default=flags_default())
    rst = sub.add_parser("reset", help="start over: delete what the store holds")
    rst.add_argument("--feature")
    rst.add_argument("--db")
    rst.add_argument("--proxy", metavar="URL", help="reset through the running proxy (memory too)")
    rst.add_argument("--admin-token", help="default: BANYAN_ADMIN_TOKEN, else banyan up's")
    rst.add_argument("--flags", default=flags_default())
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        return asyncio.run(report(args))
    if args.command == "noise":
        return asyncio.run(noise(args))
    if args.command == "reset":
        return asyncio.run(reset(args))
    return asyncio.run(replay(args))

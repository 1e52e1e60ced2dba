"""Command line of ``banyan data``: backfill, verify, backup and restore.

Store URLs default to the SQLite files ``banyan up`` uses (``.banyan/legacy.db`` and
``.banyan/new.db``); any SQLAlchemy URL works (``postgresql://...`` gets the asyncpg driver).
Exit codes: 0 done, 1 differences found or an operation refused or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from banyan.backends.datatools.backfill import TableResult, backfill
from banyan.backends.datatools.backup import RestoreRefused, backup, restore
from banyan.backends.datatools.stores import StoreError
from banyan.backends.datatools.verify import TableReport, verify

DEFAULT_LEGACY = "sqlite+aiosqlite:///.banyan/legacy.db"
DEFAULT_NEW = "sqlite+aiosqlite:///.banyan/new.db"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banyan data", description="Move and check records between the legacy and new stores."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fill = sub.add_parser(
        "backfill", help="copy the legacy store into the new store (idempotent, resumable)"
    )
    fill.add_argument("--legacy", default=DEFAULT_LEGACY, help="legacy store URL")
    fill.add_argument("--new", default=DEFAULT_NEW, help="new store URL")
    fill.add_argument("--batch", type=int, default=1000, help="records per transaction")
    fill.add_argument(
        "--restart", action="store_true", help="ignore checkpoints of an interrupted run"
    )
    check = sub.add_parser(
        "verify", help="compare the stores record by record; exit 1 on any difference"
    )
    check.add_argument("--legacy", default=DEFAULT_LEGACY, help="legacy store URL")
    check.add_argument("--new", default=DEFAULT_NEW, help="new store URL")
    check.add_argument(
        "--max-listed", type=int, default=None, help="list at most N differences per table"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    save = sub.add_parser("backup", help="consistent online copy of a store into a SQLite file")
    save.add_argument("--db", required=True, help="store URL")
    save.add_argument("--out", required=True, type=Path, help="backup file to create")
    load = sub.add_parser("restore", help="restore a backup file into a store")
    load.add_argument("--db", required=True, help="store URL")
    load.add_argument("--in", dest="source", required=True, type=Path, help="backup file")
    load.add_argument("--force", action="store_true", help="overwrite a store that holds rows")
    return parser


def _print_backfill(results: list[TableResult]) -> None:
    print(f"{'table':<32} {'read':>9} {'inserted':>9} {'updated':>9} {'unchanged':>9}")
    for r in results:
        note = "  (resumed)" if r.resumed else ""
        print(f"{r.table:<32} {r.read:>9} {r.inserted:>9} {r.updated:>9} {r.unchanged:>9}{note}")


def _print_verify(reports: list[TableReport], as_json: bool) -> None:
    if as_json:
        body = [
            {
                "table": r.table,
                "legacy_rows": r.legacy_rows,
                "new_rows": r.new_rows,
                "matched": r.matched,
                "differences": r.difference_count,
                "listed": [
                    {"key": list(d.key), "kind": d.kind, "columns": list(d.columns)}
                    for d in r.differences
                ],
            }
            for r in reports
        ]
        print(
            json.dumps(
                {"tables": body, "differences": sum(r.difference_count for r in reports)},
                default=str,
            )
        )
        return
    print(f"{'table':<32} {'legacy':>9} {'new':>9} {'matched':>9} {'diffs':>7}")
    for r in reports:
        counts = f"{r.legacy_rows:>9} {r.new_rows:>9} {r.matched:>9} {r.difference_count:>7}"
        print(f"{r.table:<32} {counts}")
    for r in reports:
        for d in r.differences:
            print(d.describe())
        hidden = r.difference_count - len(r.differences)
        if hidden:
            print(f"{r.table}: ... and {hidden} more differences")
    total = sum(r.difference_count for r in reports)
    print("stores match" if total == 0 else f"{total} differences")


async def _run(args: argparse.Namespace) -> int:
    if args.command == "backfill":
        results = await backfill(args.legacy, args.new, batch=args.batch, restart=args.restart)
        _print_backfill(results)
        return 0
    if args.command == "verify":
        reports = await verify(args.legacy, args.new, max_listed=args.max_listed)
        _print_verify(reports, args.json)
        return 1 if any(r.difference_count for r in reports) else 0
    if args.command == "backup":
        rows = await backup(args.db, args.out)
        print(f"backed up {rows} rows to {args.out}")
        return 0
    rows = await restore(args.db, args.source, force=args.force)
    print(f"restored {rows} rows into {args.db}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one data command and return its exit code."""
    args = _parser().parse_args(argv)
    if getattr(args, "batch", 1) < 1:
        print("error: --batch must be at least 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except (
        RestoreRefused,
        StoreError,
        ValueError,
        FileNotFoundError,
        FileExistsError,
        RuntimeError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the store: {exc}", file=sys.stderr)
        return 1

"""``banyan flags``: check, set, roll back, explain the flag file and show its history.

Owns the command-line face of :mod:`banyan.proxy.flags` (validation),
:mod:`banyan.proxy.flag_edit` (edits that keep comments), :mod:`banyan.proxy.routing` (why a path
goes where it goes) and :mod:`banyan.proxy.flags_history` (the audit log). The file defaults to
``$BANYAN_FLAGS`` or ``flags.yaml``. With ``--control-db URL`` (default ``$BANYAN_CONTROL_DB``)
``set`` and ``rollback`` store overrides in that control store instead of writing the file,
``explain`` and ``status`` show the file value, the override, who set it and when, and
``reconcile`` writes the overrides back into the file (:mod:`banyan.control.cli`). Exit codes: 0
success, 1 invalid file, refused edit, or a missing or corrupt audit log, 2 usage error. Every
failure is one line on stderr, never a traceback; the file is read under the proxy's rules
(regular file, bounded size).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from banyan.control import cli as control_cli
from banyan.env import flags_default, option_default
from banyan.logs import configure
from banyan.proxy.audit import AuditLog
from banyan.proxy.flag_edit import EDIT_LISTENERS, EditListener, EditResult, rollback, set_mode
from banyan.proxy.flags import MODES, FlagError, load_flags
from banyan.proxy.flags_history import HistoryError, format_entry, log_path, read_history
from banyan.proxy.routing import Router, user_from_authorization

WRITES = ("skip", "mirror", "always")  # the flag file's `writes:` values (docs/flags.md)


def _default_file() -> str:
    return flags_default()


def _pairs(values: Sequence[str] | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"banyan flags explain: --{what} wants NAME=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _control_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control-db",
        default=option_default("BANYAN_CONTROL_DB", "") or None,
        help="PostgreSQL URL of the proxies' control store ($BANYAN_CONTROL_DB)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banyan flags", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate a flag file (exit 1 with file:line)")
    check.add_argument("file", nargs="?", default=None)

    set_ = commands.add_parser("set", help="set a feature's mode (and canary percent)")
    set_.add_argument("feature")
    set_.add_argument("mode", choices=MODES)
    set_.add_argument("--percent", type=float, default=None)
    set_.add_argument(
        "--writes", choices=WRITES, default=None, help="the feature's writes policy too"
    )
    set_.add_argument("--file", default=None)
    _control_option(set_)

    back = commands.add_parser("rollback", help="send a feature (or --all) back to legacy")
    target = back.add_mutually_exclusive_group(required=True)
    target.add_argument("feature", nargs="?", default=None)
    target.add_argument("--all", action="store_true")
    back.add_argument("--file", default=None)
    _control_option(back)

    explain = commands.add_parser("explain", help="which backend serves a request, and why")
    explain.add_argument("--path", required=True)
    explain.add_argument("--user", default=None, help="the JWT sub of the caller")
    explain.add_argument("--token", default=None, help="a JWT; its sub is used as --user")
    explain.add_argument("--header", action="append", metavar="NAME=VALUE")
    explain.add_argument("--cookie", action="append", metavar="NAME=VALUE")
    explain.add_argument("--ip", default="127.0.0.1")
    explain.add_argument("--file", default=None)
    explain.add_argument("--json", action="store_true")
    _control_option(explain)

    status = commands.add_parser(
        "status", help="each feature: file value, override, who set it and when"
    )
    status.add_argument("--file", default=None)
    status.add_argument("--json", action="store_true")
    _control_option(status)

    reconcile = commands.add_parser(
        "reconcile", help="write the control store's overrides into the file, then clear them"
    )
    reconcile.add_argument("file")
    _control_option(reconcile)

    history = commands.add_parser("history", help="flag changes from the audit log, newest last")
    history.add_argument("--audit", default=None, help="the log (default: the proxy's for --file)")
    history.add_argument("--feature", default=None)
    history.add_argument("--limit", type=_count, default=None, help="only the newest N changes")
    history.add_argument("--json", action="store_true", help="the raw JSON lines")
    history.add_argument("--file", default=None)
    _control_option(history)
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _check(file: str) -> int:
    flags = load_flags(file)
    print(f"{file}: valid ({len(flags.features)} features, digest {flags.digest})")
    return 0


def _report_edit(file: str, what: str, result: EditResult) -> int:
    if result.changed:
        print(f"{file}: {what} (digest {result.digest})")
    else:
        print(f"{file}: {what}: already so, file unchanged")
    return 0


def _explain(args: argparse.Namespace, file: str) -> int:
    found: dict[str, Any] = {}
    if args.control_db:
        flags, found = control_cli.effective_flags(args.control_db, file)
    else:
        flags = load_flags(file)
    router = Router(flags)
    user = args.user or user_from_authorization(None, args.token)
    decision = router.decide(
        args.path,
        user=user,
        headers=_pairs(args.header, "header"),
        cookies=_pairs(args.cookie, "cookie"),
        client_ip=args.ip,
        request_id="cli",
    )
    if args.json:
        out = {
            "path": args.path,
            "feature": decision.feature,
            "backend": decision.backend,
            "mode": decision.mode,
            "reason": decision.reason,
            "shadow": decision.shadow,
            "user": user,
            "digest": flags.digest,
        }
        if args.control_db:
            rows = control_cli.status_rows(file, found)
            out["control"] = next((r for r in rows if r["feature"] == decision.feature), None)
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"feature: {decision.feature}")
    print(f"backend: {decision.backend}")
    print(f"mode:    {decision.mode}")
    print(f"reason:  {decision.reason}")
    if decision.shadow:
        print(f"shadow:  {decision.shadow}")
    if args.control_db:
        for line in control_cli.explain_lines(file, decision.feature, found):
            print(line)
    return 0


def _status(args: argparse.Namespace, file: str) -> int:
    found = control_cli.overrides(args.control_db) if args.control_db else {}
    rows = control_cli.status_rows(file, found)
    if args.json:
        print(json.dumps({"file": file, "control": bool(args.control_db), "features": rows}))
        return 0
    if not args.control_db:
        print(f"{file}: no control store (--control-db): the file is the store")
    for line in control_cli.format_status(rows):
        print(line)
    return 0


def _reconcile(args: argparse.Namespace, file: str) -> int:
    if not args.control_db:
        print(
            "banyan flags reconcile: needs --control-db URL (or BANYAN_CONTROL_DB)", file=sys.stderr
        )
        return 2
    written, missing = control_cli.reconcile(args.control_db, file)
    for name in written:
        print(f"{file}: {name}: override written into the file and cleared")
    for name in missing:
        print(f"{file}: {name}: no such feature in the file; override kept", file=sys.stderr)
    if not written and not missing:
        print(f"{file}: no overrides to reconcile")
    return 0


def _flip(
    args: argparse.Namespace, file: str, features: list[str] | None, changes: dict[str, Any]
) -> int:
    changed = control_cli.flip(args.control_db, file, features, changes)
    what = ", ".join(features) if features is not None else "all features"
    if changed:
        print(f"{file}: {what}: override {changes} stored in the control store")
    else:
        print(f"{file}: {what}: override already so, control store unchanged")
    return 0


def _history(args: argparse.Namespace, file: str) -> int:
    if args.control_db:  # the replicas' shared audit table
        shared = control_cli.history(args.control_db, feature=args.feature, limit=args.limit)
        for row in shared:
            print(json.dumps(row, default=str) if args.json else format_entry(row))
        if not shared and not args.json:
            print("control store: no changes" + (f" of {args.feature}" if args.feature else ""))
        return 0
    path = log_path(file, args.audit)
    try:
        history = read_history(path, feature=args.feature, limit=args.limit)
    except HistoryError as exc:
        print(f"banyan flags history: {exc}", file=sys.stderr)
        return 1
    for entry in history.entries:
        print(entry.raw if args.json else format_entry(entry.data))
    if not history.entries and not args.json:
        print(f"{path}: no changes" + (f" of {args.feature}" if args.feature else ""))
    for problem in history.problems:
        print(problem, file=sys.stderr)
    return 1 if history.problems else 0


def _audit_edits(file: str) -> EditListener:
    """Record this command's edits in the proxy's audit log as ``cli`` (a proxy watching the file
    then skips its own ``file`` entries for them)."""
    log = AuditLog(log_path(file))

    def listener(change: dict[str, Any]) -> None:
        if not log.has_entry(change["feature"], change["digest"]):  # a proxy in this process did
            log.append(
                source="cli",
                feature=change["feature"],
                before=change.get("before"),
                after=change.get("after"),
                digest=change["digest"],
            )

    return listener


def main(argv: list[str]) -> int:
    """Entry point of ``banyan flags``."""
    configure()
    args = _parser().parse_args(argv)
    file = getattr(args, "file", None) or _default_file()
    listener = _audit_edits(file)
    EDIT_LISTENERS.append(listener)
    try:
        if args.command == "check":
            return _check(file)
        if args.command == "status":
            return _status(args, file)
        if args.command == "reconcile":
            return _reconcile(args, file)
        if args.command == "set" and args.control_db:
            changes: dict[str, Any] = {"mode": args.mode}
            if args.percent is not None:
                p = args.percent
                changes["percent"] = int(p) if float(p).is_integer() else float(p)
            if args.writes is not None:
                changes["writes"] = args.writes
            return _flip(args, file, [args.feature], changes)
        if args.command == "rollback" and args.control_db:
            return _flip(args, file, None if args.all else [args.feature], {"mode": "legacy"})
        if args.command == "set":
            result = set_mode(
                file, args.feature, args.mode, args.percent, source="cli", writes=args.writes
            )
            what = f"{args.feature} -> {args.mode}"
            if args.percent is not None:
                what += f" {args.percent:g}%"
            if args.writes is not None:
                what += f", writes {args.writes}"
            return _report_edit(file, what, result)
        if args.command == "rollback":
            feature = None if args.all else args.feature
            result = rollback(file, feature, source="cli")
            return _report_edit(file, f"{feature or 'all features'} -> legacy", result)
        if args.command == "history":
            return _history(args, file)
        return _explain(args, file)
    except FlagError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except Exception as exc:  # one line, never a traceback: the command's answer is its exit code
        print(
            f"{file}:0: banyan flags {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 1
    finally:
        EDIT_LISTENERS.remove(listener)

"""``banyan flags``: check, set, roll back and explain the flag file from a shell.

Owns the command-line face of :mod:`proxy.flags` (validation), :mod:`proxy.flag_edit` (edits that
keep comments) and :mod:`proxy.routing` (why a path goes where it goes). The file defaults to
``$BANYAN_FLAGS`` or ``flags.yaml``. Exit codes: 0 success, 1 invalid file or refused edit,
2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from banyan.logs import configure
from proxy.flag_edit import EditResult, rollback, set_mode
from proxy.flags import MODES, FlagError, load_flags
from proxy.routing import Router, user_from_authorization


def _default_file() -> str:
    return os.environ.get("BANYAN_FLAGS", "flags.yaml")


def _pairs(values: Sequence[str] | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"banyan flags explain: --{what} wants NAME=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banyan flags", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate a flag file (exit 1 with file:line)")
    check.add_argument("file", nargs="?", default=None)

    set_ = commands.add_parser("set", help="set a feature's mode (and canary percent)")
    set_.add_argument("feature")
    set_.add_argument("mode", choices=MODES)
    set_.add_argument("--percent", type=float, default=None)
    set_.add_argument("--file", default=None)

    back = commands.add_parser("rollback", help="send a feature (or --all) back to legacy")
    target = back.add_mutually_exclusive_group(required=True)
    target.add_argument("feature", nargs="?", default=None)
    target.add_argument("--all", action="store_true")
    back.add_argument("--file", default=None)

    explain = commands.add_parser("explain", help="which backend serves a request, and why")
    explain.add_argument("--path", required=True)
    explain.add_argument("--user", default=None, help="the JWT sub of the caller")
    explain.add_argument("--token", default=None, help="a JWT; its sub is used as --user")
    explain.add_argument("--header", action="append", metavar="NAME=VALUE")
    explain.add_argument("--cookie", action="append", metavar="NAME=VALUE")
    explain.add_argument("--ip", default="127.0.0.1")
    explain.add_argument("--file", default=None)
    explain.add_argument("--json", action="store_true")
    return parser


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
        print(json.dumps(out, indent=2))
        return 0
    print(f"feature: {decision.feature}")
    print(f"backend: {decision.backend}")
    print(f"mode:    {decision.mode}")
    print(f"reason:  {decision.reason}")
    if decision.shadow:
        print(f"shadow:  {decision.shadow}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``banyan flags``."""
    configure()
    args = _parser().parse_args(argv)
    file = getattr(args, "file", None) or _default_file()
    try:
        if args.command == "check":
            return _check(file)
        if args.command == "set":
            result = set_mode(file, args.feature, args.mode, args.percent, source="cli")
            what = f"{args.feature} -> {args.mode}"
            if args.percent is not None:
                what += f" {args.percent:g}%"
            return _report_edit(file, what, result)
        if args.command == "rollback":
            feature = None if args.all else args.feature
            result = rollback(file, feature, source="cli")
            return _report_edit(file, f"{feature or 'all features'} -> legacy", result)
        return _explain(args, file)
    except FlagError as exc:
        print(str(exc), file=sys.stderr)
        return 1

"""``banyan proxy --flags F --host H --port P [--workers N] [--no-access-log] [--max-* BYTES]``.

The ``--max-*`` options set the header limits (:mod:`banyan.proxy.limits`); each defaults to its
``BANYAN_MAX_*`` environment variable, else to the built-in default.

With ``--workers N`` (N > 1) the parent forks N worker processes that bind the same port with
``SO_REUSEPORT``; the kernel spreads connections across them. Port 0 with several workers first
picks a free port so they all share it. Each worker watches the flag file itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from banyan.proxy.limits import OPTION, Limits
from banyan.serving import run
from banyan.testing import free_port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banyan proxy", description="Run the routing proxy.")
    parser.add_argument("--flags", default=os.environ.get("BANYAN_FLAGS", "flags.yaml"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-parity", action="store_true", help="never shadow or compare")
    parser.add_argument(
        "--no-access-log", action="store_true", help="skip the per-request log line"
    )
    defaults = Limits.from_env()
    for name, option in OPTION.items():
        parser.add_argument(
            option,
            dest=name,
            type=int,
            default=getattr(defaults, name),
            help=f"{LIMIT_HELP[name]} (default {getattr(defaults, name)})",
        )
    return parser


LIMIT_HELP = {
    "max_header_bytes": "bytes of all header lines of a request or an upstream answer",
    "max_field_bytes": "bytes of one header line (name and value)",
    "max_headers": "header lines in one request or answer",
    "max_target_bytes": "bytes of a request target (path and query, or absolute URL)",
}


def limits_of(args: argparse.Namespace) -> Limits:
    values = {name: getattr(args, name) for name in OPTION}
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{OPTION[name]} must be positive, not {value}")
    return Limits(**values)


def _factory(args: argparse.Namespace) -> object:
    def make() -> object:
        from banyan.proxy.app import create_app
        from banyan.proxy.shadow import shadow_from_env

        shadow = None if args.no_parity else shadow_from_env(args.flags)
        return create_app(
            args.flags, access_log=not args.no_access_log, shadow=shadow, limits=limits_of(args)
        )

    return make


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        limits_of(args)
    except ValueError as exc:  # a limit (option or BANYAN_MAX_* variable) that is not positive
        print(f"banyan proxy: {exc}", file=sys.stderr)
        return 1
    from banyan.proxy.flags import FlagError, load_flags

    try:
        load_flags(args.flags)
    except FlagError as exc:
        print(f"banyan proxy: {exc}", file=sys.stderr)
        return 1
    if args.workers <= 1:
        run("proxy", _factory(args), args.host, args.port)  # type: ignore[arg-type]
        return 0
    port = args.port or free_port(args.host)
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked worker
            run("proxy", _factory(args), args.host, port, reuse_port=True)  # type: ignore[arg-type]
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status

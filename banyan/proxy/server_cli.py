"""``banyan proxy --flags F --host H --port P [--workers N] [--no-access-log] [limits]``.

The ``--max-*-bytes`` and ``--max-headers`` options set the header limits
(:mod:`banyan.proxy.limits`); ``--max-websockets``, ``--max-requests`` the admission limits
(:mod:`banyan.proxy.admission`); ``--client-header-timeout``, ``--client-body-timeout``,
``--keepalive-timeout`` the client read timeouts (:mod:`banyan.client_timeouts`). Each defaults to
its ``BANYAN_*`` environment variable, else to the built-in default (docs/operations.md); all are
per worker process. The environment is read once, here, into one
:class:`~banyan.proxy.settings.Settings` (a bad value stops the start with a message naming the
variable); the options override it and the app is built from the result.

With ``--workers N`` (N > 1) the parent forks N worker processes that bind the same port with
``SO_REUSEPORT``; the kernel spreads connections across them. Port 0 with several workers first
picks a free port so they all share it. Each worker watches the flag file itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from banyan.client_timeouts import ClientTimeouts
from banyan.logs import flush as flush_logs
from banyan.ports import free_port
from banyan.proxy.admission import AdmissionLimits
from banyan.proxy.limits import OPTION, Limits
from banyan.proxy.settings import Settings
from banyan.serving import run


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    """The options, each defaulting to ``settings`` (by default the environment's, read now)."""
    settings = settings if settings is not None else Settings.from_env(os.environ)
    parser = argparse.ArgumentParser(prog="banyan proxy", description="Run the routing proxy.")
    parser.add_argument("--flags", default=settings.flags)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-parity", action="store_true", help="never shadow or compare")
    parser.add_argument(
        "--control-db",
        default=settings.control_db,
        help="PostgreSQL URL of the control store shared by replicas: runtime flag changes "
        "live there and the flag file is only read ($BANYAN_CONTROL_DB)",
    )
    parser.add_argument(
        "--no-access-log", action="store_true", help="skip the per-request log line"
    )
    defaults = settings.limits
    for name, option in OPTION.items():
        parser.add_argument(
            option,
            dest=name,
            type=int,
            default=getattr(defaults, name),
            help=f"{LIMIT_HELP[name]} (default {getattr(defaults, name)})",
        )
    gate = parser.add_argument_group(
        "admission and client timeouts (per worker; default: environment, then built-in)"
    )
    gate.add_argument(
        "--max-websockets",
        type=_positive(int),
        help="open WebSockets before new ones get 503 ($BANYAN_MAX_WEBSOCKETS, 10000)",
    )
    gate.add_argument(
        "--max-requests",
        type=_positive(int),
        help="HTTP requests in flight before new ones get 503 ($BANYAN_MAX_REQUESTS, 4096)",
    )
    gate.add_argument(
        "--client-header-timeout",
        type=_positive(float),
        help="seconds for a request head to arrive ($BANYAN_CLIENT_HEADER_TIMEOUT, 60)",
    )
    gate.add_argument(
        "--client-body-timeout",
        type=_positive(float),
        help="seconds between two reads of a body ($BANYAN_CLIENT_BODY_TIMEOUT, 60)",
    )
    gate.add_argument(
        "--keepalive-timeout",
        type=_positive(float),
        help="seconds an idle client connection stays open ($BANYAN_KEEPALIVE_TIMEOUT, 75)",
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


def admission_of(
    args: argparse.Namespace, settings: Settings | None = None
) -> tuple[AdmissionLimits, ClientTimeouts]:
    """The limits in force: command line over environment (``settings``) over built-in
    defaults."""
    settings = settings if settings is not None else Settings.from_env(os.environ)
    limits = settings.admission
    if args.max_websockets is not None:
        limits = dataclasses.replace(limits, max_websockets=args.max_websockets)
    if args.max_requests is not None:
        limits = dataclasses.replace(limits, max_requests=args.max_requests)
    timeouts = settings.client_timeouts
    for field, value in (
        ("header", args.client_header_timeout),
        ("body", args.client_body_timeout),
        ("keepalive", args.keepalive_timeout),
    ):
        if value is not None:
            timeouts = dataclasses.replace(timeouts, **{field: value})
    return limits, timeouts


def settings_of(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` with the command line's choices over them (raises ValueError for a limit
    that is not positive)."""
    admission, timeouts = admission_of(args, settings)
    return dataclasses.replace(
        settings,
        flags=args.flags,
        limits=limits_of(args),
        admission=admission,
        client_timeouts=timeouts,
        control_db=args.control_db,
    )


def _factory(args: argparse.Namespace, settings: Settings) -> Callable[[], web.Application]:
    def make() -> web.Application:
        from banyan.proxy.app import create_app
        from banyan.proxy.shadow import shadow_from_env

        shadow = None if args.no_parity else shadow_from_env(settings.flags, settings)
        return create_app(
            settings.flags,
            access_log=not args.no_access_log,
            shadow=shadow,
            control_db=settings.control_db,
            settings=settings,
        )

    return make


def main(argv: list[str]) -> int:
    try:
        environment = Settings.from_env(os.environ)  # the one read of the environment
        args = build_parser(environment).parse_args(argv)
        settings = settings_of(args, environment)
    except ValueError as exc:  # a BANYAN_* variable, or a limit option that is not positive
        print(f"banyan proxy: {exc}", file=sys.stderr)
        return 1
    from banyan.proxy.flags import FlagError, load_flags

    try:
        load_flags(args.flags, max_bytes=settings.flags_max_bytes)
    except FlagError as exc:
        print(f"banyan proxy: {exc}", file=sys.stderr)
        return 1
    factory = _factory(args, settings)
    timeouts, level = settings.client_timeouts, settings.log_level
    from banyan.rollout.store import advertise as note_address

    def advertise(flags: str, host: str, port: int) -> None:
        try:
            note_address(flags, host, port)
        except OSError as exc:  # a read-only flag folder (a ConfigMap): serve all the same
            print(f"banyan proxy: cannot note this proxy's address: {exc}", file=sys.stderr)

    if args.workers <= 1:
        advertise(args.flags, args.host, args.port)  # where `banyan rollout` finds this proxy
        run("proxy", factory, args.host, args.port, timeouts=timeouts, log_level=level)
        return 0
    port = args.port or free_port(args.host)
    advertise(args.flags, args.host, port)
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked worker
            run(
                "proxy",
                factory,
                args.host,
                port,
                reuse_port=True,
                timeouts=timeouts,
                log_level=level,
            )
            flush_logs()  # os._exit skips atexit: the last access lines are written here
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

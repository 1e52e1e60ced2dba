"""``banyan model``: run the local OpenAI-compatible model server from the command line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from banyan.logs import configure
from banyan.serving import run

DEFAULT_PORT = 8003


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banyan model", description="Run the deterministic OpenAI-compatible model server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_non_negative, default=DEFAULT_PORT)
    parser.add_argument("--token-delay-ms", type=_non_negative, default=0)
    parser.add_argument("--latency-ms", type=_non_negative, default=0)
    parser.add_argument("--fail-rate", type=_rate, default=0.0)
    parser.add_argument("--malformed-rate", type=_rate, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("BANYAN_MODEL_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /v1/* (default: $BANYAN_MODEL_API_KEY, none)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure()
    from aiohttp import web

    from banyan.backends.model.server import create_app

    def factory() -> web.Application:
        return create_app(
            token_delay_ms=args.token_delay_ms,
            fail_rate=args.fail_rate,
            latency_ms=args.latency_ms,
            malformed_rate=args.malformed_rate,
            seed=args.seed,
            api_key=args.api_key,
        )

    run("model", factory, args.host, args.port)
    return 0

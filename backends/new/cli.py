"""``banyan new --port P [--host H] [--db URL]``."""

from __future__ import annotations

import argparse

from banyan.serving import run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="banyan new", description="Run the new (Convex-style) AI Tutor backend."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--db", default="sqlite+aiosqlite:///new.db")
    args = parser.parse_args(argv)
    from backends.new.app import create_app

    run("new", lambda: create_app(args.db), args.host, args.port)
    return 0

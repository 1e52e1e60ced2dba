"""``banyan new --port P [--host H] [--db URL]``."""

from __future__ import annotations

from banyan.backends.common.server import backend_main


def main(argv: list[str]) -> int:
    return backend_main("new", 8002, argv)

"""The ``banyan`` console script: dispatches each subcommand to the module that owns it.

Subcommand modules are imported lazily so ``banyan flags check`` does not pay for the backends.
Each target is a ``main(argv: list[str]) -> int`` function.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "up": (
        "banyan.proxy.stack",
        "Start model + legacy + new + proxy in one command (SQLite by default)",
    ),
    "proxy": ("banyan.proxy.server_cli", "Run the routing proxy in front of the backends"),
    "flags": ("banyan.proxy.flags_cli", "Check, edit, explain and roll back the flag file"),
    "legacy": ("banyan.backends.legacy.cli", "Run the legacy AI Tutor backend"),
    "new": ("banyan.backends.new.cli", "Run the new (Convex-style) AI Tutor backend"),
    "model": ("banyan.backends.model.cli", "Run the local OpenAI-compatible model server"),
    "parity": ("banyan.parity.cli", "Parity reports and replays"),
    "rollout": ("banyan.rollout.cli", "Start, watch, pause, resume, promote or abort a rollout"),
    "data": ("banyan.backends.datatools.cli", "Backfill, verify, back up and restore the stores"),
    "mirror": ("banyan.proxy.mirror_cli", "List, retry or drop the mirror queue's dead letters"),
    "status": ("banyan.proxy.status_cli", "The running proxy on one screen: what needs attention"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: banyan COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0 if args else 2
    if args[0] in {"-V", "--version"}:
        from banyan import __version__

        print(f"banyan {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"banyan: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    entry: Callable[[list[str]], int] = module.main
    return int(entry(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

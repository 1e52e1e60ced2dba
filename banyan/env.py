"""Reading Banyan's environment variables: typed, checked, and refused by name.

Each function reads one variable from the mapping it is given (``os.environ`` at a program's
start, a plain dict in tests) and either returns a usable value or raises
:class:`~banyan.errors.SettingsError` naming the variable, the value and what was expected. An
unset or blank variable is the default. The proxy reads all of its variables once, through
:class:`banyan.proxy.settings.Settings`; command-line tools read the few defaults of their
options through :func:`option_default`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from banyan.errors import SettingsError

FLAGS_ENV = "BANYAN_FLAGS"
DEFAULT_FLAGS = "flags.yaml"


def text(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    return environ.get(name) or None


def _raw(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name)
    return None if raw is None or not raw.strip() else raw


def whole(environ: Mapping[str, str], name: str, default: int, *, unit: str = "") -> int:
    """A whole number of at least 1 (``unit`` names what it counts, as in "of bytes")."""
    raw = _raw(environ, name)
    if raw is None:
        return default
    noun = f"a whole number{' of ' + unit if unit else ''}"
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"must be {noun}, got {raw!r}") from None
    if value < 1:
        raise SettingsError(name, f"must be positive (at least 1), got {raw!r}")
    return value


def seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds."""
    raw = _raw(environ, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"must be a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(name, f"must be positive, got {raw!r}")
    return value


def choice(environ: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed`` (compared without case; returned as listed)."""
    raw = _raw(environ, name)
    if raw is None:
        return default
    for option in allowed:
        if raw.strip().lower() == option.lower():
            return option
    raise SettingsError(name, f"must be one of {', '.join(allowed)}, got {raw!r}")


def option_default(name: str, default: str) -> str:
    """A command-line option's default: the variable when set and not empty, else ``default``.
    For tools' argparse defaults only; the proxy process reads its settings once at start."""
    return os.environ.get(name) or default


def flags_default() -> str:
    """The flag file every command uses by default: ``$BANYAN_FLAGS``, else ``flags.yaml``."""
    return option_default(FLAGS_ENV, DEFAULT_FLAGS)

"""The flag file with the control store's overrides on top: what a replica actually serves.

Owns the one rule for combining them — each override's changes merged into its feature as
``banyan flags set`` would write them (:func:`banyan.proxy.flag_edit.apply_changes`), in memory,
the file untouched — and the previews built on it: the effective flag set, and one feature's
settings under a candidate override (validated as a whole file, so an override the file cannot
take is refused before it is stored). An override of a feature the file no longer has is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from banyan.control.store import Override
from banyan.proxy.audit import feature_settings
from banyan.proxy.flag_edit import apply_changes
from banyan.proxy.flags import FlagError, FlagSet, parse_flags, read_flag_bytes


def changes_of(overrides: Mapping[str, Override]) -> dict[str, dict[str, Any]]:
    return {name: o.changes for name, o in sorted(overrides.items())}


def overlay_bytes(data: bytes, where: str, overrides: Mapping[str, Override]) -> bytes:
    """The file's bytes with ``overrides`` merged in (the same bytes when there are none)."""
    return apply_changes(data, where, changes_of(overrides))


def effective(path: str | Path, overrides: Mapping[str, Override]) -> FlagSet:
    """The flag set a replica serves: the file at ``path`` with ``overrides`` on top."""
    where = str(path)
    return parse_flags(overlay_bytes(read_flag_bytes(path), where, overrides), where)


def settings_with(
    path: str | Path, feature: str, changes: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """``feature``'s settings in the file with ``changes`` applied to it; :class:`FlagError`
    when the result is not a valid flag file or the file has no such feature."""
    where = str(path)
    data = read_flag_bytes(path)
    flags = parse_flags(apply_changes(data, where, {feature: changes or {}}), where)
    found = flags.feature(feature)
    if found is None:
        raise FlagError(where, 0, f"no feature named {feature!r}")
    return feature_settings(found)

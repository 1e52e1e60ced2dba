"""Editing the flag file without losing its comments: set a mode, change fields, roll back.

Owns every write to ``flags.yaml`` made by Banyan itself (the CLI, the admin API, guards). The file
is read under the same rules as the proxy's (a regular file of bounded size, YAML within the
depth and size budgets) before ``ruamel.yaml`` sees it; edits go through ``ruamel.yaml`` in
round-trip mode so comments, key order and quoting survive. New values are written so that the
proxy's loader (YAML 1.1) reads back exactly what was written: a float always carries a ``.``
(``1.0e-05``, never ``1e-05``, which YAML 1.1 reads as a string) and a string that YAML 1.1 would
read as something else (``on``, ``0o17``, ``1_000``) is quoted. The edited text is validated with
:func:`banyan.proxy.flags.parse_flags` BEFORE it is written (an invalid result raises
:class:`FlagError` and leaves the file alone); the write is atomic (temporary file in the same
directory + ``os.replace``; a symlinked flag file has its target replaced, the link stays).
Writers in several processes are serialised by an advisory lock on a ``.<name>.lock`` file.
Each edit returns its :class:`EditResult`, whose ``changes`` hold one dict per changed feature
(who, what before and after, the new digest): the caller audits them (a proxy does, on its event
loop, :mod:`banyan.proxy.edits`). ``EDIT_LISTENERS`` hear the same dicts as they happen, in the
editing thread: a process-wide hook for the ``banyan flags`` command, which audits its own edits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.util import load_yaml_guess_indent

from banyan.proxy.audit import feature_settings
from banyan.proxy.flags import MODES, FlagError, FlagSet, emit, parse_flags, read_flag_bytes
from banyan.proxy.flags.nodes import compose
from banyan.proxy.flags.source import require_regular_file

EditListener = Callable[[dict[str, Any]], None]
EDIT_LISTENERS: list[EditListener] = []


def _log(level: str, event: str, **fields: Any) -> None:
    emit("flag_edit", level, event, **fields)


class EditResult(NamedTuple):
    """The whole file before and after an edit; ``digest`` is the new flags version hash;
    ``changes`` one dict per feature whose settings changed (as ``EDIT_LISTENERS`` hear it)."""

    before: str
    after: str
    changes: tuple[dict[str, Any], ...] = ()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.after.encode("utf-8")).hexdigest()

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _mapping_indent(text: str) -> int:
    """The smallest indentation of a nested mapping key: how the author indents."""
    widths = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        width = len(line) - len(stripped)
        if width and stripped and not stripped.startswith(("#", "-")):
            widths.append(width)
    return min(widths) if widths else 2


def float_text(value: float) -> str:
    """``value`` as a YAML float both YAML 1.1 and 1.2 read back exactly: the shortest repr,
    with a ``.`` in the mantissa (``1e-05`` -> ``1.0e-05``)."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    mantissa, e, exponent = repr(value).partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}{e}{exponent}"


_YAML11 = pyyaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


class _Representer(RoundTripRepresenter):
    """ruamel's round-trip representer, for values new to the file: floats as :func:`float_text`,
    strings quoted when YAML 1.1 would read them plain as another type. Values loaded from the
    file keep their own (ruamel scalar) types and representation."""

    def represent_float(self, data: float) -> ScalarNode:
        return self.represent_scalar("tag:yaml.org,2002:float", float_text(data))

    def represent_str(self, data: str) -> ScalarNode:
        if _YAML11.resolve(pyyaml.ScalarNode, data, (True, False)) != _STR_TAG:
            return self.represent_scalar(_STR_TAG, data, style="'")
        return super().represent_str(data)


_Representer.add_representer(float, _Representer.represent_float)
_Representer.add_representer(str, _Representer.represent_str)


def _yaml_for(text: str) -> YAML:
    """A round-trip YAML instance that writes with the same indentation as ``text``."""
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    mapping = _mapping_indent(text)
    try:
        _, sequence, offset = load_yaml_guess_indent(text)
    except Exception:  # unparsable: the load that follows reports it properly
        sequence, offset = None, None
    if offset is None or sequence is None:  # no block sequence to learn from
        sequence, offset = mapping + 2, mapping
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _target(path: Path) -> Path:
    """The file to replace: the symlink's final target, so the link itself survives."""
    return Path(os.path.realpath(path))


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    lock_path = target.with_name(f".{target.name}.lock")
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:  # non-blocking: a FIFO put in the lock's place cannot freeze the editor
        fd = os.open(lock_path, flags, 0o644)
    except OSError as exc:
        raise FlagError(str(lock_path), 0, f"cannot open the lock: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _load(where: str, data: bytes) -> tuple[str, YAML, Any]:
    """The text, a YAML instance that writes like it, and its round-trip data. The proxy's
    reader goes first: YAML errors and files over its budgets are refused with its message."""
    compose(data, where)  # raises FlagError: syntax, nesting, size
    before = data.decode("utf-8")
    yaml = _yaml_for(before)
    try:
        return before, yaml, yaml.load(before)
    except Exception as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise FlagError(where, line, f"YAML syntax error: {exc}") from None


def write_atomically(path: str | Path, text: str) -> None:
    """Replace the file (or a symlink's target) in one step; readers see old or new, never half."""
    target = _target(Path(path))
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _settings(flags: FlagSet | None, name: str) -> dict[str, Any] | None:
    feature = flags.feature(name) if flags is not None else None
    return feature_settings(feature) if feature is not None else None


def _merge(node: CommentedMap, changes: Mapping[str, Any]) -> None:
    """Apply ``changes`` to a ruamel mapping: None deletes, dicts merge into mappings; a new
    ``percent`` goes right after ``mode``, other new keys at the end."""
    for key, value in changes.items():
        if value is None:
            node.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(node.get(key), CommentedMap):
            _merge(node[key], value)
        elif key in node:
            node[key] = value
        elif key == "percent" and "mode" in node:
            node.insert(list(node.keys()).index("mode") + 1, key, value)
        else:
            node[key] = value


def _edit(
    path: str | Path,
    features: list[str] | None,
    changes: Mapping[str, Any],
    *,
    source: str,
    each: Mapping[str, Mapping[str, Any]] | None = None,
) -> EditResult:
    """Apply ``changes`` to the named features (None = every feature), or each feature's own
    changes from ``each``, validate, write, notify."""
    path = Path(path)
    where = str(path)
    target = _target(path)
    require_regular_file(target)  # before the lock is created beside it
    with _locked(target):
        before, yaml, data = _load(where, read_flag_bytes(target))
        table = data.get("features") if isinstance(data, CommentedMap) else None
        if not isinstance(table, CommentedMap):
            raise FlagError(where, 1, "the file has no features to edit")
        names = list(table.keys()) if features is None else features
        for name in names:
            entry = table.get(name)
            if not isinstance(entry, CommentedMap):
                raise FlagError(where, table.lc.line + 1, f"no feature named {name!r}")
            _merge(entry, changes if each is None else each[name])
        buffer = io.StringIO()
        yaml.dump(data, buffer)
        after = buffer.getvalue()
        new = parse_flags(after, where)  # raises: nothing is written
        result = EditResult(before, after)
        if not result.changed:
            return result
        try:
            old: FlagSet | None = parse_flags(before, where)
        except FlagError:
            old = None
        write_atomically(target, after)
    _log("info", "flags_edited", source=source, file=where, features=names, digest=result.digest)
    events: list[dict[str, Any]] = []
    for name in names:
        before_settings, after_settings = _settings(old, name), _settings(new, name)
        if before_settings == after_settings:
            continue
        event = {
            "source": source,
            "feature": name,
            "before": before_settings,
            "after": after_settings,
            "digest": result.digest,
        }
        events.append(event)
        for listener in list(EDIT_LISTENERS):
            try:
                listener(event)
            except Exception:
                _log("exception", "flag_edit_listener_failed", listener=repr(listener))
    return result._replace(changes=tuple(events))


def apply_changes(data: bytes, where: str, changes: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The flag file ``data`` with each feature's ``changes`` merged in (as :func:`set_fields`
    would), in memory: nothing is written or validated here. Features the file lacks are left
    out. Raises :class:`FlagError` when ``data`` is not a loadable flag file."""
    if not changes:
        return data
    _, yaml, loaded = _load(where, data)
    table = loaded.get("features") if isinstance(loaded, CommentedMap) else None
    if not isinstance(table, CommentedMap):
        return data
    for name, change in changes.items():
        entry = table.get(name)
        if isinstance(entry, CommentedMap):
            _merge(entry, change)
    buffer = io.StringIO()
    yaml.dump(loaded, buffer)
    return buffer.getvalue().encode("utf-8")


def set_fields(
    path: str | Path, feature: str, changes: Mapping[str, Any], *, source: str = "cli"
) -> EditResult:
    """Change keys of one feature (nested dicts merge into parity/guards; None removes a key)."""
    return _edit(path, [feature], changes, source=source)


def set_each(
    path: str | Path, changes: Mapping[str, Mapping[str, Any]], *, source: str = "cli"
) -> EditResult:
    """Change keys of several features in one write, each with its own changes (as
    :func:`set_fields`); the file is left alone when any of them is invalid."""
    return _edit(path, list(changes), {}, source=source, each=changes)


def set_mode(
    path: str | Path,
    feature: str,
    mode: str,
    percent: float | None = None,
    *,
    source: str = "cli",
    writes: str | None = None,
) -> EditResult:
    """Switch a feature's mode (and canary percent, and its ``writes`` policy when given);
    returns the file text before and after."""
    if mode not in MODES:
        raise FlagError(str(path), 0, f"mode {mode!r} is not one of {', '.join(MODES)}")
    changes: dict[str, Any] = {"mode": mode}
    if percent is not None:
        changes["percent"] = int(percent) if float(percent).is_integer() else float(percent)
    if writes is not None:
        changes["writes"] = writes  # validated with the rest of the file before it is written
    return _edit(path, [feature], changes, source=source)


def rollback(path: str | Path, feature: str | None, *, source: str = "cli") -> EditResult:
    """Send a feature (None: every feature) back to mode legacy."""
    return _edit(path, None if feature is None else [feature], {"mode": "legacy"}, source=source)

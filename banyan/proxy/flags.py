"""The flag file: typed model of ``flags.yaml`` version 1, validation and hot reload.

Owns the schema (:class:`FlagSet` and its parts), :func:`parse_flags` / :func:`load_flags`, which
validate the whole file and point at the offending line, and :class:`FlagStore`, which keeps the
last good flag set in memory and swaps it when the file changes on disk (in-place writes, atomic
renames and symlink swaps alike). Routing of requests lives in :mod:`banyan.proxy.routing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, cast
from urllib.parse import urlsplit

import yaml

from banyan.logs import get_logger
from banyan.proxy.routing import RouteError, Router, covers, parse_route
from banyan.tasks import finish_or_cancel

Mode = Literal["legacy", "shadow", "canary", "new"]
MODES: tuple[str, ...] = ("legacy", "shadow", "canary", "new")
WritesPolicy = Literal["skip", "mirror", "always"]
WebSocketPolicy = Literal["keep", "reconnect"]
BACKEND_NAMES: tuple[str, ...] = ("legacy", "new")


def emit(component: str, level: str, event: str, **fields: Any) -> None:
    """Log one structured event. The logger is bound at use time (a module-level bind would
    freeze structlog's configuration before ``configure()``), and a closed or broken log stream
    never stops flag handling."""
    with contextlib.suppress(OSError, ValueError):
        getattr(get_logger(component), level)(event, **fields)


def _log(level: str, event: str, **fields: Any) -> None:
    emit("flags", level, event, **fields)


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One upstream: ``legacy`` and ``new`` are required; URL plus timeouts in seconds."""

    name: str
    url: str  # base URL without trailing slash, e.g. "http://127.0.0.1:8001"
    connect_timeout: float = 2.0
    read_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ParityConfig:
    ignore: tuple[str, ...] = ()
    unordered: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()
    headers: tuple[str, ...] = ("content-type",)
    tolerance: float = 0.0
    sample: float = 100.0  # percent of eligible requests that are shadowed
    noise_sample: float = 10.0  # percent of shadowed safe requests also sent twice to the primary
    max_body_bytes: int = 1_048_576
    shadow_timeout: float = 5.0
    redact: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GuardConfig:
    max_mismatch_rate: float | None = None
    max_error_rate: float | None = None
    max_latency_ratio: float | None = None
    window: int = 200


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    routes: tuple[str, ...]
    mode: Mode = "legacy"
    primary: Literal["legacy", "new"] = "legacy"
    percent: float = 0.0
    stick_by: str = "user"  # user | header:NAME | cookie:NAME | ip
    cohorts: dict[str, tuple[str, ...]] = field(
        default_factory=dict
    )  # {"new": (...), "legacy": (...)}
    writes: WritesPolicy = "skip"
    websocket: WebSocketPolicy = "keep"
    fallback: bool = True
    parity: ParityConfig = field(default_factory=ParityConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    line: int = 0  # line of the feature's key in the file, for messages


@dataclass(frozen=True, slots=True)
class FlagSet:
    version: int
    backends: dict[str, BackendSpec]
    features: tuple[Feature, ...]
    default: Literal["legacy", "new"]
    digest: str  # sha256 hex of the file bytes: the "flags version hash"
    source: str  # path of the file it came from

    def feature(self, name: str) -> Feature | None:
        """The feature called ``name``, or None."""
        for feature in self.features:
            if feature.name == name:
                return feature
        return None


class FlagError(Exception):
    """An invalid flag file: where and why. ``str()`` gives ``file:line: reason``."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Parsing and validation
# ---------------------------------------------------------------------------------------------

_FEATURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_COOKIE_NAME = _HEADER_NAME
# JSONPath subset shared with banyan/parity/paths.py: $, .name, ..name, ['odd name'], [N], [*]
_JSONPATH = re.compile(
    r"\$(?:\.\.?[^.\[\]\s'\"]+|(?:\.\.)?\['(?:[^'\\]|\\.)*'\]|\[\d+\]|\[\*\])*\Z"
)
_FIELD_NAME = re.compile(r"[^\s$.\[\]]+\Z")  # redact may also name a key, redacted at any depth

_TOP_KEYS = ("version", "backends", "features", "default")
_BACKEND_KEYS = ("url", "connect_timeout", "read_timeout")
_FEATURE_KEYS = (
    "routes",
    "mode",
    "primary",
    "percent",
    "stick_by",
    "cohorts",
    "writes",
    "websocket",
    "fallback",
    "parity",
    "guards",
)
FEATURE_KEYS = _FEATURE_KEYS  # every key a feature may have, in documentation order
_PARITY_PATH_KEYS = ("ignore", "unordered", "mask", "redact")
_PARITY_KEYS = (
    *_PARITY_PATH_KEYS,
    "headers",
    "tolerance",
    "sample",
    "noise_sample",
    "max_body_bytes",
    "shadow_timeout",
)
_GUARD_KEYS = ("max_mismatch_rate", "max_error_rate", "max_latency_ratio", "window")
_FAR = float("inf")


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def is_jsonpath(text: str) -> bool:
    """True when ``text`` is in the JSONPath subset Banyan accepts ($ .a ..a ['a b'] [N] [*])."""
    return bool(_JSONPATH.match(text))


class _Reader:
    """Walks the composed YAML node tree, turning nodes into typed values or a FlagError."""

    def __init__(self, source: str, loader: yaml.SafeLoader) -> None:
        self.source = source
        self.loader = loader

    def fail(self, node: yaml.Node | int, reason: str) -> NoReturn:
        line = node if isinstance(node, int) else _line(node)
        raise FlagError(self.source, line, reason)

    def mapping(
        self, node: yaml.Node, where: str, allowed: tuple[str, ...] | None
    ) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{where}: expected a mapping, got {self.kind(node)}")
        seen: dict[str, int] = {}
        items: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.fail(key_node, f"{where}: YAML merge keys ('<<') are not supported")
            key = (
                self.loader.construct_object(key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                self.fail(key_node, f"{where}: keys must be strings")
            if key in seen:
                self.fail(key_node, f"{where}: duplicate key {key!r} (first at line {seen[key]})")
            seen[key] = _line(key_node)
            if allowed is not None and key not in allowed:
                self.fail(key_node, f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
            items.append((key, key_node, value_node))
        return items

    def kind(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        value = self.loader.construct_object(node)
        if value is None:
            return "nothing"
        return f"{type(value).__name__} {value!r}"

    def scalar(self, node: yaml.Node, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{where}: expected a single value, got {self.kind(node)}")
        return self.loader.construct_object(node)

    def string(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not value:
            self.fail(node, f"{where}: expected a non-empty string, got {self.kind(node)}")
        return value

    def choice(self, node: yaml.Node, where: str, options: tuple[str, ...]) -> str:
        value = self.scalar(node, where)
        if value not in options:
            self.fail(node, f"{where}: {value!r} is not one of {', '.join(options)}")
        return cast(str, value)

    def boolean(self, node: yaml.Node, where: str) -> bool:
        value = self.scalar(node, where)
        if not isinstance(value, bool):
            self.fail(node, f"{where}: expected true or false, got {self.kind(node)}")
        return value

    def number(
        self,
        node: yaml.Node,
        where: str,
        low: float,
        high: float,
        *,
        low_open: bool = False,
        integer: bool = False,
    ) -> float:
        value = self.scalar(node, where)
        wanted = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(value):
            noun = "an integer" if integer else "a number"
            self.fail(node, f"{where}: expected {noun}, got {self.kind(node)}")
        too_low = value <= low if low_open else value < low
        if too_low or value > high:
            left = "(" if low_open else "["
            right = "]" if high != _FAR else ")"
            shown_high = "inf" if high == _FAR else f"{high:g}"
            self.fail(node, f"{where}: {value!r} is outside {left}{low:g}, {shown_high}{right}")
        return float(value)

    def strings(self, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node]]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{where}: expected a list, got {self.kind(node)}")
        return [(self.string(item, f"{where}[{i}]"), item) for i, item in enumerate(node.value)]


def _compose(data: bytes, source: str) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FlagError(source, line, "the file is not valid UTF-8") from None
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise FlagError(source, line, f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text[: exc.position].count("\n") + 1
        raise FlagError(source, line, f"YAML error: {exc.reason}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, loader


def _backend(reader: _Reader, name: str, node: yaml.Node) -> BackendSpec:
    where = f"backends.{name}"
    values: dict[str, Any] = {}
    if isinstance(node, yaml.MappingNode):
        items = reader.mapping(node, where, _BACKEND_KEYS)
        url_node = None
        for key, _key_node, value in items:
            if key == "url":
                url_node = value
            else:
                values[key] = reader.number(value, f"{where}.{key}", 0, _FAR, low_open=True)
        if url_node is None:
            reader.fail(node, f"{where}: missing 'url'")
    else:
        url_node = node
    url = reader.string(url_node, f"{where}.url" if url_node is not node else where)
    return BackendSpec(name=name, url=_check_url(reader, url_node, where, url), **values)


def _check_url(reader: _Reader, node: yaml.Node, where: str, url: str) -> str:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        reader.fail(node, f"{where}: bad URL {url!r}: {exc}")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        reader.fail(node, f"{where}: URL {url!r} must be http:// or https:// with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        reader.fail(node, f"{where}: URL {url!r} must not carry a query, fragment or credentials")
    return url.rstrip("/")


def _stick_by(reader: _Reader, node: yaml.Node, where: str) -> str:
    value = reader.string(node, where)
    if value in {"user", "ip"}:
        return value
    kind, sep, name = value.partition(":")
    if sep and kind == "header" and _HEADER_NAME.match(name):
        return value
    if sep and kind == "cookie" and _COOKIE_NAME.match(name):
        return value
    reader.fail(node, f"{where}: {value!r} must be user, ip, header:NAME or cookie:NAME")


def _cohorts(reader: _Reader, node: yaml.Node, where: str) -> dict[str, tuple[str, ...]]:
    cohorts: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for side, _key_node, value in reader.mapping(node, where, BACKEND_NAMES):
        if isinstance(value, yaml.ScalarNode) and reader.scalar(value, where) is None:
            cohorts[side] = ()
            continue
        members: list[str] = []
        for entry, entry_node in reader.strings(value, f"{where}.{side}"):
            if entry in owner:
                other = owner[entry]
                reader.fail(entry_node, f"{where}: {entry!r} is listed in both {other} and {side}")
            owner[entry] = side
            members.append(entry)
        cohorts[side] = tuple(members)
    return cohorts


def _parity(reader: _Reader, node: yaml.Node, where: str) -> ParityConfig:
    values: dict[str, Any] = {}
    for key, _key_node, value in reader.mapping(node, where, _PARITY_KEYS):
        here = f"{where}.{key}"
        if key in _PARITY_PATH_KEYS:
            paths = []
            for path, path_node in reader.strings(value, here):
                if key == "redact" and _FIELD_NAME.match(path):
                    paths.append(path)
                    continue
                if not is_jsonpath(path):
                    reader.fail(
                        path_node,
                        f"{here}: {path!r} is not a JSONPath like $.a, $..a, $.a[0] or $.a[*]",
                    )
                paths.append(path)
            values[key] = tuple(paths)
        elif key == "headers":
            names = []
            for name, name_node in reader.strings(value, here):
                if not _HEADER_NAME.match(name):
                    reader.fail(name_node, f"{here}: {name!r} is not a header name")
                names.append(name.lower())
            values[key] = tuple(names)
        elif key == "tolerance":
            values[key] = reader.number(value, here, 0, _FAR)
        elif key in {"sample", "noise_sample"}:
            values[key] = reader.number(value, here, 0, 100)
        elif key == "max_body_bytes":
            values[key] = int(reader.number(value, here, 0, _FAR, integer=True))
        else:  # shadow_timeout
            values[key] = reader.number(value, here, 0, _FAR, low_open=True)
    return ParityConfig(**values)


def _guards(reader: _Reader, node: yaml.Node, where: str) -> GuardConfig:
    values: dict[str, Any] = {}
    for key, _key_node, value in reader.mapping(node, where, _GUARD_KEYS):
        here = f"{where}.{key}"
        if key == "window":
            values[key] = int(reader.number(value, here, 1, _FAR, integer=True))
        elif isinstance(value, yaml.ScalarNode) and reader.scalar(value, here) is None:
            values[key] = None  # explicitly off
        elif key == "max_latency_ratio":
            values[key] = reader.number(value, here, 0, _FAR, low_open=True)
        else:
            values[key] = reader.number(value, here, 0, 1)
    return GuardConfig(**values)


def _feature(
    reader: _Reader, name: str, key_node: yaml.Node, node: yaml.Node
) -> tuple[Feature, list[tuple[str, yaml.Node]]]:
    where = f"features.{name}"
    if not _FEATURE_NAME.match(name):
        reader.fail(key_node, f"{where}: feature names use letters, digits, '_', '-' and '.'")
    values: dict[str, Any] = {}
    routes: list[tuple[str, yaml.Node]] = []
    have_routes = False
    for key, _k, value in reader.mapping(node, where, _FEATURE_KEYS):
        here = f"{where}.{key}"
        if key == "routes":
            have_routes = True
            routes = reader.strings(value, here)
            if not routes:
                reader.fail(value, f"{here}: list at least one route")
            for route, route_node in routes:
                try:
                    parse_route(route)
                except RouteError as exc:
                    reader.fail(route_node, f"{here}: {exc}")
        elif key == "mode":
            values[key] = reader.choice(value, here, MODES)
        elif key == "primary":
            values[key] = reader.choice(value, here, BACKEND_NAMES)
        elif key == "percent":
            values[key] = reader.number(value, here, 0, 100)
        elif key == "stick_by":
            values[key] = _stick_by(reader, value, here)
        elif key == "cohorts":
            values[key] = _cohorts(reader, value, here)
        elif key == "writes":
            values[key] = reader.choice(value, here, ("skip", "mirror", "always"))
        elif key == "websocket":
            values[key] = reader.choice(value, here, ("keep", "reconnect"))
        elif key == "fallback":
            values[key] = reader.boolean(value, here)
        elif key == "parity":
            values[key] = _parity(reader, value, here)
        else:  # guards
            values[key] = _guards(reader, value, here)
    if not have_routes:
        reader.fail(key_node, f"{where}: missing 'routes'")
    feature = Feature(name=name, routes=tuple(r for r, _ in routes), line=_line(key_node), **values)
    return feature, routes


def _check_overlaps(reader: _Reader, routes: list[tuple[str, str, yaml.Node]]) -> None:
    """Reject a route listed twice or made dead by an earlier route (first match wins)."""
    parsed: list[tuple[str, str, tuple[str, ...], int]] = []
    for feature, route, node in routes:
        segments = parse_route(route)
        for other_feature, other_route, other_segments, other_line in parsed:
            if other_segments == segments:
                reader.fail(
                    node,
                    f"features.{feature}: route {route!r} is already listed by "
                    f"{other_feature} at line {other_line}",
                )
            if covers(other_segments, segments):
                reader.fail(
                    node,
                    f"features.{feature}: route {route!r} can never match: the earlier route "
                    f"{other_route!r} of {other_feature} (line {other_line}) matches all its paths",
                )
        parsed.append((feature, route, segments, _line(node)))


def parse_flags(text: str | bytes, source: str) -> FlagSet:
    """Validate a whole version-1 flag file; raise :class:`FlagError` at the first problem."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    digest = hashlib.sha256(data).hexdigest()
    root, loader = _compose(data, source)
    reader = _Reader(source, loader)
    if root is None:
        reader.fail(1, "the file is empty (expected version, backends, features)")
    items = {
        key: (key_node, value) for key, key_node, value in reader.mapping(root, "file", _TOP_KEYS)
    }
    if "version" not in items:
        reader.fail(1, "missing 'version: 1'")
    version_node = items["version"][1]
    version = reader.scalar(version_node, "version")
    if isinstance(version, bool) or version != 1:
        shown = reader.kind(version_node)
        reader.fail(version_node, f"version: only version 1 is supported, got {shown}")
    if "backends" not in items:
        reader.fail(1, "missing 'backends' (legacy and new)")
    backends_key, backends_node = items["backends"]
    backends: dict[str, BackendSpec] = {}
    for name, key_node, value in reader.mapping(backends_node, "backends", None):
        if name not in BACKEND_NAMES:
            reader.fail(key_node, f"backends: unknown backend {name!r} (only legacy and new)")
        backends[name] = _backend(reader, name, value)
    for required in BACKEND_NAMES:
        if required not in backends:
            reader.fail(backends_key, f"backends: missing the {required!r} backend")
    features: list[Feature] = []
    all_routes: list[tuple[str, str, yaml.Node]] = []
    if "features" in items:
        features_node = items["features"][1]
        empty = isinstance(features_node, yaml.ScalarNode) and (
            reader.scalar(features_node, "features") is None
        )
        if not empty:
            for name, key_node, value in reader.mapping(features_node, "features", None):
                feature, routes = _feature(reader, name, key_node, value)
                features.append(feature)
                all_routes += [(name, route, node) for route, node in routes]
    _check_overlaps(reader, all_routes)
    default = "legacy"
    if "default" in items:
        default = reader.choice(items["default"][1], "default", BACKEND_NAMES)
    return FlagSet(
        version=1,
        backends=backends,
        features=tuple(features),
        default=cast(Literal["legacy", "new"], default),
        digest=digest,
        source=source,
    )


def load_flags(path: str | Path) -> FlagSet:
    """Read and validate the flag file at ``path`` (symlinks followed)."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FlagError(source, 0, f"cannot read the file: {exc.strerror or exc}") from None
    return parse_flags(data, source)


# ---------------------------------------------------------------------------------------------
# Hot reload
# ---------------------------------------------------------------------------------------------

Subscriber = Callable[[FlagSet, FlagSet], None]
POLL_INTERVAL = 0.25  # seconds between cheap stat() checks; the watcher usually wins
WATCH_DEBOUNCE_MS = 50

_Signature = tuple[str, int, int, int, int] | None


def _signature(path: Path) -> _Signature:
    """What changes when the file does: resolved target, device, inode, mtime and size."""
    try:
        target = os.path.realpath(path)
        st = os.stat(target)
    except OSError:
        return None
    return (target, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class FlagStore:
    """The live flag set of one file: loads now, then follows edits on disk within a second.

    An invalid version is never applied: the last good one keeps serving, ``last_error`` says
    ``file:line: reason`` until a valid version (or the current one again) is on disk.
    """

    def __init__(
        self, path: str | Path, *, watch: bool = True, poll_interval: float = POLL_INTERVAL
    ) -> None:
        self.path = Path(path)
        self.watch = watch  # False: rely on the stat poll alone (e.g. where inotify is scarce)
        self.poll_interval = poll_interval
        self.watch_events = 0  # batches of directory events seen by the watcher
        self.current: FlagSet = load_flags(self.path)
        self.router: Router = Router(self.current)
        self.loaded_at: float = time.time()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.reloads = 0
        self.rejected = 0
        self._subscribers: list[Subscriber] = []
        self._rejected_digest: str | None = None
        self._signature: _Signature = _signature(self.path)
        self._recheck = False
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        _log(
            "info",
            "flags_applied",
            source=str(self.path),
            digest=self.current.digest,
            features=len(self.current.features),
            initial=True,
        )

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(old, new)`` after every successful apply."""
        self._subscribers.append(callback)

    def reload_now(self) -> bool:
        """Re-read the file; True when a new valid version was applied."""
        source = str(self.path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            self._reject(FlagError(source, 0, f"cannot read the file: {exc.strerror or exc}"), "")
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.current.digest:
            if self.last_error is not None:
                self._clear_error()
            return False
        if digest == self._rejected_digest:
            return False  # already reported; wait for the next edit
        try:
            new = parse_flags(data, source)
        except FlagError as exc:
            self._reject(exc, digest)
            return False
        self._apply(new)
        return True

    def _reject(self, error: FlagError, digest: str) -> None:
        self._rejected_digest = digest
        self.rejected += 1
        self.last_error = str(error)
        self.last_error_at = time.time()
        _log(
            "error",
            "flags_rejected",
            source=error.file,
            line=error.line,
            reason=error.reason,
            digest=digest or None,
            serving=self.current.digest,
        )

    def _clear_error(self) -> None:
        self.last_error = None
        self.last_error_at = None
        self._rejected_digest = None

    def _apply(self, new: FlagSet) -> None:
        old = self.current
        router = Router(new)
        self.current, self.router = new, router
        self.loaded_at = time.time()
        self.reloads += 1
        self._clear_error()
        _log(
            "info",
            "flags_applied",
            source=new.source,
            digest=new.digest,
            previous=old.digest,
            features=len(new.features),
        )
        for callback in list(self._subscribers):
            try:
                callback(old, new)
            except Exception:
                _log("exception", "flags_subscriber_failed", callback=repr(callback))

    def check(self, *, force: bool = False) -> bool:
        """Re-read when the file's stat signature changed (or ``force``); one extra re-read follows
        every change, so a write that finishes inside the same mtime tick is still seen."""
        signature = _signature(self.path)
        if force or signature != self._signature:
            self._signature = signature
            self._recheck = True
            return self.reload_now()
        if self._recheck:
            self._recheck = False
            return self.reload_now()
        return False

    async def start(self) -> None:
        """Begin following the file: a directory watcher plus a cheap stat poll as a fallback."""
        if self._tasks:
            return
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._poll(self._stop), name="flags-poll"),
        ]
        if self.watch:
            self._tasks.append(asyncio.create_task(self._watch(self._stop), name="flags-watch"))

    async def stop(self) -> None:
        """Stop following the file (idempotent)."""
        if self._stop is not None:
            self._stop.set()
        tasks, self._tasks = self._tasks, []
        await finish_or_cancel(tasks, 1.0)  # the stop event ends them

    async def _poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
            if not stop.is_set():
                self._safe_check(force=False)

    def _safe_check(self, *, force: bool) -> None:
        try:
            self.check(force=force)
        except Exception:  # the watcher must outlive any surprise; the poll retries
            _log("exception", "flags_check_failed", source=str(self.path))

    def _watch_dirs(self) -> list[str]:
        dirs = {os.path.abspath(self.path.parent)}
        dirs.add(os.path.dirname(os.path.realpath(self.path)))
        return sorted(d for d in dirs if os.path.isdir(d))

    async def _watch(self, stop: asyncio.Event) -> None:
        from watchfiles import awatch

        try:
            async for _changes in awatch(
                *self._watch_dirs(),
                watch_filter=None,
                debounce=WATCH_DEBOUNCE_MS,
                step=WATCH_DEBOUNCE_MS,
                stop_event=stop,
                recursive=False,
            ):
                self.watch_events += 1
                self._safe_check(force=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. inotify limits: the poll keeps working
            _log("warning", "flags_watch_unavailable", source=str(self.path), error=str(exc))

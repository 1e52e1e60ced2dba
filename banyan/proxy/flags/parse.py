"""Parsing and validating ``flags.yaml`` version 1: bytes in, a :class:`FlagSet` or a
:class:`FlagError` out.

Owns the schema: which keys exist at every level, their types, ranges and forms (URLs, routes,
JSONPaths, header names; the ``cors`` block is :mod:`~banyan.proxy.flags.cors`'s), and the
whole-file checks (required backends, routes that are listed twice or can never match).
:func:`parse_flags` stops at the first problem and names its file and line; :func:`load_flags`
reads the file first, within the rules of :mod:`banyan.proxy.flags.source`. Work grows linearly
with the file: the dead-route check walks a :class:`~banyan.proxy.routes.RouteTable` instead of
comparing every pair of routes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import yaml

from banyan.errors import FlagError, RouteError
from banyan.proxy.flags.cors import parse_cors
from banyan.proxy.flags.model import (
    BACKEND_NAMES,
    FEATURE_KEYS,
    HOST_POLICIES,
    MODES,
    BackendSpec,
    Feature,
    FlagSet,
    GuardConfig,
    ParityConfig,
)
from banyan.proxy.flags.nodes import FAR, NodeReader, compose, line_of
from banyan.proxy.flags.rollout import parse_rollout
from banyan.proxy.flags.source import read_flag_bytes
from banyan.proxy.routes import NO_ROUTE, RouteTable, parse_route

_FEATURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_COOKIE_NAME = _HEADER_NAME
# JSONPath subset shared with banyan/parity/paths.py: $, .name, ..name, ['odd name'], [N], [*]
_JSONPATH = re.compile(
    r"\$(?:\.\.?[^.\[\]\s'\"]+|(?:\.\.)?\['(?:[^'\\]|\\.)*'\]|\[\d+\]|\[\*\])*\Z"
)
_FIELD_NAME = re.compile(r"[^\s$.\[\]]+\Z")  # redact may also name a key, redacted at any depth

_TOP_KEYS = ("version", "backends", "features", "default", "cors")
_BACKEND_KEYS = ("url", "connect_timeout", "read_timeout", "host")
_FEATURE_KEYS = FEATURE_KEYS
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
_GUARD_KEYS = (
    "max_mismatch_rate",
    "max_error_rate",
    "max_latency_ratio",
    "max_status_shift",
    "window",
)


_DEFAULT_PARITY = ParityConfig()
_DEFAULT_GUARDS = GuardConfig()


def is_jsonpath(text: str) -> bool:
    """True when ``text`` is in the JSONPath subset Banyan accepts ($ .a ..a ['a b'] [N] [*])."""
    return bool(_JSONPATH.match(text))


def _backend(reader: NodeReader, name: str, node: yaml.Node) -> BackendSpec:
    where = f"backends.{name}"
    values: dict[str, Any] = {}
    if isinstance(node, yaml.MappingNode):
        items = reader.mapping(node, where, _BACKEND_KEYS)
        url_node = None
        for key, _key_node, value in items:
            if key == "url":
                url_node = value
            elif key == "host":
                values[key] = reader.choice(value, f"{where}.host", HOST_POLICIES)
            else:
                values[key] = reader.number(value, f"{where}.{key}", 0, FAR, low_open=True)
        if url_node is None:
            reader.fail(node, f"{where}: missing 'url'")
    else:
        url_node = node
    url = reader.string(url_node, f"{where}.url" if url_node is not node else where)
    return BackendSpec(name=name, url=_check_url(reader, url_node, where, url), **values)


def _check_url(reader: NodeReader, node: yaml.Node, where: str, url: str) -> str:
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


def _stick_by(reader: NodeReader, node: yaml.Node, where: str) -> str:
    value = reader.string(node, where)
    if value in {"user", "ip"}:
        return value
    kind, sep, name = value.partition(":")
    if sep and kind == "header" and _HEADER_NAME.match(name):
        return value
    if sep and kind == "cookie" and _COOKIE_NAME.match(name):
        return value
    reader.fail(node, f"{where}: {value!r} must be user, ip, header:NAME or cookie:NAME")


def _cohorts(reader: NodeReader, node: yaml.Node, where: str) -> dict[str, tuple[str, ...]]:
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


def _parity(reader: NodeReader, node: yaml.Node, where: str) -> ParityConfig:
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
            values[key] = reader.number(value, here, 0, FAR)
        elif key in {"sample", "noise_sample"}:
            values[key] = reader.number(value, here, 0, 100)
        elif key == "max_body_bytes":
            values[key] = int(reader.number(value, here, 0, FAR, integer=True))
        else:  # shadow_timeout
            values[key] = reader.number(value, here, 0, FAR, low_open=True)
    return ParityConfig(**values)


def _guards(reader: NodeReader, node: yaml.Node, where: str) -> GuardConfig:
    values: dict[str, Any] = {}
    for key, _key_node, value in reader.mapping(node, where, _GUARD_KEYS):
        here = f"{where}.{key}"
        if key == "window":
            values[key] = int(reader.number(value, here, 1, FAR, integer=True))
        elif isinstance(value, yaml.ScalarNode) and reader.scalar(value, here) is None:
            values[key] = None  # explicitly off
        elif key == "max_latency_ratio":
            values[key] = reader.number(value, here, 0, FAR, low_open=True)
        else:
            values[key] = reader.number(value, here, 0, 1)
    return GuardConfig(**values)


def _feature(
    reader: NodeReader, name: str, key_node: yaml.Node, node: yaml.Node
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
        elif key == "rollout":
            values[key] = parse_rollout(reader, value, here)
        else:  # guards
            values[key] = _guards(reader, value, here)
    if not have_routes:
        reader.fail(key_node, f"{where}: missing 'routes'")
    values.setdefault("parity", _DEFAULT_PARITY)  # shared: one object for every feature
    values.setdefault("guards", _DEFAULT_GUARDS)  # without its own block
    feature = Feature(
        name=name, routes=tuple(r for r, _ in routes), line=line_of(key_node), **values
    )
    return feature, routes


def _check_overlaps(reader: NodeReader, routes: list[tuple[str, str, yaml.Node]]) -> None:
    """Reject a route listed twice or made dead by an earlier route (first match wins)."""
    table = RouteTable()
    listed: list[tuple[str, str, tuple[str, ...], int]] = []
    for feature, route, node in routes:
        segments = parse_route(route)
        earlier = table.covering(segments)
        if earlier != NO_ROUTE:
            other_feature, other_route, other_segments, other_line = listed[earlier]
            if other_segments == segments:
                reader.fail(
                    node,
                    f"features.{feature}: route {route!r} is already listed by "
                    f"{other_feature} at line {other_line}",
                )
            reader.fail(
                node,
                f"features.{feature}: route {route!r} can never match: the earlier route "
                f"{other_route!r} of {other_feature} (line {other_line}) matches all its paths",
            )
        table.add(segments)
        listed.append((feature, route, segments, line_of(node)))


def _version(reader: NodeReader, items: dict[str, tuple[yaml.Node, yaml.Node]]) -> None:
    if "version" not in items:
        reader.fail(1, "missing 'version: 1'")
    version_node = items["version"][1]
    version = reader.scalar(version_node, "version")
    if isinstance(version, bool) or version != 1:
        shown = reader.kind(version_node)
        reader.fail(version_node, f"version: only version 1 is supported, got {shown}")


def _backends(
    reader: NodeReader, items: dict[str, tuple[yaml.Node, yaml.Node]]
) -> dict[str, BackendSpec]:
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
    return backends


def _features(
    reader: NodeReader, items: dict[str, tuple[yaml.Node, yaml.Node]]
) -> tuple[Feature, ...]:
    features: list[Feature] = []
    all_routes: list[tuple[str, str, yaml.Node]] = []
    if "features" in items and not reader.is_null(items["features"][1]):
        for name, key_node, value in reader.mapping(items["features"][1], "features", None):
            feature, routes = _feature(reader, name, key_node, value)
            features.append(feature)
            all_routes.extend((name, route, node) for route, node in routes)
    _check_overlaps(reader, all_routes)
    return tuple(features)


def _parse(data: bytes, source: str) -> FlagSet:
    root, loader = compose(data, source)
    reader = NodeReader(source, loader)
    if root is None:
        reader.fail(1, "the file is empty (expected version, backends, features)")
    items = {
        key: (key_node, value) for key, key_node, value in reader.mapping(root, "file", _TOP_KEYS)
    }
    _version(reader, items)
    backends = _backends(reader, items)
    features = _features(reader, items)
    default = "legacy"
    if "default" in items:
        default = reader.choice(items["default"][1], "default", BACKEND_NAMES)
    cors = parse_cors(reader, *items["cors"]) if "cors" in items else None
    return FlagSet(
        version=1,
        backends=backends,
        features=features,
        default=cast(Literal["legacy", "new"], default),
        digest=hashlib.sha256(data).hexdigest(),
        source=source,
        cors=cors,
    )


def parse_flags(text: str | bytes, source: str) -> FlagSet:
    """Validate a whole version-1 flag file; raise :class:`FlagError` at the first problem.

    Nothing else escapes: a failure this module did not foresee is a ``FlagError`` on line 0
    too, so a caller never has a file it cannot judge."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        return _parse(data, source)
    except FlagError:
        raise
    except RecursionError:
        raise FlagError(source, 0, "YAML too large: nested too deeply") from None
    except Exception as exc:  # a bug here must still reject the file, never crash the caller
        raise FlagError(
            source, 0, f"cannot validate the file: {type(exc).__name__}: {exc}"
        ) from None


def load_flags(path: str | Path, *, max_bytes: int | None = None) -> FlagSet:
    """Read (within :mod:`~banyan.proxy.flags.source`'s rules) and validate the flag file at
    ``path``; symlinks are followed."""
    return parse_flags(read_flag_bytes(path, max_bytes), str(path))

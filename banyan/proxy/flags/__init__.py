"""The flag file ``flags.yaml``: its model, its parser and validator, and its hot-reload store.

One concern per module — :mod:`~banyan.proxy.flags.model` (frozen dataclasses and
:class:`FlagError`), :mod:`~banyan.proxy.flags.source` (reading only regular files of bounded
size, never blocking), :mod:`~banyan.proxy.flags.nodes` (YAML to a node tree within depth and
size budgets, typed node reads), :mod:`~banyan.proxy.flags.parse` (the schema, ``file:line``
errors) and :mod:`~banyan.proxy.flags.store` (:class:`FlagStore`: watcher, poll, last good
version, subscribers). Every name other modules use is importable from here, including the
routing names the single module used to import (``Router``, ``RouteError``, ``parse_route``,
``covers``). Routing of requests lives in :mod:`banyan.proxy.routing`.
"""

from __future__ import annotations

from banyan.errors import FlagError, RouteError
from banyan.proxy.flags.events import emit
from banyan.proxy.flags.model import (
    BACKEND_NAMES,
    FEATURE_KEYS,
    HOST_POLICIES,
    MODES,
    BackendSpec,
    CorsConfig,
    Feature,
    FlagSet,
    GuardConfig,
    HostPolicy,
    Mode,
    ParityConfig,
    WebSocketPolicy,
    WritesPolicy,
)
from banyan.proxy.flags.nodes import MAX_DEPTH, MAX_NODES
from banyan.proxy.flags.parse import is_jsonpath, load_flags, parse_flags
from banyan.proxy.flags.source import DEFAULT_MAX_BYTES, MAX_BYTES_ENV, read_flag_bytes
from banyan.proxy.flags.store import POLL_INTERVAL, WATCH_DEBOUNCE_MS, FlagStore, Subscriber
from banyan.proxy.routes import covers, parse_route
from banyan.proxy.routing import Router

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_MAX_BYTES",
    "FEATURE_KEYS",
    "HOST_POLICIES",
    "MAX_BYTES_ENV",
    "MAX_DEPTH",
    "MAX_NODES",
    "MODES",
    "POLL_INTERVAL",
    "WATCH_DEBOUNCE_MS",
    "BackendSpec",
    "CorsConfig",
    "Feature",
    "FlagError",
    "FlagSet",
    "FlagStore",
    "GuardConfig",
    "HostPolicy",
    "Mode",
    "ParityConfig",
    "RouteError",
    "Router",
    "Subscriber",
    "WebSocketPolicy",
    "WritesPolicy",
    "covers",
    "emit",
    "is_jsonpath",
    "load_flags",
    "parse_flags",
    "parse_route",
    "read_flag_bytes",
]

"""The typed model of ``flags.yaml`` version 1: frozen values, nothing that reads files.

Owns :class:`FlagSet` and its parts (:class:`BackendSpec`, :class:`Feature`, :class:`ParityConfig`,
:class:`GuardConfig`, :class:`CorsConfig`), the names the schema allows (modes, backends, every
feature key); a rejected file becomes :class:`banyan.errors.FlagError`. The parser
(:mod:`banyan.proxy.flags.parse`) builds these; the store (:mod:`banyan.proxy.flags.store`) serves
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from banyan.proxy.flags.rollout import Rollout

Mode = Literal["legacy", "shadow", "canary", "new"]
MODES: tuple[str, ...] = ("legacy", "shadow", "canary", "new")
WritesPolicy = Literal["skip", "mirror", "always"]
WebSocketPolicy = Literal["keep", "reconnect"]
HostPolicy = Literal["preserve", "backend"]
BACKEND_NAMES: tuple[str, ...] = ("legacy", "new")
HOST_POLICIES: tuple[str, ...] = ("preserve", "backend")
FEATURE_KEYS: tuple[str, ...] = (  # every key a feature may have, in documentation order
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
    "rollout",
)


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One upstream: ``legacy`` and ``new`` are required; URL plus timeouts in seconds.

    ``host`` says which ``Host`` header the upstream gets: ``preserve`` (the caller's) or
    ``backend`` (the host and port of ``url``)."""

    name: str
    url: str  # base URL without trailing slash, e.g. "http://127.0.0.1:8001"
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    host: HostPolicy = "preserve"


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
    max_status_shift: float | None = None  # after window: positional GuardConfig(...) stays


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """The top-level ``cors`` block (schema only: the proxy's forwarding decides what it does).

    ``allow_origins`` is ``("*",)`` or origins as ``scheme://host[:port]`` in lower case;
    ``allow_headers`` are lower-case header names (or ``("*",)``); ``max_age`` is in seconds."""

    allow_origins: tuple[str, ...]
    allow_credentials: bool = False
    allow_headers: tuple[str, ...] = ()
    max_age: int = 600


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
    rollout: Rollout | None = None  # steps and gates (banyan.proxy.flags.rollout)
    line: int = 0  # line of the feature's key in the file, for messages


@dataclass(frozen=True, slots=True)
class FlagSet:
    version: int
    backends: dict[str, BackendSpec]
    features: tuple[Feature, ...]
    default: Literal["legacy", "new"]
    digest: str  # sha256 hex of the file bytes: the "flags version hash"
    source: str  # path of the file it came from
    cors: CorsConfig | None = None  # absent: no CORS
    _by_name: dict[str, Feature] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Feature] = {}
        for feature in self.features:
            by_name.setdefault(feature.name, feature)
        object.__setattr__(self, "_by_name", by_name)

    def feature(self, name: str) -> Feature | None:
        """The feature called ``name``, or None (one dictionary look-up, whatever the count)."""
        return self._by_name.get(name)

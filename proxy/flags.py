"""The flag file: typed model of ``flags.yaml`` version 1, validation and hot reload.

INTERFACE SKETCH (written by the lead; the flags owner completes parsing, validation and reload).
Other proxy modules rely only on the names below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["legacy", "shadow", "canary", "new"]
MODES: tuple[str, ...] = ("legacy", "shadow", "canary", "new")
WritesPolicy = Literal["skip", "mirror"]
WebSocketPolicy = Literal["keep", "reconnect"]


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
    cohorts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # {"new": (...), "legacy": (...)}
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


class FlagError(Exception):
    """An invalid flag file: where and why. ``str()`` gives ``file:line: reason``."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason

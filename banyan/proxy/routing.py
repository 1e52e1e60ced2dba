"""Request routing: which feature a path belongs to, and which backend serves it, and why.

Owns the :class:`Router` built once per flag load (its routes in a
:class:`~banyan.proxy.routes.RouteTable`, whose module owns the pattern grammar), the sticky canary
bucket, the operator-only paths of the backends that the default route never serves, and the
unverified reading of a JWT ``sub`` used as the stickiness key. Nothing here verifies tokens:
backends do that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from banyan.proxy.routes import NO_ROUTE, RouteTable, parse_route
from banyan.proxy.routes import RouteError as RouteError  # re-exported for older imports
from banyan.proxy.routes import covers as covers

if TYPE_CHECKING:
    from banyan.proxy.flags import Feature, FlagSet

BUCKETS = 10_000  # canary resolution: 0.01 %
UNMATCHED = "-"
_EMPTY: Mapping[str, str] = {}

# First path segments the backends serve for operators only (Prometheus ``/metrics`` and anything
# below it). The default route never sends them on; a feature routes them only with a route whose
# first segment names them literally (``/metrics``, ``/metrics/**``), not through a wildcard.
# ``/healthz`` and ``/readyz`` never reach a backend: the proxy answers them itself.
OPERATOR_SEGMENTS: frozenset[str] = frozenset({"metrics"})
_OPERATOR_PREFIXES = tuple(f"/{segment}" for segment in sorted(OPERATOR_SEGMENTS))
_OPERATOR_ONLY = -2  # a route number meaning "operator-only, not routed"


def bucket_of(feature: str, key: str) -> int:
    """The sticky canary bucket (0..9999) of a stickiness key within a feature."""
    digest = hashlib.sha256(f"{feature}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one request goes. ``shadow`` names the candidate backend in shadow mode."""

    feature: str
    backend: str
    mode: str
    reason: str
    shadow: str | None = None


BLOCKED = "blocked"
NOT_ROUTED = Decision(
    UNMATCHED,
    UNMATCHED,
    BLOCKED,
    "operator-only path of the backends: not routed unless a feature lists it by name",
)


_NOBODY: frozenset[str] = frozenset()


def _members(entries: tuple[str, ...] | None) -> frozenset[str]:
    """A cohort as a set; the one shared empty set when there is none (a file of thousands of
    features then holds no thousands of empty sets for the collector to walk)."""
    return frozenset(entries) if entries else _NOBODY


def _other(backend: str) -> str:
    return "new" if backend == "legacy" else "legacy"


def _lookup(values: Mapping[str, str], name: str) -> str | None:
    """Header/cookie value by name: exact, then case-insensitive (plain dicts are not CI)."""
    value = values.get(name)
    if value is None:
        lowered = name.lower()
        value = values.get(lowered)
        if value is None:
            for key, candidate in values.items():
                if key.lower() == lowered:
                    return candidate
    return value


class _Plan:
    """Everything ``decide`` needs for one feature, computed once per flag load."""

    __slots__ = (
        "cohort_legacy",
        "cohort_new",
        "feature",
        "fixed",
        "name",
        "percent_label",
        "stick_kind",
        "stick_name",
        "threshold",
    )

    def __init__(self, feature: Feature) -> None:
        self.feature = feature
        self.name = feature.name
        self.fixed: Decision | None = None
        if feature.mode in {"legacy", "new"}:
            self.fixed = Decision(
                feature.name, feature.mode, feature.mode, f"mode {feature.mode}", None
            )
        elif feature.mode == "shadow":
            primary = feature.primary
            self.fixed = Decision(
                feature.name,
                primary,
                "shadow",
                f"shadow: {primary} answers, {_other(primary)} is compared",
                _other(primary),
            )
        self.threshold = round(feature.percent * 100)
        self.percent_label = f"{feature.percent:g}%"
        kind, _, name = feature.stick_by.partition(":")
        self.stick_kind = kind
        self.stick_name = name
        self.cohort_new = _members(feature.cohorts.get("new"))
        self.cohort_legacy = _members(feature.cohorts.get("legacy"))

    def key(
        self,
        user: str | None,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        client_ip: str,
    ) -> str | None:
        kind = self.stick_kind
        if kind == "user":
            return user or None
        if kind == "header":
            return _lookup(headers, self.stick_name) or None
        if kind == "cookie":
            return cookies.get(self.stick_name) or None
        return client_ip or None

    def cohort(self, user: str | None, key: str | None, client_ip: str) -> Decision | None:
        if not (self.cohort_new or self.cohort_legacy):
            return None
        ids = []
        if user:
            ids.append(f"user:{user}")
        if client_ip:
            ids.append(f"ip:{client_ip}")
        if key:
            ids.append(key)
            if self.stick_kind in {"header", "cookie"}:
                ids.append(f"{self.stick_kind}:{key}")
        # A pin to legacy wins over a pin to new: keeping someone out is the conservative choice.
        for side, members in (("legacy", self.cohort_legacy), ("new", self.cohort_new)):
            for ident in ids:
                if ident in members:
                    return Decision(
                        self.name, side, "canary", f"canary: {ident} is in cohort {side}", None
                    )
        return None

    def decide(
        self,
        user: str | None,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        client_ip: str,
    ) -> Decision:
        if self.fixed is not None:
            return self.fixed
        key = self.key(user, headers, cookies, client_ip)
        pinned = self.cohort(user, key, client_ip)
        if pinned is not None:
            return pinned
        if key is None:
            return Decision(self.name, "legacy", "canary", "canary: no stickiness key", None)
        bucket = bucket_of(self.name, key)
        if bucket < self.threshold:
            reason = f"canary {self.percent_label}: bucket {bucket:04d} < {self.threshold} -> new"
            return Decision(self.name, "new", "canary", reason, None)
        reason = f"canary {self.percent_label}: bucket {bucket:04d} >= {self.threshold} -> legacy"
        return Decision(self.name, "legacy", "canary", reason, None)


class Router:
    """Path -> feature -> backend for one :class:`FlagSet`; build once per flag load."""

    def __init__(self, flags: FlagSet) -> None:
        self.flags = flags
        self._table = RouteTable()
        self._plans: list[_Plan] = []  # by route number
        self._heads: list[str] = []  # each route's first segment, by route number
        for feature in flags.features:
            plan = _Plan(feature)
            for route in feature.routes:
                segments = parse_route(route)
                self._table.add(segments)
                self._plans.append(plan)
                self._heads.append(segments[0] if segments else "")
        self._default = Decision(
            UNMATCHED, flags.default, flags.default, f"no feature matches; default {flags.default}"
        )

    def _route(self, path: str) -> int:
        cut = path.find("?")
        if cut >= 0:
            path = path[:cut]
        index = self._table.match(path)
        if path.startswith(_OPERATOR_PREFIXES):
            head = path[1:].split("/", 1)[0]
            if head in OPERATOR_SEGMENTS and (index == NO_ROUTE or self._heads[index] != head):
                return _OPERATOR_ONLY
        return index

    def match(self, path: str) -> Feature | None:
        """The first feature (file order) with a route matching ``path``; the query is ignored."""
        index = self._route(path)
        return self._plans[index].feature if index >= 0 else None

    def decide(
        self,
        path: str,
        *,
        user: str | None = None,
        headers: Mapping[str, str] = _EMPTY,
        cookies: Mapping[str, str] = _EMPTY,
        client_ip: str = "",
        request_id: str = "",
    ) -> Decision:
        """Which backend serves ``path`` for this caller, with a one-line reason; :data:`NOT_ROUTED`
        for a backend's operator-only path that no feature lists by name."""
        index = self._route(path)
        if index == NO_ROUTE:
            return self._default
        if index == _OPERATOR_ONLY:
            return NOT_ROUTED
        return self._plans[index].decide(user, headers, cookies, client_ip)


# A token's claims are a few hundred bytes; anything far larger is not read for routing.
MAX_CLAIMS_CHARS = 8192


@lru_cache(maxsize=4096)
def _subject(token: str) -> str | None:
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    payload = parts[1]
    if len(payload) > MAX_CLAIMS_CHARS:
        return None
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(claims, dict):
        return None
    sub = claims.get("sub")
    if isinstance(sub, bool) or not isinstance(sub, str | int):
        return None
    text = str(sub)
    return text or None


def user_from_authorization(header_value: str | None, query_token: str | None) -> str | None:
    """JWT ``sub`` from ``Authorization: Bearer`` (else ``?token=``), NOT verified; never raises."""
    token: str | None = None
    if header_value:
        scheme, _, rest = header_value.strip().partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            token = rest.strip()
    if token is None and query_token:
        token = query_token.strip()
    if not token or len(token) > 8192:
        return None
    return _subject(token)

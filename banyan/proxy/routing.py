"""Request routing: which feature a path belongs to, and which backend serves it, and why.

Owns the route pattern grammar (``/api/x``, ``*`` for exactly one segment, ``**`` as the last
segment for any rest including nothing), the check that one pattern makes a later one dead, the
:class:`Router` compiled once per flag load, the sticky canary bucket, and the unverified reading
of a JWT ``sub`` used as the stickiness key. Nothing here verifies tokens: backends do that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from banyan.proxy.flags import Feature, FlagSet

BUCKETS = 10_000  # canary resolution: 0.01 %
UNMATCHED = "-"
_EMPTY: Mapping[str, str] = {}


class RouteError(ValueError):
    """A route pattern that breaks the grammar; the message says which rule."""


def parse_route(pattern: str) -> tuple[str, ...]:
    """Split a route pattern into segments, enforcing the grammar (raises :class:`RouteError`)."""
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise RouteError(f"route {pattern!r} must start with '/'")
    if any(ch.isspace() for ch in pattern) or "?" in pattern or "#" in pattern:
        raise RouteError(f"route {pattern!r} must not contain spaces, '?' or '#'")
    if pattern == "/":
        return ()
    segments = tuple(pattern[1:].split("/"))
    for index, segment in enumerate(segments):
        if segment == "":
            raise RouteError(f"route {pattern!r} has an empty segment")
        if segment == "**" and index != len(segments) - 1:
            raise RouteError(f"route {pattern!r}: '**' is only allowed as the last segment")
        if "*" in segment and segment not in {"*", "**"}:
            raise RouteError(f"route {pattern!r}: a wildcard must be a whole segment ('*' or '**')")
    return segments


def covers(earlier: tuple[str, ...], later: tuple[str, ...]) -> bool:
    """True when every path matched by ``later`` is already matched by ``earlier``."""
    for index, seg in enumerate(earlier):
        if seg == "**":
            return True
        if index >= len(later):
            return False
        other = later[index]
        if other == "**":
            return False
        if seg == "*":
            continue
        if seg != other:
            return False
    return len(earlier) == len(later)


def route_regex(segments: tuple[str, ...]) -> str:
    """The regular expression (for ``fullmatch``) of one parsed route; a trailing '/' is allowed."""
    if not segments:
        return "/"
    parts: list[str] = []
    for seg in segments:
        if seg == "**":
            parts.append("(?:/.*)?")
        elif seg == "*":
            parts.append("/[^/]+")
        else:
            parts.append("/" + re.escape(seg))
    if segments[-1] != "**":
        parts.append("/?")
    return "".join(parts)


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
        self.cohort_new = frozenset(feature.cohorts.get("new", ()))
        self.cohort_legacy = frozenset(feature.cohorts.get("legacy", ()))

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
        self._plans: list[_Plan] = []
        alternatives: list[str] = []
        for feature in flags.features:
            plan = _Plan(feature)
            for route in feature.routes:
                alternatives.append(f"(?P<r{len(self._plans)}>{route_regex(parse_route(route))})")
                self._plans.append(plan)
        self._regex = re.compile("|".join(alternatives)) if alternatives else None
        self._default = Decision(
            UNMATCHED, flags.default, flags.default, f"no feature matches; default {flags.default}"
        )

    def _plan(self, path: str) -> _Plan | None:
        if self._regex is None:
            return None
        cut = path.find("?")
        if cut >= 0:
            path = path[:cut]
        match = self._regex.fullmatch(path)
        if match is None:
            return None
        group = match.lastgroup
        assert group is not None
        return self._plans[int(group[1:])]

    def match(self, path: str) -> Feature | None:
        """The first feature (file order) with a route matching ``path``; the query is ignored."""
        plan = self._plan(path)
        return plan.feature if plan is not None else None

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
        """Which backend serves ``path`` for this caller, with a one-line reason."""
        plan = self._plan(path)
        if plan is None:
            return self._default
        return plan.decide(user, headers, cookies, client_ip)


@lru_cache(maxsize=4096)
def _subject(token: str) -> str | None:
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
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

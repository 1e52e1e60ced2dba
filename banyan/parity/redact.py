"""Redaction before anything is stored: no credential or secret reaches the parity store.

One set of rules for every place a value can hide. A *secret name* is a key whose lower-cased
name contains ``password``, ``passwd``, ``secret``, ``token``, ``api_key``, ``api-key``,
``apikey``, ``authorization``, ``cookie`` or ``jwt``, or one of the feature's ``parity.redact``
names; ``parity.redact`` JSONPath patterns name places in JSON bodies.

- Headers: ``authorization``, ``proxy-authorization``, ``cookie``, ``set-cookie``, ``x-api-key``
  and any header with a secret name; other values as text.
- JSON: the value of any key with a secret name, at any depth, and the configured paths.
- Text (and every string inside JSON): bearer credentials, JWT-shaped strings, well-known API key
  shapes (``sk-…``, ``AKIA…``, ``ghp_…``, ``xox…-``) and ``name=value`` / ``name: value`` pairs with
  a secret name.
- URLs: the values of query parameters with a secret name; the rest as text.
- Differences (:func:`redact_difference`): by where they are — a header's by its name, a JSON
  path's by its keys and the configured paths, values as JSON or text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from banyan.parity import paths

REDACTED = "[REDACTED]"
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "authorization",
    "cookie",
    "jwt",
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_KEY_SHAPES = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
)
_PAIR = re.compile(
    r"(?i)\b([\w-]*(?:password|passwd|secret|token|api[_-]?key|authorization|jwt)[\w-]*)"
    r"([\"']?\s*[=:]\s*[\"']?)([^\s&;,\"']+)"
)


def redact_headers(headers: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    names = _names(extra)
    return {
        k: (REDACTED if k.lower() in SECRET_HEADERS or _secret_key(k, names) else redact_text(v))
        for k, v in headers.items()
    }


def redact_text(text: str) -> str:
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _PAIR.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _KEY_SHAPES.sub(REDACTED, _JWT.sub(REDACTED, text))


def redact_url(path_qs: str, extra: Iterable[str] = ()) -> str:
    """A path with its query: values of secret-named parameters (``?token=``, ``?password=``)
    and anything secret-shaped replaced."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return redact_text(path_qs)
    names = _names(extra)
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        secret = eq and _secret_key(unquote_plus(name), names)
        parts.append(f"{name}={REDACTED}" if secret else redact_text(item))
    return f"{redact_text(path)}?{'&'.join(parts)}"


def _names(extra: Iterable[str]) -> frozenset[str]:
    return frozenset(e.lower() for e in extra if not e.startswith("$"))


def redact_difference(difference: Mapping[str, Any], extra: Iterable[str] = ()) -> dict[str, Any]:
    """A difference (``path``, ``kind``, ``primary``, ``candidate``) as it may be stored: its
    values redacted by the rules of the place it is at."""
    extra = tuple(extra)
    path = str(difference.get("path", ""))
    out = dict(difference)
    secret = False
    if path.startswith("header:"):
        name = path.removeprefix("header:").split("[", 1)[0]
        secret = name in SECRET_HEADERS or _secret_key(name, _names(extra))
    elif path.startswith("$"):
        try:
            location = tuple(v for _, v in paths.parse(path) if v is not None)
        except paths.PathError:
            location = ()
        names = _names(extra)
        patterns = tuple(e for e in extra if e.startswith("$"))
        secret = any(isinstance(k, str) and _secret_key(k, names) for k in location) or any(
            paths.covers(p, location) for p in patterns
        )
    for side in ("primary", "candidate"):
        value = out.get(side)
        if value is None:
            continue
        out[side] = REDACTED if secret else redact_json(value, extra)
    return out


def _secret_key(key: str, extra_names: frozenset[str]) -> bool:
    lowered = key.lower()
    return lowered in extra_names or any(part in lowered for part in SECRET_KEY_PARTS)


def redact_json(value: Any, extra: Iterable[str] = ()) -> Any:
    extra = tuple(extra)
    names = frozenset(e.lower() for e in extra if not e.startswith("$"))
    patterns = tuple(e for e in extra if e.startswith("$"))

    def walk(item: Any, location: paths.Location) -> Any:
        if patterns and any(paths.matches(p, location) for p in patterns):
            return REDACTED
        if isinstance(item, dict):
            return {
                k: REDACTED if _secret_key(str(k), names) else walk(v, (*location, str(k)))
                for k, v in item.items()
            }
        if isinstance(item, list):
            return [walk(v, (*location, i)) for i, v in enumerate(item)]
        if isinstance(item, str):
            return redact_text(item)
        return item

    return walk(value, ())


def redact_body(body: bytes, extra: Iterable[str] = (), limit: int = 8192) -> str:
    """A stored snippet of a body: JSON redacted structurally, text by pattern, cut at ``limit``."""
    try:
        text = json.dumps(redact_json(json.loads(body), extra), sort_keys=True)
    except (ValueError, UnicodeDecodeError):
        text = redact_text(body.decode("utf-8", errors="replace"))
    return text if len(text) <= limit else text[:limit] + "…"

"""Redaction before anything is stored: no credential or secret reaches the parity store.

Headers: ``authorization``, ``proxy-authorization``, ``cookie``, ``set-cookie``, ``x-api-key``.
JSON: any key whose lower-cased name contains ``password``, ``secret``, ``token``, ``api_key``,
``apikey``, ``authorization`` or ``jwt``, plus configured key names or JSONPath patterns, at any
depth. Text: bearer credentials and anything shaped like a JWT. URLs (for logs): the values of
secret-named query parameters such as the WebSocket ``?token=``.
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
SECRET_KEY_PARTS = ("password", "secret", "token", "api_key", "apikey", "authorization", "jwt")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k: (REDACTED if k.lower() in SECRET_HEADERS else redact_text(v)) for k, v in headers.items()
    }


def redact_text(text: str) -> str:
    return _JWT.sub(REDACTED, _BEARER.sub(lambda m: m.group(1) + REDACTED, text))


def redact_url(path_qs: str) -> str:
    """A path with its query: values of secret-named parameters (``?token=``) and anything shaped
    like a JWT replaced, for logs."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path_qs
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        secret = eq and _secret_key(unquote_plus(name), frozenset())
        parts.append(f"{name}={REDACTED}" if secret else redact_text(item))
    return f"{path}?{'&'.join(parts)}"


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

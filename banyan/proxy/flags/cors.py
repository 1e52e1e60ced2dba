"""The optional top-level ``cors`` block of the flag file: schema and validation only.

Owns what a valid ``cors`` block is — ``allow_origins`` (``'*'`` alone, or distinct origins
``scheme://host[:port]`` with no path), ``allow_credentials`` (never with a ``'*'``: browsers
refuse that pair), ``allow_headers`` (header names, or ``'*'`` alone) and ``max_age`` (seconds,
0..86400) — and turns it into a :class:`~banyan.proxy.flags.model.CorsConfig`. What the proxy does
with it belongs to forwarding, not here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import yaml

from banyan.proxy.flags.model import CorsConfig
from banyan.proxy.flags.nodes import NodeReader

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
CORS_KEYS = ("allow_origins", "allow_credentials", "allow_headers", "max_age")
MAX_AGE_LIMIT = 86_400  # seconds; browsers cap it lower anyway

Check = Callable[[NodeReader, yaml.Node, str, str], str]


def _origin(reader: NodeReader, node: yaml.Node, where: str, origin: str) -> str:
    """``scheme://host[:port]`` in lower case, nothing else (no path, not even a trailing '/')."""
    try:
        parts = urlsplit(origin)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        reader.fail(node, f"{where}: bad origin {origin!r}: {exc}")
    if (
        not _SCHEME.match(parts.scheme.lower())
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or origin.endswith(("?", "#"))
    ):
        reader.fail(
            node, f"{where}: {origin!r} is not an origin: use '*' or scheme://host[:port], no path"
        )
    return origin.lower()


def _cors_list(
    reader: NodeReader, node: yaml.Node, where: str, check: Check
) -> tuple[tuple[str, ...], yaml.Node | None]:
    """A list of distinct entries, each checked by ``check``; ``'*'`` only on its own. Returns
    the entries and the node of a ``'*'`` (None without one)."""
    entries: list[str] = []
    star: yaml.Node | None = None
    for index, (entry, entry_node) in enumerate(reader.strings(node, where)):
        here = f"{where}[{index}]"
        value = "*" if entry == "*" else check(reader, entry_node, here, entry)
        if value == "*":
            star = entry_node
        if value in entries:
            reader.fail(entry_node, f"{here}: {entry!r} is listed twice")
        entries.append(value)
    if star is not None and len(entries) > 1:
        reader.fail(star, f"{where}: '*' must be the only entry")
    return tuple(entries), star


def _header(reader: NodeReader, node: yaml.Node, where: str, name: str) -> str:
    if not _HEADER_NAME.match(name):
        reader.fail(node, f"{where}: {name!r} is not a header name")
    return name.lower()


def parse_cors(reader: NodeReader, key_node: yaml.Node, node: yaml.Node) -> CorsConfig | None:
    """The ``cors`` block (``key_node`` is its key, for a missing ``allow_origins``); None when
    it is empty (``cors:`` or ``cors: null``), as when it is absent."""
    if reader.is_null(node):
        return None
    values: dict[str, Any] = {}
    stars: list[yaml.Node] = []
    for key, _k, value in reader.mapping(node, "cors", CORS_KEYS):
        here = f"cors.{key}"
        if key == "allow_origins":
            values[key], star = _cors_list(reader, value, here, _origin)
            if not values[key]:
                reader.fail(value, f"{here}: list at least one origin (or '*')")
        elif key == "allow_headers":
            values[key], star = _cors_list(reader, value, here, _header)
        elif key == "allow_credentials":
            values[key], star = reader.boolean(value, here), None
        else:  # max_age
            values[key] = int(reader.number(value, here, 0, MAX_AGE_LIMIT, integer=True))
            star = None
        if star is not None:
            stars.append(star)
    if "allow_origins" not in values:
        reader.fail(key_node, "cors: missing 'allow_origins'")
    if values.get("allow_credentials") and stars:
        reader.fail(
            stars[0], "cors: '*' cannot be used with allow_credentials: true (browsers refuse it)"
        )
    return CorsConfig(**values)

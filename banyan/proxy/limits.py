"""Size limits of what the proxy accepts and relays: request heads from clients, answer heads
from upstreams.

Defaults are no smaller than Envoy's (60 KiB of request headers in all, 100 headers): a single
cookie or JWT header of 8 KB and more is normal traffic, not an attack. Each limit is set by a
``banyan proxy`` option or its environment variable (docs/operations.md):

- ``--max-header-bytes`` / ``BANYAN_MAX_HEADER_BYTES``: all header lines of one head together;
- ``--max-field-bytes`` / ``BANYAN_MAX_FIELD_BYTES``: one header line (name and value);
- ``--max-headers`` / ``BANYAN_MAX_HEADERS``: header lines in one head;
- ``--max-target-bytes`` / ``BANYAN_MAX_TARGET_BYTES``: the request target (path and query, or the
  absolute URL).

Over a limit a client gets 431 (headers) or 414 (target); an upstream answer over a limit becomes
a 502. Each carries a JSON error body naming the limit and the option that sets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from banyan.env import whole

KIB = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 60 * KIB
    max_field_bytes: int = 60 * KIB
    max_headers: int = 128
    max_target_bytes: int = 60 * KIB

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Limits:
        """Defaults, overridden by the ``BANYAN_MAX_*`` variables set in ``environ`` (raises
        :class:`~banyan.errors.SettingsError` naming a bad one)."""
        base = cls()
        return cls(
            max_header_bytes=whole(
                environ, "BANYAN_MAX_HEADER_BYTES", base.max_header_bytes, unit="bytes"
            ),
            max_field_bytes=whole(
                environ, "BANYAN_MAX_FIELD_BYTES", base.max_field_bytes, unit="bytes"
            ),
            max_headers=whole(environ, "BANYAN_MAX_HEADERS", base.max_headers),
            max_target_bytes=whole(
                environ, "BANYAN_MAX_TARGET_BYTES", base.max_target_bytes, unit="bytes"
            ),
        )


# What each limit is called where an operator sets it (named in every refusal).
OPTION = {
    "max_header_bytes": "--max-header-bytes",
    "max_field_bytes": "--max-field-bytes",
    "max_headers": "--max-headers",
    "max_target_bytes": "--max-target-bytes",
}


def describe(limit: str, value: int) -> str:
    """``max_header_bytes=61440 (--max-header-bytes)``: a limit as an error message names it."""
    return f"{limit}={value} ({OPTION[limit]})"

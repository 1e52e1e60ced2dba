"""Where a backend URL points: the address to connect to, its ``Host`` authority and the path
prefix every request target gains there."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str  # to connect to (an IPv6 address without brackets)
    port: int
    authority: bytes  # as the URL writes it: the Host value of ``host: backend``
    prefix: bytes  # path prefix without a trailing slash, b"" for none

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def target(self, target: bytes) -> bytes:
        """The request target as sent upstream: the client's, with the backend's path prefix put
        in front of its path (origin form ``/a?b``, absolute form ``http://h/a?b`` alike)."""
        if not self.prefix or target == b"*":
            return target
        if target.startswith(b"/"):
            return self.prefix + target
        scheme_end = target.find(b"://")
        if scheme_end < 0:
            return target
        path_at = target.find(b"/", scheme_end + 3)
        if path_at < 0:
            query_at = target.find(b"?", scheme_end + 3)
            cut = len(target) if query_at < 0 else query_at
            return target[:cut] + self.prefix + b"/" + target[cut:]
        return target[:path_at] + self.prefix + target[path_at:]


@functools.lru_cache(maxsize=64)
def origin_of(url: str) -> Origin:
    """The origin of a backend URL as the flag file gives it (``http://127.0.0.1:8001/base``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Origin(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        authority=parts.netloc.rpartition("@")[2].encode("ascii"),
        prefix=parts.path.rstrip("/").encode("ascii"),
    )


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The default verifying context for ``https://`` backends (made once)."""
    return ssl.create_default_context()

"""The proxy's own HTTP/1.1 client for upstreams.

aiohttp's client invents headers (``Accept``, ``Accept-Encoding``, ``User-Agent``,
``Content-Length: 0``), cannot send an absolute-form target and costs a lot of CPU per request;
a proxy must send exactly what it was given. This package does only that: requests are heads the
caller serialized (:class:`banyan.proxy.headers.Outbound`) and bodies streamed in the client's
framing, over keep-alive connections pooled per backend origin (:mod:`.pool`); answers are parsed
by httptools' C parser into raw header lines and a streamed body (:mod:`.connection`).

Both the users' requests and the shadow copies (:mod:`banyan.proxy.shadow.send`) go through it,
so a copy is the same request as the primary's.
"""

from banyan.errors import RequestFault, UpstreamError
from banyan.proxy.upstream.capture import Capture
from banyan.proxy.upstream.connection import Connection
from banyan.proxy.upstream.origin import Origin, origin_of
from banyan.proxy.upstream.pool import Body, Pool, PoolSettings, finish, send
from banyan.proxy.upstream.registry import Upstreams

__all__ = [
    "Body",
    "Capture",
    "Connection",
    "Origin",
    "Pool",
    "PoolSettings",
    "RequestFault",
    "UpstreamError",
    "Upstreams",
    "finish",
    "origin_of",
    "send",
]

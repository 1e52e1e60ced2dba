"""Tests for banyan/proxy/headers.py rules that the end-to-end tests do not reach."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from banyan.proxy.headers import downstream_headers, outbound_of, request_id_of, upstream_headers
from banyan.proxy.limits import Limits
from banyan.proxy.upstream.origin import origin_of


def test_request_id_is_kept_only_when_sane() -> None:
    assert request_id_of(make_mocked_request("GET", "/", headers={"X-Request-Id": "r-1"})) == "r-1"
    for bad in ("x" * 300, "bad\nid"):
        generated = request_id_of(make_mocked_request("GET", "/", headers={"X-Request-Id": bad}))
        assert generated != bad and len(generated) == 32


def test_websocket_handshake_headers_are_left_to_the_client_library() -> None:
    request = make_mocked_request(
        "GET",
        "/ws",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "k",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": "a",
            "Cookie": "sid=1",
        },
    )
    out = upstream_headers(request, "rid", websocket=True)
    assert "Sec-WebSocket-Key" not in out and "Upgrade" not in out and "Connection" not in out
    assert out["Cookie"] == "sid=1" and out["X-Request-Id"] == "rid"


def test_downstream_drops_connection_listed_headers() -> None:
    upstream = CIMultiDictProxy(
        CIMultiDict(
            {"Connection": "close, X-A", "X-A": "1", "X-B": "2", "Transfer-Encoding": "chunked"}
        )
    )
    assert dict(downstream_headers(upstream)) == {"X-B": "2"}


def test_a_client_stamp_is_never_forwarded() -> None:
    """Only the proxy stamps writes (banyan/stamps.py): a client's X-Banyan-Stamp is dropped."""
    headers = {"X-Banyan-Stamp": "v1.1.primary..x", "x-banyan-stamp": "again", "Cookie": "a=1"}
    request = make_mocked_request("POST", "/api/x", headers=CIMultiDict(headers))
    outbound = outbound_of(request, "rid", Limits())
    assert "X-Banyan-Stamp" not in outbound.mapping() and outbound.mapping()["Cookie"] == "a=1"
    assert b"stamp" not in outbound.head(origin_of("http://127.0.0.1:1")).lower()
    socket = make_mocked_request("GET", "/ws", headers=CIMultiDict(headers))
    assert "X-Banyan-Stamp" not in upstream_headers(socket, "rid", websocket=True)

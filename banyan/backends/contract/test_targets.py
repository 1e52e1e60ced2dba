"""The suite's own plumbing: the proxy targets' flag file routes everything to one backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from banyan.backends.contract.targets import Target, open_target, proxy_flags


@pytest.mark.parametrize("backend", ["legacy", "new"])
def test_proxy_flags_send_every_api_and_ws_path_to_one_backend(backend: str) -> None:
    flags = pytest.importorskip("banyan.proxy.flags")
    parsed = flags.parse_flags(
        proxy_flags("http://127.0.0.1:1", "http://127.0.0.1:2", backend), "t"
    )
    router = flags.Router(parsed)
    for path in ("/api/auth/register", "/api/sessions/x/messages", "/ws/live", "/ws/tutor/abc"):
        decision = router.decide(path)
        assert decision.backend == backend, (path, decision)
        assert decision.feature == "api"


def test_ws_url_follows_the_scheme() -> None:
    assert Target("t", "http://h:1", None).ws_url == "ws://h:1"
    assert Target("t", "https://h", None).ws_url == "wss://h"


async def test_unknown_target_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown contract target"):
        async with open_target("nope", tmp_path):
            pass


async def test_external_target_needs_a_url(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="--base-url"):
        async with open_target("external", tmp_path):
            pass
    async with open_target("external", tmp_path, base_url="http://x:9/") as target:
        assert target.base_url == "http://x:9"
        assert target.backend is None

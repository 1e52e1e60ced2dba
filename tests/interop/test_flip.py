"""Interop: flipping the whiteboard from legacy to new while real yjs clients are editing.

With ``websocket: reconnect`` the proxy closes the open sockets (1012); y-websocket reconnects by
itself, now to the new backend, and its sync hands over every edit the new store lacks — so no edit
is lost even though the two backends keep separate stores. With ``keep`` the open sockets stay on
legacy and only new connections follow the flag.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.backends.contract.client import PASSWORD, register
from banyan.backends.contract.targets import open_target, proxy_flags
from tests.interop.conftest import NodeClient

WAIT = 15.0


def flags_with(legacy: str, new: str, mode: str, policy: str) -> str:
    return proxy_flags(legacy, new, mode).replace(
        f"    mode: {mode}\n", f"    mode: {mode}\n    websocket: {policy}\n"
    )


async def wait_doc(client: httpx.AsyncClient, room: str, keys: set[str], backend: str) -> Any:
    for _ in range(int(WAIT / 0.1)):
        response = await client.get(f"/api/whiteboard/{room}")
        if (
            response.headers.get("X-Banyan-Backend") == backend
            and set(response.json()["doc"].get("shapes", {})) >= keys
        ):
            return response.json()["doc"]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{backend} never showed {keys}: {response.headers} {response.text}")


@pytest.mark.parametrize("policy", ["reconnect", "keep"])
async def test_flip_loses_no_whiteboard_edit(
    policy: str, node_client_ready: Path, tmp_path: Path
) -> None:
    async with open_target("proxy-legacy", tmp_path) as target:
        user = await register(target)
        assert target.peer_url is not None
        async with httpx.AsyncClient(base_url=target.peer_url) as new_side:
            mirrored = await new_side.post(
                "/api/auth/register",
                json={"email": user.email, "password": PASSWORD, "name": "Ada"},
            )
            assert mirrored.status_code == 201  # the same user (id from the email) on new
        flags = tmp_path / "flags.yaml"
        urls = flags.read_text().split("backends:\n", 1)[1].splitlines()[:2]
        legacy, new = (line.split(": ", 1)[1] for line in urls)
        flags.write_text(flags_with(legacy, new, "legacy", policy))
        clients = [
            await NodeClient.start(node_client_ready, target.ws_url + "/ws/whiteboard", "flip", t)
            for t in (user.token, user.token)
        ]
        try:
            await asyncio.gather(*(c.call("synced", timeout=WAIT) for c in clients))
            await clients[0].call("set_shape", key="before", value={"by": 0})
            await clients[1].call("wait_shapes", keys=["before"], timeout=WAIT)
            await wait_doc(user.client, "flip", {"before"}, "legacy")
            flags.write_text(flags_with(legacy, new, "new", policy))
            await clients[1].call("set_shape", key="during", value={"by": 1})
            if policy == "reconnect":
                # the clients come back on their own, to new, and hand over what it lacks
                await wait_doc(user.client, "flip", {"before", "during"}, "new")
            else:
                await wait_doc(user.client, "flip", set(), "new")  # the flag has moved
                await clients[0].call("wait_shapes", keys=["during"], timeout=WAIT)  # still legacy
                late = await NodeClient.start(
                    node_client_ready, target.ws_url + "/ws/whiteboard", "flip", user.token
                )
                clients.append(late)
                await late.call("synced", timeout=WAIT)  # a new socket lands on new
                await late.call("set_shape", key="late", value={"by": 2})
                await wait_doc(user.client, "flip", {"late"}, "new")
            await clients[0].call("set_shape", key="after", value={"by": 0})
            await clients[1].call("wait_shapes", keys=["before", "during", "after"], timeout=WAIT)
            docs = [await c.call("json") for c in clients[:2]]
            assert docs[0]["shapes"] == docs[1]["shapes"]
        finally:
            for c in clients:
                await c.stop()
            await user.client.aclose()

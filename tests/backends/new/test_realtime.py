"""Tests of the new backend's tutor and whiteboard (``banyan/backends/new/realtime.py``,
``banyan/backends/new/functions/{tutor,whiteboard}.py``) beyond the contract: see
:mod:`tests.backends.realtime_cases`."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.new.app import RUNTIME, create_app
from banyan.backends.new.functions.whiteboard import rooms_of as runtime_rooms
from tests.backends import realtime_cases as cases


def rooms_of(app: web.Application) -> RoomManager:
    return runtime_rooms(app[RUNTIME])


async def test_model_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await cases.check_model_down(create_app, tmp_path, monkeypatch)


async def test_model_drops_mid_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await cases.check_model_drops(create_app, tmp_path, monkeypatch)


async def test_model_too_slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await cases.check_model_slow(create_app, tmp_path, monkeypatch)


async def test_concurrent_repeats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await cases.check_concurrent_repeats(create_app, tmp_path, monkeypatch)


async def test_shutdown_closes_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await cases.check_shutdown_closes_sockets(create_app, tmp_path, monkeypatch)


async def test_room_unloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await cases.check_room_unloads_and_compacts(create_app, rooms_of, tmp_path, monkeypatch)

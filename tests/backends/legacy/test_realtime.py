"""Tests of the legacy tutor and whiteboard modules (``banyan/backends/legacy/tutor.py``,
``banyan/backends/legacy/whiteboard.py``) beyond the contract: see
:mod:`tests.backends.realtime_cases`."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.legacy.app import create_app
from banyan.backends.legacy.whiteboard import ROOMS
from tests.backends import realtime_cases as cases


def rooms_of(app: web.Application) -> RoomManager:
    return app[ROOMS]


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

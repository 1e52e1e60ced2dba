"""Tests of new-backend documents (banyan/backends/new/functions/documents.py) beyond the contract
suite: a document deleted while its job runs stays deleted."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from banyan.backends.new.app import RUNTIME, create_app
from tests.backends.legacy.test_documents import dead_job_settles, deleted_mid_job


async def test_a_document_deleted_mid_job_stays_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deleted_mid_job(create_app, tmp_path, monkeypatch)


async def test_a_document_of_a_dead_job_settles_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def settle(app: web.Application) -> None:
        assert await app[RUNTIME].run_mutation("documents.settle", {}, None) == {"failed": 1}

    await dead_job_settles(create_app, settle, tmp_path, monkeypatch)

"""Fixtures for the model server tests: the server in-process and the real openai client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from banyan.backends.model.server import create_app
from banyan.serving import serve


def client_for(url: str, **options: Any) -> openai.AsyncOpenAI:
    """The real openai client pointed at a model server (no retries unless asked)."""
    settings: dict[str, Any] = {"api_key": "test-key", "max_retries": 0, "timeout": 10.0}
    settings.update(options)
    return openai.AsyncOpenAI(base_url=url + "/v1", **settings)


@pytest.fixture
async def model_url() -> AsyncIterator[str]:
    async with serve(create_app()) as url:
        yield url


@pytest.fixture
async def client(model_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    made = client_for(model_url)
    yield made
    await made.close()

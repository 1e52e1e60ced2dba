"""One model client per backend application.

:func:`install_llm` gives an aiohttp application its :class:`~banyan.backends.common.llm.LLM`,
configured
from the environment when the app is created (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``,
``BANYAN_MODEL``; default the local model server of ``banyan up``), and closes it at cleanup. It
is idempotent, so every feature module of a backend (tutor, agents, documents...) shares one
client: ``llm_of(app)``.
"""

from __future__ import annotations

from aiohttp import web

from banyan.backends.common.llm import LLM, settings_from_env

LLM_KEY: web.AppKey[LLM] = web.AppKey("banyan_llm", LLM)


def install_llm(app: web.Application) -> LLM:
    """The app's model client, created (from the environment) on the first call."""
    existing = app.get(LLM_KEY)
    if existing is not None:
        return existing
    llm = LLM(settings_from_env())
    app[LLM_KEY] = llm

    async def close(_: web.Application) -> None:
        await llm.aclose()

    app.on_cleanup.append(close)
    return llm


def llm_of(app: web.Application) -> LLM:
    return app[LLM_KEY]

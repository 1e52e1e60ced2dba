"""Fixtures of the contract suite: the ``target`` parametrization and per-test users.

Without options every local target runs (see :mod:`banyan.backends.contract.targets`); ``--base-url
URL``
runs the suite against that server only, and ``--target NAME`` (repeatable) picks local targets.
A target is started once per test module with a fresh store; tests isolate themselves by
registering their own users. When a shadow target's module ends, its parity report must show 100%
match (:func:`banyan.backends.contract.shadow.verdict`), or the module's last test errors with the
list of
differences.

The local targets' backends need a JWT secret (they refuse to start without one): unless
``BANYAN_JWT_SECRET`` is exported, the suite makes a random one for the run. Against
``--base-url`` it cannot guess the server's: export the server's secret, or the tests that sign
their own tokens are skipped.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from banyan.backends.common import tokens
from banyan.backends.contract.client import User, anonymous, register
from banyan.backends.contract.shadow import verdict
from banyan.backends.contract.targets import EXTERNAL, LOCAL_TARGETS, Target, open_target


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("contract", "API contract suite")
    group.addoption(
        "--base-url",
        default=None,
        help="run the contract suite against this external server only",
    )
    group.addoption(
        "--target",
        action="append",
        default=None,
        choices=LOCAL_TARGETS,
        help="local contract target(s) to run (default: all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--base-url"):
        os.environ.setdefault(tokens.SECRET_ENV, tokens.new_secret())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target_name" not in metafunc.fixturenames:
        return
    if metafunc.config.getoption("--base-url"):
        names: list[str] = [EXTERNAL]
    else:
        names = list(metafunc.config.getoption("--target") or LOCAL_TARGETS)
    metafunc.parametrize("target_name", names, scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target(
    target_name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    workdir: Path = tmp_path_factory.mktemp(f"contract-{target_name}")
    base_url = request.config.getoption("--base-url")
    async with open_target(target_name, workdir, base_url=base_url) as running:
        yield running
        problems = await verdict(running.base_url, running.shadow) if running.shadowed else []
    if problems:
        pytest.fail(
            f"{target_name}: the backends answered differently in {request.module.__name__}:\n"
            + "\n".join(problems),
            pytrace=False,
        )


@pytest_asyncio.fixture(loop_scope="session")
async def anon(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    async with anonymous(target) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def user(target: Target) -> AsyncIterator[User]:
    registered = await register(target)
    async with registered.client:
        yield registered


@pytest_asyncio.fixture(loop_scope="session")
async def other(target: Target) -> AsyncIterator[User]:
    registered = await register(target, name="Bob")
    async with registered.client:
        yield registered

"""Tests for banyan/control/guards.py: guard windows judged on the sum of replicas' evidence."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from banyan.control.db import schema_from_env
from banyan.control.guards import SharedGuards, fingerprint
from banyan.control.store import ControlStore
from banyan.proxy.flag_reactions import sync_guards
from banyan.proxy.flags import FlagSet, FlagStore
from banyan.proxy.guards import GuardBoard

pytestmark = pytest.mark.postgres

FLAGS = """\
version: 1
backends:
  legacy: http://127.0.0.1:1
  new: http://127.0.0.1:2
features:
  api:
    routes: ["/api/**"]
    mode: new
    guards: {max_error_rate: 0.5, window: 4}
  docs:
    routes: ["/docs/**"]
    mode: legacy
    guards: {max_error_rate: 0.5, window: 4}
default: legacy
"""


class Replica(NamedTuple):
    """What the shared guards judge of one replica: its guard windows, its flags in force."""

    guards: GuardBoard
    flags: FlagSet


def replica(path: Path) -> Replica:
    flags = FlagStore(path, watch=False).current
    guards = GuardBoard()
    sync_guards(guards, flags)
    return Replica(guards, flags)


async def open_guards(url: str) -> SharedGuards:
    store = ControlStore(url, schema=schema_from_env())
    await store.open()
    return SharedGuards(store)


async def test_only_the_sum_of_replicas_breaches(tmp_path: Path, control_db: str) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS)
    a, b = replica(path), replica(path)
    ga, gb = await open_guards(control_db), await open_guards(control_db)
    try:
        for state in (a, b):
            for _ in range(2):
                state.guards.get("api").observe_request("new", True, 5.0)
        assert await ga.judge(a.guards, a.flags) == []  # 2 samples: not yet evidence
        (breach,) = await gb.judge(b.guards, b.flags)  # 2 + 2
        assert (breach.feature, breach.rule, breach.samples) == ("api", "max_error_rate", 4)
        assert b.guards.get("api").tripped == breach
        assert await gb.judge(b.guards, b.flags) == []  # remembered: judged once
        assert (await ga.judge(a.guards, a.flags))[0].samples == 4  # the other replica finds it too
    finally:
        await ga.stop()
        await gb.stop()
        await ga.store.close()
        await gb.store.close()


async def test_foreign_fingerprints_and_stale_rows_do_not_count(
    tmp_path: Path, control_db: str
) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS)
    a = replica(path)
    guards = await open_guards(control_db)
    full = json.dumps({"new_failed": [1, 1, 1, 1]})
    api = a.flags.feature("api")
    try:
        async with guards.store.pool.acquire() as conn:
            await conn.executemany(
                f"INSERT INTO {guards.store.table('guard_counts')} VALUES ($1, $2, $3, $4, $5)",
                [
                    ("api", "old-mode", "not-the-same-flags", full, time.time()),
                    ("api", "dead", fingerprint(api), full, time.time() - 3600),
                ],
            )
        a.guards.get("api").observe_request("new", True, 5.0)
        assert await guards.judge(a.guards, a.flags) == []
        async with guards.store.pool.acquire() as conn:
            mine = await conn.fetchval(
                f"SELECT count(*) FROM {guards.store.table('guard_counts')} WHERE replica = $1",
                guards.replica,
            )
        assert mine == 1  # api only: docs is on legacy, nothing to judge
        await guards.stop()
        async with guards.store.pool.acquire() as conn:
            left = await conn.fetch(f"SELECT replica FROM {guards.store.table('guard_counts')}")
        assert {r["replica"] for r in left} == {"old-mode", "dead"}
    finally:
        await guards.stop()
        await guards.store.close()


async def test_nothing_guarded_costs_no_query(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS.replace("mode: new", "mode: legacy"))
    store = ControlStore("postgresql://postgres@127.0.0.1:1/none", schema="x")
    quiet = replica(path)
    assert (
        await SharedGuards(store).judge(quiet.guards, quiet.flags) == []
    )  # never opened: no query made

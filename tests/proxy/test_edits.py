"""Tests for banyan/proxy/edits.py and banyan/proxy/rollback.py: a proxy audits the flag edits it
made itself, once, on its own loop, and no other proxy in the process hears them."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from banyan.proxy.app import STATE, create_app
from banyan.proxy.audit import AuditLog
from banyan.proxy.edits import EditJournal
from banyan.proxy.flag_edit import set_mode
from banyan.proxy.guards import Breach
from banyan.serving import serve
from tests.proxy.conftest import ALL_LEGACY
from tests.proxy.upstreams import flags_yaml

CHANGE = {"source": "admin", "feature": "api", "before": None, "after": None, "digest": "d1"}


def test_the_journal_audits_each_change_and_knows_its_digest_once(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log")
    journal = EditJournal(audit)
    journal.record([CHANGE], reason="why")
    (entry,) = audit.history()
    assert (entry["source"], entry["feature"], entry["reason"]) == ("admin", "api", "why")
    assert journal.made_here("d1") and not journal.made_here("d1")  # asked once per reload
    assert not journal.made_here("other")


def test_an_edit_returns_its_changes(tmp_path: Path) -> None:
    flags = tmp_path / "flags.yaml"
    flags.write_text(flags_yaml("http://127.0.0.1:9", "http://127.0.0.1:9", ALL_LEGACY))
    result = set_mode(flags, "api", "new", source="admin")
    (change,) = result.changes
    assert change["feature"] == "api" and change["source"] == "admin"
    assert change["after"]["mode"] == "new" and change["digest"] == result.digest
    assert set_mode(flags, "api", "new").changes == ()  # nothing changed: nothing to audit


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "t")


async def test_two_proxies_in_one_process_audit_only_their_own_edits(tmp_path: Path) -> None:
    paths = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "flags.yaml"
        path.write_text(flags_yaml("http://127.0.0.1:9", "http://127.0.0.1:9", ALL_LEGACY))
        paths.append(path)
    one, two = (create_app(p, access_log=False, health_interval=3600) for p in paths)
    auth = {"Authorization": "Bearer t"}
    async with serve(one) as url_one, serve(two) as url_two:
        async with httpx.AsyncClient(base_url=url_one, headers=auth) as client:
            put = await client.put("/_proxy/flags/api", json={"mode": "new"})
            assert put.status_code == 200
            entries = (await client.get("/_proxy/audit")).json()["entries"]
        async with httpx.AsyncClient(base_url=url_two, headers=auth) as client:
            others = (await client.get("/_proxy/audit")).json()["entries"]
    assert [(e["source"], e["feature"]) for e in entries] == [("admin", "api")]
    assert others == []


async def test_a_guard_rollback_is_audited_on_the_loop_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    features = ALL_LEGACY.replace("mode: legacy", "mode: new")
    path.write_text(flags_yaml("http://127.0.0.1:9", "http://127.0.0.1:9", features))
    app = create_app(path, access_log=False, health_interval=3600)
    state = app[STATE]
    audit = state.audit
    assert audit is not None
    threads: list[str] = []
    append = audit.append

    def spy(**entry: object) -> None:
        threads.append(threading.current_thread().name)
        append(**entry)  # type: ignore[arg-type]

    audit.append = spy  # type: ignore[method-assign]
    breach = Breach("api", "max_error_rate", 0.5, 0.2, 20)
    async with serve(app):
        await state.rollback.roll_back(breach)
        await state.reactions.audit_settled()
    assert state.flags.feature("api").mode == "legacy"  # type: ignore[union-attr]
    (entry,) = audit.history()
    assert entry["source"] == "guard" and entry["reason"] == breach.message
    assert threads == [threading.main_thread().name]

"""Tests of banyan/application.py: the application behind the proxy, plugged in by entry point."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pycrdt import Array, Doc, Map

from banyan import application, ydoc
from banyan.application import GENERIC, Socket, plugged


def test_the_installed_application_is_the_ai_tutor() -> None:
    found = plugged()
    assert found.name == "ai-tutor" and found is plugged()  # read once per process
    assert found.ask_turn(json.dumps({"type": "ask", "text": "hi"}), 3) == "t3"
    assert found.ask_turn(json.dumps({"type": "ask", "text": "hi", "id": "q7"}), 3) == "q7"
    for not_an_ask in ('{"type": "ping"}', "{oops", json.dumps({"type": "ask", "text": " "})):
        assert found.ask_turn(not_an_ask, 1) is None
    assert found.turn_key("s1", 4) == "tutor:s1:4"
    body = json.dumps({"email": "Ann@Example.com ", "password": "p"}).encode()
    user = found.registered_user("/api/auth/register?x=1", body)
    assert user is not None and user == found.registered_user("/api/auth/register", body.lower())
    assert found.registered_user("/api/folders", body) is None
    assert found.registered_user("/api/auth/register", b"{not json") is None
    assert found.registered_user("/api/auth/register", b'{"email": ""}') is None


def test_the_ai_tutors_sockets_and_lines() -> None:
    found = plugged()
    assert found.socket("/ws/tutor/s1") == Socket("turns", "s1")
    assert found.socket("/ws/whiteboard/room-7") == Socket("document", "room-7")
    assert found.socket("/ws/live") == Socket("subscriptions", "")
    for other in ("/ws/tutor/", "/ws/tutor/s1/x", "/ws/live/x", "/ws/other", "/api/sessions"):
        assert found.socket(other) is None, other
    assert found.shared_line("/api/whiteboard/room-7/snapshot") == "whiteboard:room-7"
    assert found.shared_line("/ws/whiteboard/room-7") == "whiteboard:room-7"
    assert found.shared_line("/api/notes") is None
    assert found.turn_messages_path("s1") == "/api/sessions/s1/messages"


def test_without_a_plugged_application_nothing_particular_is_assumed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(application, "entry_points", lambda group: [])
    plugged.cache_clear()
    try:
        assert plugged() is GENERIC
    finally:
        plugged.cache_clear()
    assert GENERIC.ask_turn(json.dumps({"type": "ask", "text": "hi"}), 1) is None
    assert GENERIC.turn_key("s", 1) == "turn:s:1"
    assert GENERIC.registered_user("/api/auth/register", b'{"email": "a@b.c"}') is None
    assert GENERIC.socket("/ws/tutor/s1") is None and GENERIC.shared_line("/ws/x/y") is None
    assert GENERIC.turn_messages_path("s") == "/sessions/s/messages"


def test_an_entry_point_that_does_not_load_is_passed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken:
        name, value = "aaa-broken", "nowhere:NOTHING"

        def load(self) -> Any:
            raise ImportError("no module named nowhere")

    class Works:
        name, value = "zzz-works", "here:APP"

        def load(self) -> Any:
            return GENERIC

    monkeypatch.setattr(application, "entry_points", lambda group: [Works(), Broken()])
    plugged.cache_clear()
    try:
        assert plugged() is GENERIC
    finally:
        plugged.cache_clear()


def test_a_document_is_read_with_the_applications_schema() -> None:
    doc: Doc = Doc()
    doc.get("order", type=Array).extend(["a"])
    doc.get("shapes", type=Map)["a"] = {"w": 2.0}
    schema = plugged().document_schema
    assert ydoc.doc_to_json(doc, schema) == {"order": ["a"], "shapes": {"a": {"w": 2}}}
    assert ydoc.doc_to_json(doc) == ydoc.doc_to_json(doc, schema)  # inferred alike here

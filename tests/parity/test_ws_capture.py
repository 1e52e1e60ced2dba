"""Tests for banyan/parity/ws_capture.py: tutor turns and whiteboard replicas from raw frames."""

from __future__ import annotations

import json

from pycrdt import Doc, Map

from banyan import ywebsocket
from banyan.parity.ws_capture import TutorTurns, WhiteboardReplica


def frames(*items: dict[str, object]) -> list[str]:
    return [json.dumps(i) for i in items]


def test_turns_are_assembled_and_tokens_collapsed() -> None:
    turns = TutorTurns()
    stream = frames(
        {"type": "token", "turn": "t1", "text": "Hel"},
        {"type": "token", "turn": "t1", "text": "lo"},
        {"type": "pong"},
        {
            "type": "done",
            "turn": "t1",
            "question": {"content": "q"},
            "answer": {"content": "Hello"},
        },
        {"type": "error", "turn": "t2", "code": "upstream_failed", "message": "down"},
    )
    finished = [turns.feed(raw) for raw in [*stream, "not json"]]
    done, failed = finished[3], finished[4]
    assert done is not None and done.finished
    assert done.as_json() == {
        "events": ["token", "done"],
        "text": "Hello",
        "question": {"content": "q"},
        "answer": {"content": "Hello"},
    }
    assert failed is not None and failed.as_json()["error"]["code"] == "upstream_failed"
    assert turns.order == ["t1", "t2"] and turns.pop("t1") is done and turns.pop("t1") is None


def test_replica_follows_updates_from_both_sides() -> None:
    server, client = Doc(), Doc()
    replica = WhiteboardReplica()
    before = server.get_state()
    server.get("shapes", type=Map)["a"] = {"kind": "rect"}
    replica.apply(ywebsocket.sync_step2(server.get_update(before)))
    before = client.get_state()
    client.get("shapes", type=Map)["b"] = {"kind": "line"}
    replica.apply(ywebsocket.update(client.get_update(before)))
    for ignored in [
        ywebsocket.sync_step1(b"\x00"),
        ywebsocket.awareness(b"\x00"),
        b"\x09",
        ywebsocket.update(b"\xff\xff"),
    ]:
        replica.apply(ignored)
    assert replica.json() == {"shapes": {"a": {"kind": "rect"}, "b": {"kind": "line"}}}
    assert replica.frames == 2


def test_live_answers_are_keyed_by_subscribe_and_order() -> None:
    from banyan.parity.ws_capture import LiveAnswers

    live = LiveAnswers()
    assert live.sent("{not json") is None
    assert live.sent(json.dumps({"type": "ping"})) is None
    assert live.sent(json.dumps({"type": "subscribe", "id": 7})) is None
    assert live.sent(json.dumps({"type": "subscribe", "id": "f", "query": "folders.list"})) == "f#1"
    assert live.feed(json.dumps({"type": "pong"})) is None
    assert live.feed("garbage") is None
    assert live.feed(json.dumps({"type": "result", "id": "x", "value": 1})) is None  # not asked
    assert live.feed(json.dumps({"type": "result", "id": "f", "value": {"items": []}})) == "f#1"
    assert live.feed(json.dumps({"type": "result", "id": "f", "value": {"items": [1]}})) is None
    assert live.feed(json.dumps({"type": "error", "id": None, "code": "invalid_json"})) == "#1"
    assert live.feed(json.dumps({"type": "hello"})) is None
    assert live.sent(json.dumps({"type": "subscribe", "id": "f"})) == "f#2"  # a new generation
    assert live.feed(json.dumps({"type": "error", "id": "f", "code": "not_found"})) == "f#2"
    assert live.answers["f#1"]["value"] == {"items": []} and live.answers["#1"]["code"]

"""Tests of snapshots and restores two stores make alike (``whiteboard/snapshot.py``,
``Room.restore``): the same content gives the same snapshot bytes, and the same restore on two
stores in step is the same edit."""

from __future__ import annotations

import subprocess
import sys

from pycrdt import Array, Doc, Map, Text

from banyan.backends.common.whiteboard.room import Room
from banyan.backends.common.whiteboard.snapshot import canonical_update, doc_to_json
from banyan.backends.common.whiteboard.store import MemoryRoomStore
from banyan.ydoc import doc_from_update


def _edits(first: int = 11, second: int = 22) -> list[bytes]:
    """Updates of two writers (Yjs clients ``first`` and ``second``): shapes, an order, notes,
    an unknown root."""
    updates: list[bytes] = []
    a, b = Doc(client_id=first), Doc(client_id=second)
    a.observe(lambda event: updates.append(event.update))
    b.observe(lambda event: updates.append(event.update))
    shapes, order = a.get("shapes", type=Map), a.get("order", type=Array)
    notes = a.get("notes", type=Text)
    for i in range(4):
        shapes[f"s{i}"] = {"kind": "rect", "x": i, "y": 1.0}
        order.append(f"s{i}")
        notes += f"line {i}\n"
    b.get("extra", type=Map)["z"] = [1, 2]
    return updates


def _doc(updates: list[bytes]) -> Doc:
    doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc


def test_the_same_content_gives_the_same_snapshot_whoever_wrote_it() -> None:
    """Two stores whose rooms hold the same content written by other Yjs clients (edits made
    on each side, a restore made before stamps) store the same snapshot."""
    one, other = _doc(_edits(11, 22)), _doc(_edits(33, 44))
    assert doc_to_json(one) == doc_to_json(other)
    assert one.get_update() != other.get_update()  # why snapshots re-encode the content
    assert canonical_update(one) == canonical_update(other)


def test_a_canonical_snapshot_keeps_the_content() -> None:
    doc = _doc(_edits())
    saved = doc_from_update(canonical_update(doc))
    assert doc_to_json(saved) == doc_to_json(doc)
    assert doc_to_json(saved)["shapes"]["s2"] == {"kind": "rect", "x": 2, "y": 1}


def _room(name: str, history: list[bytes]) -> Room:
    room = Room(name, MemoryRoomStore())
    for update in history:
        room.doc.apply_update(update)
    return room


def _merged(*rooms: Room) -> Doc:
    doc = Doc()
    for room in rooms:
        doc.apply_update(room.doc.get_update())
    return doc


async def test_a_restore_with_one_client_id_is_the_same_edit_on_two_stores() -> None:
    history = _edits()
    snapshot = canonical_update(_room("x", history[:3]).doc)
    left, right = _room("left", history), _room("right", history)
    left.restore(snapshot, client_id=4242)
    right.restore(snapshot, client_id=4242)
    assert doc_to_json(left.doc) == doc_to_json(right.doc)
    assert left.doc.get_state() == right.doc.get_state()
    # a client of one store pushes what it sees to the other (the proxy's board mirror)
    assert doc_to_json(_merged(left, right)) == doc_to_json(left.doc)


async def test_restores_by_each_store_s_own_client_duplicate_when_merged() -> None:
    """What a client id of its own does to a mirrored restore: both edits survive the merge."""
    history = _edits()
    snapshot = canonical_update(_room("x", history[:3]).doc)
    left, right = _room("left", history), _room("right", history)
    left.restore(snapshot)
    right.restore(snapshot)
    assert doc_to_json(left.doc) == doc_to_json(right.doc)
    assert doc_to_json(_merged(left, right)) != doc_to_json(left.doc)


SCRIPT = """
from pycrdt import Doc, Map
from banyan.backends.common.whiteboard.snapshot import canonical_update
doc = Doc(client_id=7)
doc.get("shapes", type=Map)["s"] = {"a": 1, "b": 2, "c": 3, "d": 4, "e": {"f": 5, "g": [6]}}
print(canonical_update(doc).hex())
"""


def test_a_snapshot_of_object_values_is_the_same_in_every_process() -> None:
    """A plain object value is encoded from a hash map seeded per process; the snapshot is not."""
    runs = {
        subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(runs) == 1 and len(runs.pop()) > 0

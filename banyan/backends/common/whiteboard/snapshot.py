"""Whiteboard documents as JSON, and restoring a saved version into a live document.

Yjs does not record a root's type in its updates (:mod:`banyan.ydoc`). The whiteboard's document
shape is therefore part of the contract (``SCHEMA``: ``shapes`` a Map of shape objects keyed by
id, ``order`` an Array of shape ids, ``notes`` a Text, ``meta`` a Map); any other root is read as
a Map when it has keys, as an Array when it has items but no text, otherwise as a Text.

Restoring is a forward edit, not a rewind: the live document's roots are rewritten to the saved
content inside one transaction, so connected clients receive it as an ordinary update and nobody's
replica has to be reset.

A snapshot keeps the room's *content*, encoded canonically (:func:`canonical_update`: a fresh
document with a fixed client id, roots and keys in sorted order, objects as nested maps, written in
one transaction), not the room's own update: two stores whose rooms hold the same content store the
same bytes and size even when that content was written by other Yjs clients on each side (edits
made separately, a restore made before stamps) — the equality ``banyan data verify`` asks of rooms
— and even when it holds plain object values, which Yjs encodes from a hash map in an order that
changes from one process to the next. Restoring only ever reads a snapshot's content.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Doc, Map, Text

from banyan import ydoc

SCHEMA: ydoc.Schema = {
    "shapes": Map,
    "order": Array,
    "notes": Text,
    "meta": Map,
}


def typed_roots(doc: Doc) -> dict[str, Map[Any] | Array[Any] | Text]:
    """Every root of a copy of ``doc``, each read with its contract type (or an inferred one)."""
    return ydoc.typed_roots(doc, SCHEMA)


def doc_to_json(doc: Doc) -> dict[str, Any]:
    """The document as plain JSON values, one key per root, sorted."""
    return ydoc.doc_to_json(doc, SCHEMA)


CANONICAL_CLIENT_ID = 1  # the writer of every canonical snapshot


def canonical_update(doc: Doc) -> bytes:
    """``doc``'s content as an update that depends on that content alone. Objects at any depth
    are written as nested maps key by key in sorted order: a plain object value is encoded from a
    hash map whose order changes from one process to the next."""
    fresh: Doc = Doc(client_id=CANONICAL_CLIENT_ID)
    with fresh.transaction():
        for name, root in typed_roots(doc).items():
            value = ydoc.plain(root.to_py())
            if isinstance(root, Text):
                fresh.get(name, type=Text).insert(0, str(value or ""))
            elif isinstance(root, Map):
                mapping = fresh.get(name, type=Map)
                for key, item in (value or {}).items():
                    mapping[key] = _canonical(item)
            else:
                fresh.get(name, type=Array).extend([_canonical(item) for item in value or []])
    return fresh.get_update()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return Map({key: _canonical(value[key]) for key in sorted(value)})
    if isinstance(value, list):
        return Array([_canonical(item) for item in value])
    return value


def replace_content(live: Doc, target: Doc) -> None:
    """Rewrite ``live`` so that its JSON equals ``target``'s (one transaction)."""
    wanted = typed_roots(target)
    present = typed_roots(live)
    with live.transaction():
        for name, root in wanted.items():
            _write_root(live, name, type(root), root.to_py())
        for name, root in present.items():
            if name not in wanted:
                _write_root(live, name, type(root), None)


def _write_root(live: Doc, name: str, kind: type, value: Any) -> None:
    if kind is Text:
        text = live.get(name, type=Text)
        text.clear()
        if value:
            text += str(value)
    elif kind is Map:
        mapping = live.get(name, type=Map)
        mapping.clear()
        for key, item in (value or {}).items():
            mapping[key] = item
    else:
        array = live.get(name, type=Array)
        array.clear()
        array.extend(value or [])

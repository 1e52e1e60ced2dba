"""Yjs documents read as JSON, whatever application wrote them.

Yjs does not record a root's type in its updates: a replica only knows a root as a Map, an Array
or a Text once somebody asks for it with that type. An application that knows its document's shape
passes it as a *schema* (root name -> ``Map``, ``Array`` or ``Text``); any other root is read as a
Map when it has keys, as an Array when it has items but no text, otherwise as a Text. The JSON view
sorts roots and keys and writes whole floats as integers, so two replicas holding the same content
give equal JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pycrdt import Array, Doc, Map, Text

Root = Map[Any] | Array[Any] | Text
Schema = Mapping[str, type[Map[Any]] | type[Array[Any]] | type[Text]]


def doc_from_update(update: bytes) -> Doc:
    doc: Doc = Doc()
    if update:
        doc.apply_update(update)
    return doc


def typed_roots(doc: Doc, schema: Schema | None = None) -> dict[str, Root]:
    """Every root of a copy of ``doc``, each read with its ``schema`` type (or an inferred one)."""
    copy = doc_from_update(doc.get_update())
    roots: dict[str, Root] = {}
    for name in sorted(copy.keys()):
        known = (schema or {}).get(name)
        if known is not None:
            roots[name] = copy.get(name, type=known)
            continue
        probe = doc_from_update(copy.get_update())
        as_map = probe.get(name, type=Map)
        if len(as_map) > 0:
            roots[name] = copy.get(name, type=Map)
            continue
        probe = doc_from_update(copy.get_update())
        as_text = probe.get(name, type=Text)
        # A Text view of an Array branch reads as "" while still counting its items.
        if len(as_text) > 0 and not str(as_text):
            roots[name] = copy.get(name, type=Array)
        else:
            roots[name] = copy.get(name, type=Text)
    return roots


def doc_to_json(doc: Doc, schema: Schema | None = None) -> dict[str, Any]:
    """The document as plain JSON values, one key per root, sorted."""
    return {name: plain(root.to_py()) for name, root in typed_roots(doc, schema).items()}


def plain(value: Any) -> Any:
    """A root's Python value with keys sorted and whole floats as integers."""
    if isinstance(value, dict):
        return {key: plain(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value

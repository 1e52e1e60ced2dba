"""Tests of banyan.backends.model.embeddings: unit length, determinism, shared words point alike."""

from __future__ import annotations

import base64
import math
import struct

from banyan.backends.model.embeddings import embed, to_base64


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_unit_length_and_deterministic() -> None:
    for text in ("hello world", "", "!!!", "a much longer text about cells and energy"):
        vector = embed(text, 32)
        assert len(vector) == 32
        assert math.isclose(math.sqrt(_dot(vector, vector)), 1.0, rel_tol=1e-9)
        assert vector == embed(text, 32)
    assert embed("hello", 16, seed=1) != embed("hello", 16, seed=2)


def test_shared_words_are_closer_than_unrelated_texts() -> None:
    a = embed("the cell stores energy in ATP", 256)
    b = embed("energy in the cell comes from ATP", 256)
    c = embed("volcanoes erupt under pressure", 256)
    assert _dot(a, b) > _dot(a, c)


def test_base64_is_little_endian_float32() -> None:
    vector = embed("x", 8)
    raw = base64.b64decode(to_base64(vector))
    decoded = struct.unpack("<8f", raw)
    assert all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(decoded, vector, strict=True)
    )

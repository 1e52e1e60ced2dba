"""Deterministic embeddings: hashed bag-of-words unit vectors.

Each lower-cased word adds +1 or -1 to one dimension picked by its sha256, so texts that share
words point in similar directions (useful for retrieval over documents); a text without words
falls back to a vector drawn from the hash of the whole string. Vectors are unit length.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct

DEFAULT_DIMENSIONS = 64
MAX_DIMENSIONS = 4096
_WORDS = re.compile(r"\w+")


def _bucket(word: str, dimensions: int, seed: int) -> tuple[int, float]:
    block = hashlib.sha256(f"{seed}:{word}".encode()).digest()
    return int.from_bytes(block[:8], "big") % dimensions, 1.0 if block[8] & 1 else -1.0


def _from_hash(text: str, dimensions: int, seed: int) -> list[float]:
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(f"{seed}:{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    return values[:dimensions]


def embed(text: str, dimensions: int = DEFAULT_DIMENSIONS, seed: int = 0) -> list[float]:
    """The unit vector of ``text`` (pure function of text, dimensions and seed)."""
    vector = [0.0] * dimensions
    for word in _WORDS.findall(text.lower()):
        index, sign = _bucket(word, dimensions, seed)
        vector[index] += sign
    if not any(vector):
        vector = _from_hash(text, dimensions, seed)
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def to_base64(vector: list[float]) -> str:
    """The ``encoding_format: base64`` form: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")

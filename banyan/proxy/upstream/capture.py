"""Keeping a bounded copy of a body as it streams past, for shadow comparison and mirroring."""

from __future__ import annotations


class Capture:
    """Bytes of a body up to ``limit``; past it, nothing (``overflow`` says so)."""

    __slots__ = ("limit", "overflow", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.overflow = False

    def add(self, chunk: bytes) -> None:
        if self.overflow:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.overflow = True
            self.parts = []
        else:
            self.parts.append(chunk)

    def value(self) -> bytes | None:
        return None if self.overflow else b"".join(self.parts)

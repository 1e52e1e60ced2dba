"""The contract's resource objects, rendered the same way by both backends from stored values."""

from __future__ import annotations

from typing import Any

from banyan.backends.common.clock import iso


def user(id: str, email: str, name: str, created_ms: int) -> dict[str, Any]:
    return {"id": id, "email": email, "name": name, "created_at": iso(created_ms)}


def folder(id: str, name: str, created_ms: int, updated_ms: int) -> dict[str, Any]:
    return {"id": id, "name": name, "created_at": iso(created_ms), "updated_at": iso(updated_ms)}


def session(
    id: str,
    title: str,
    folder_id: str | None,
    created_ms: int,
    updated_ms: int,
    expires_ms: int,
    message_count: int,
) -> dict[str, Any]:
    return {
        "id": id,
        "title": title,
        "folder_id": folder_id,
        "created_at": iso(created_ms),
        "updated_at": iso(updated_ms),
        "expires_at": iso(expires_ms),
        "message_count": message_count,
    }


def message(
    id: str, session_id: str, seq: int, role: str, content: str, created_ms: int
) -> dict[str, Any]:
    return {
        "id": id,
        "session_id": session_id,
        "seq": seq,
        "role": role,
        "content": content,
        "created_at": iso(created_ms),
    }


def context(session_id: str, value: dict[str, Any], updated_ms: int | None) -> dict[str, Any]:
    return {"session_id": session_id, "context": value, "updated_at": iso(updated_ms)}

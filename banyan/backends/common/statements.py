"""The prepared SQL of sessions and folders, built once per store from its tables.

Both backends keep the same columns under (almost) the same table names, so the statements are the
same; each backend builds them from its own ``Table`` objects. Ownership checks live inside the
writes (``UPDATE/DELETE ... WHERE id AND user_id [AND not expired] RETURNING``), so a foreign or
expired row is simply not found. Parameters are bound by name: ``id``, ``sid``, ``fid``, ``uid``,
``now``, ``n``, ``expires``, ``text``, ``new_name``; an owned-session update takes its SET columns
from the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, update


@dataclass(frozen=True, slots=True)
class SessionStatements:
    session_by_id: Any
    message_by_id: Any
    context_by_id: Any
    update_owned: Any
    delete_owned: Any
    delete_messages: Any
    delete_context: Any
    bump: Any
    bump_owned: Any
    update_context: Any


def session_statements(sessions: Table, messages: Table, contexts: Table) -> SessionStatements:
    s, m, c = sessions, messages, contexts
    owned = (
        s.c.id == bindparam("sid"),
        s.c.user_id == bindparam("uid"),
        s.c.expires_ms > bindparam("now"),
    )
    bump = (
        update(s)
        .where(s.c.id == bindparam("sid"))
        .values(
            message_count=s.c.message_count + bindparam("n"),
            updated_ms=bindparam("now"),
            expires_ms=bindparam("expires"),
        )
        .returning(s.c.message_count)
    )
    return SessionStatements(
        session_by_id=select(s).where(s.c.id == bindparam("id")),
        message_by_id=select(m).where(m.c.id == bindparam("id")),
        context_by_id=select(c.c.context, c.c.updated_ms).where(c.c.session_id == bindparam("id")),
        update_owned=update(s).where(*owned).returning(*s.c),
        delete_owned=delete(s).where(*owned).returning(s.c.id),
        delete_messages=delete(m).where(m.c.session_id == bindparam("sid")),
        delete_context=delete(c).where(c.c.session_id == bindparam("sid")),
        bump=bump,
        bump_owned=bump.where(s.c.user_id == bindparam("uid"), s.c.expires_ms > bindparam("now")),
        update_context=(
            update(c)
            .where(c.c.session_id == bindparam("sid"))
            .values(context=bindparam("text"), updated_ms=bindparam("now"))
        ),
    )


@dataclass(frozen=True, slots=True)
class FolderStatements:
    folders_of: Any
    folder_by_id: Any
    rename_owned: Any
    delete_owned: Any
    unfile: Any


def folder_statements(folders: Table, sessions: Table) -> FolderStatements:
    f = folders
    owned = (f.c.id == bindparam("fid"), f.c.user_id == bindparam("uid"))
    return FolderStatements(
        folders_of=select(f)
        .where(f.c.user_id == bindparam("uid"))
        .order_by(f.c.created_ms, f.c.id),
        folder_by_id=select(f).where(f.c.id == bindparam("id")),
        rename_owned=(
            update(f)
            .where(*owned)
            .values(name=bindparam("new_name"), updated_ms=bindparam("now"))
            .returning(*f.c)
        ),
        delete_owned=delete(f).where(*owned).returning(f.c.id),
        unfile=(
            update(sessions)
            .where(sessions.c.user_id == bindparam("uid"), sessions.c.folder_id == bindparam("fid"))
            .values(folder_id=None)
        ),
    )

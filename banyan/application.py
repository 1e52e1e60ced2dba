"""What the proxy and parity know of the application they migrate, through one small interface.

Most of what Banyan does is the same for any HTTP application. A few things are not, and they
are asked of an :class:`Application` object instead of being read from a backend's code:

- ``socket``: which WebSocket paths are sockets of a kind the proxy compares and writes through —
  ``turns`` (asks answered by streamed turns, whose ``done`` frame carries the stored question and
  answer), ``document`` (a Yjs room over the y-websocket protocol) or ``subscriptions`` (live
  queries answered by id) — and each one's key (the session, the room);
- ``shared_line``: the line every user's shadow copies to a path share (a room's edits keep one
  order across users), if any;
- ``turn_messages_path``: where a turn's two messages are appended on the other store;
- ``ask_turn``: on a turn-based socket (``/ws/tutor/...``), which client frames ask for a turn,
  and the turn's id (what a shadow tap waits for, and stamps, before the candidate's copy leaves);
- ``turn_key``: the ``Idempotency-Key`` a turn's message is stored under (what a turn written
  through to the other store is keyed by, so both stores hold the very same message);
- ``document_schema``: the root types of the application's Yjs documents (:mod:`banyan.ydoc`),
  which Yjs updates do not carry (what a shadowed room is compared as);
- ``registered_user``: the user id a registration request creates, before any token names it (so
  that user's first mirrored writes wait behind the registration).

The application plugs its object in as an entry point of the group :data:`GROUP` (this project's
AI Tutor: ``banyan.backends.common.plugin:AI_TUTOR``, declared in ``pyproject.toml``). Without
one, :data:`GENERIC` answers: no socket frame is an ask, Yjs roots are read by inference, no
registration is recognised. The proxy, parity and the mirror queue import this module, never
backend code (``tests/test_import_graph.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Literal, Protocol

from banyan import ydoc
from banyan.logs import get_logger

GROUP = "banyan.application"
log = get_logger("banyan.application")


SocketKind = Literal["turns", "document", "subscriptions"]


@dataclass(frozen=True, slots=True)
class Socket:
    """A WebSocket path of a kind the proxy knows: ``key`` is its session or room ("" if none)."""

    kind: SocketKind
    key: str = ""


class Application(Protocol):
    name: str
    document_schema: ydoc.Schema

    def socket(self, path: str) -> Socket | None:
        """The kind of socket at ``path``, None for one the proxy only relays."""
        ...

    def shared_line(self, path: str) -> str | None:
        """The line all users' copies to ``path`` share besides their own, if any."""
        ...

    def turn_messages_path(self, session: str) -> str:
        """Where the messages of a turn of ``session`` are appended (``POST``, one at a time)."""
        ...

    def ask_turn(self, frame: str, asked: int) -> str | None:
        """The id of the turn a client's text ``frame`` asks for, None when it asks for none.
        ``asked``: the asks on this socket so far, this one included (a turn without an id of
        its own is numbered by it, as the server numbers it)."""
        ...

    def turn_key(self, session: str, seq: int) -> str:
        """The key a turn's message at ``seq`` of ``session`` is stored under."""
        ...

    def registered_user(self, path: str, body: bytes) -> str | None:
        """The id of the user a write to ``path`` with ``body`` registers, if it is a
        registration."""
        ...


class Generic:
    """An application Banyan knows nothing particular of."""

    name = "generic"
    document_schema: ydoc.Schema = {}

    def socket(self, path: str) -> Socket | None:
        return None

    def shared_line(self, path: str) -> str | None:
        return None

    def turn_messages_path(self, session: str) -> str:
        return f"/sessions/{session}/messages"  # never asked: no socket here has turns

    def ask_turn(self, frame: str, asked: int) -> str | None:
        return None

    def turn_key(self, session: str, seq: int) -> str:
        return f"turn:{session}:{seq}"

    def registered_user(self, path: str, body: bytes) -> str | None:
        return None


GENERIC = Generic()


@functools.cache
def plugged() -> Application:
    """The installed application's object (the first entry point of :data:`GROUP` by name), else
    :data:`GENERIC`. Read once per process."""
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        try:
            found: Application = point.load()
        except (ImportError, AttributeError) as exc:
            log.warning("application_plugin_unusable", entry_point=point.value, error=str(exc))
            continue
        return found
    log.info("application_not_plugged", group=GROUP, reason="no usable entry point: generic")
    return GENERIC

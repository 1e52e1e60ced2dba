"""Socket taps: one per socket kind the shadow compares, on a shared :class:`SocketTap`."""

from __future__ import annotations

from banyan.application import plugged
from banyan.proxy.shadow.taps.base import FALLBACK_FRAMES, Outgoing, SocketTap, TapHost
from banyan.proxy.shadow.taps.live import LiveTap
from banyan.proxy.shadow.taps.tutor import TutorTap
from banyan.proxy.shadow.taps.whiteboard import WhiteboardTap

__all__ = [
    "FALLBACK_FRAMES",
    "LiveTap",
    "Outgoing",
    "SocketTap",
    "TapHost",
    "TutorTap",
    "WhiteboardTap",
    "tap_class",
]


def tap_class(path: str) -> type[SocketTap] | None:
    """The tap for a socket at ``path`` (by its kind, :mod:`banyan.application`), or None for a
    socket the shadow does not compare."""
    socket = plugged().socket(path)
    return None if socket is None else TAPS[socket.kind]


TAPS: dict[str, type[SocketTap]] = {
    "turns": TutorTap,
    "document": WhiteboardTap,
    "subscriptions": LiveTap,
}

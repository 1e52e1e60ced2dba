"""The order of a caller's copies (banyan/proxy/shadow/order.py) and which tap a socket gets."""

from __future__ import annotations

import asyncio

from banyan.proxy.fence import WriteFence
from banyan.proxy.shadow import LiveTap, TutorTap, WhiteboardTap
from banyan.proxy.shadow.order import Reservation, hold, lines_of, pending, sampled
from banyan.proxy.shadow.taps import tap_class


def test_sampling_is_decided_by_the_request_id() -> None:
    assert sampled("r1", 100) and not sampled("r1", 0)
    ids = [f"req-{n}" for n in range(2000)]
    half = [i for i in ids if sampled(i, 50)]
    assert half == [i for i in ids if sampled(i, 50)]  # the same id, the same answer
    assert 800 < len(half) < 1200
    assert [i for i in ids if sampled(i, 50, "noise")] != half  # a salt draws another share


def test_a_whiteboard_copy_joins_its_rooms_line_too() -> None:
    caller = ("u1", "10.0.0.1")
    assert lines_of("/api/notes", caller) == [caller]
    room = ("whiteboard:room-7", "")
    assert lines_of("/api/whiteboard/room-7/snapshot", caller) == [caller, room]
    assert lines_of("/ws/whiteboard/room-7", caller) == [caller, room]


async def test_a_reservation_holds_every_line_until_given_up() -> None:
    fence = WriteFence()
    lines = [("u1", ""), ("whiteboard:r", "")]
    release = hold(fence, "new", lines)
    lapse = asyncio.get_running_loop().call_later(60, release)
    reservation = Reservation(pending(fence, "new", lines), release, lapse, ("u1", ""))
    assert len(pending(fence, "new", lines)) == 2 and pending(fence, "legacy", lines) == []
    reservation.take_over()  # the comparison now owns the place: still held
    assert len(pending(fence, "new", lines)) == 2
    reservation.cancel()
    assert pending(fence, "new", lines) == [] and lapse.cancelled()


def test_each_socket_kind_has_its_tap() -> None:
    assert tap_class("/ws/tutor/s1") is TutorTap
    assert tap_class("/ws/whiteboard/room") is WhiteboardTap
    assert tap_class("/ws/live") is LiveTap
    assert tap_class("/ws/other") is None and tap_class("/ws/live/x") is None

"""The benches' shared helpers: the balanced orders their rounds take their runs in."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from bench.common import balanced_orders


@pytest.mark.parametrize("count", range(1, 9))
def test_every_run_holds_every_place_and_follows_every_other_run_equally_often(
    count: int,
) -> None:
    orders = balanced_orders(count)
    assert len(orders) == (2 * count if count % 2 else count)
    assert all(sorted(order) == list(range(count)) for order in orders)
    places = Counter((run, place) for order in orders for place, run in enumerate(order))
    assert len(places) == count * count and len(set(places.values())) == 1
    follows = Counter(pair for order in orders for pair in pairwise(order))
    assert len(follows) == count * (count - 1) and len(set(follows.values())) <= 1


def test_five_runs_take_ten_orders_each_starting_with_another_run() -> None:
    orders = balanced_orders(5)
    assert orders[0] == [0, 1, 4, 2, 3]
    assert [order[0] for order in orders] == [0, 1, 2, 3, 4, 3, 4, 0, 1, 2]

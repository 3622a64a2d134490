"""One side of the order book on its own: the best level it remembers is always the best level
there is, through adds, cancels, fills of the front order and the heap's compaction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.engine.accounts import Account, Position
from sandbox.engine.book import BookSide, Order

from .conftest import BTC, make_exchange

# (the book never looks at an order's account or position; compiled, they must be real ones)
_MARKET = make_exchange().markets[BTC]
_OWNER = Account("a")
_POS = Position(_MARKET, 1, 0)


def _order(order_id: int, side: int, price: int, qty: int) -> Order:
    return Order(order_id, BTC, side, price, qty, "LIMIT", "GTC", False, None, "X", 0, _OWNER, _POS)


def _expected_best(side: BookSide) -> int | None:
    prices = [level.price for level in side.levels.values()]
    if not prices:
        return None
    return min(prices) if side.sign > 0 else max(prices)


# (op, price): 0 = add at price, 1 = cancel a resting order picked by price, 2 = fill the
# best level's front order
OPS = st.lists(st.tuples(st.integers(0, 2), st.integers(90, 110)), max_size=300)


@pytest.mark.parametrize("sign", [1, -1])
@given(ops=OPS)
def test_best_is_always_the_best_level(sign: int, ops: list[tuple[int, int]]) -> None:
    side = BookSide(sign)
    resting: list[Order] = []
    next_id = 1
    for op, price in ops:
        if op == 0 or not resting:
            order = _order(next_id, -sign, price, 1 + price % 3)
            next_id += 1
            side.add(order)
            resting.append(order)
        elif op == 1:
            order = resting.pop(price % len(resting))
            side.remove(order)
        else:
            level = side.best()
            assert level is not None
            front = level.front()
            assert front is not None
            level.qty -= front.remaining  # (the engine's _fill does this part)
            front.remaining = 0
            side.pop_filled_front(level)
            resting.remove(front)
        best = side.best()
        assert (best.price if best is not None else None) == _expected_best(side)
        if best is not None:
            assert side.levels[best.key] is best and best.live > 0


def test_best_survives_compaction_of_a_heap_full_of_stale_keys() -> None:
    side = BookSide(1)
    keep = _order(1, -1, 500, 1)
    side.add(keep)
    for i in range(300):  # levels that come and go, each leaving a key behind in the heap
        order = _order(2 + i, -1, 1_000 + i, 1)
        side.add(order)
        side.remove(order)
    assert len(side._heap) < 2 * len(side.levels) + 66  # compacted on the way
    best = side.best()
    assert best is not None and best.price == 500
    side.remove(keep)
    assert side.best() is None

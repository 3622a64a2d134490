"""A bare price-time priority order book: the baseline the engine is measured against.

Ints only (price in ticks, quantity in lots); no fees, margin, accounts, validation or events.
It is written to be fast, not slow on purpose - the structure a competent engineer would pick:

* each side is a dict ``key -> Level`` plus a heap of keys (``price`` for asks, ``-price`` for
  bids), so the best level is ``heap[0]`` and a new level costs O(log n);
* a level is a FIFO ``deque`` of orders with its live quantity and live order count;
* cancel is O(1) and lazy: the order is marked dead (``remaining = 0``) and skipped when it
  reaches the front; a level with no live order is dropped from the dict at once and its heap
  key discarded lazily (the heap is rebuilt if stale keys pile up);
* a marketable order sweeps levels best-first up to its limit price.
"""

from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush


class BareOrder:
    __slots__ = ("id", "price", "remaining", "side")

    def __init__(self, order_id: int, side: int, price: int, qty: int) -> None:
        self.id = order_id
        self.side = side
        self.price = price
        self.remaining = qty  # 0 once filled or canceled (a dead slot in its level's deque)


class BareLevel:
    __slots__ = ("live", "orders", "price", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[BareOrder] = deque()
        self.qty = 0
        self.live = 0


class BareSide:
    """One side; ``sign`` is +1 for asks (lowest first) and -1 for bids (highest first)."""

    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[int, BareLevel] = {}
        self.heap: list[int] = []

    def best(self) -> BareLevel | None:
        heap, levels = self.heap, self.levels
        while heap:
            level = levels.get(heap[0])
            if level is not None:
                return level
            heappop(heap)
        return None

    def depth(self) -> list[tuple[int, int]]:
        """Every ``(price, qty)`` level, best first."""
        return [(self.levels[k].price, self.levels[k].qty) for k in sorted(self.levels)]


class BareBook:
    """Both sides of one market, plus the running totals the benchmark checks."""

    __slots__ = ("asks", "bids", "orders", "traded_qty", "trades")

    def __init__(self) -> None:
        self.bids = BareSide(-1)
        self.asks = BareSide(1)
        self.orders: dict[int, BareOrder] = {}  # resting orders by id
        self.traded_qty = 0
        self.trades = 0

    def add(self, order_id: int, side: int, price: int, qty: int) -> None:
        """Rest a (non-crossing) limit order at the back of its level."""
        book_side = self.bids if side > 0 else self.asks
        key = book_side.sign * price
        levels = book_side.levels
        level = levels.get(key)
        if level is None:
            level = levels[key] = BareLevel(price)
            heap = book_side.heap
            heappush(heap, key)
            if len(heap) > 2 * len(levels) + 64:
                book_side.heap = heap = list(levels)
                heapify(heap)
        order = BareOrder(order_id, side, price, qty)
        level.orders.append(order)
        level.qty += qty
        level.live += 1
        self.orders[order_id] = order

    def cancel(self, order_id: int) -> bool:
        """Cancel a resting order; False if it is not resting (filled or unknown)."""
        order = self.orders.pop(order_id, None)
        if order is None:
            return False
        book_side = self.bids if order.side > 0 else self.asks
        key = book_side.sign * order.price
        level = book_side.levels[key]
        level.qty -= order.remaining
        level.live -= 1
        order.remaining = 0
        if level.live == 0:
            del book_side.levels[key]
        return True

    def take(self, side: int, limit: int, qty: int) -> int:
        """Sweep the opposite side up to ``limit`` for at most ``qty``; return the quantity
        filled. Whatever is left expires (IOC); a market order passes its protection limit."""
        book_side = self.asks if side > 0 else self.bids
        sign = book_side.sign
        limit_key = sign * limit
        levels, heap, orders_by_id = book_side.levels, book_side.heap, self.orders
        left = qty
        trades = 0
        while left and heap:
            key = heap[0]
            level = levels.get(key)
            if level is None:  # stale key of a level that emptied
                heappop(heap)
                continue
            if key > limit_key:
                break
            orders = level.orders
            while left:
                maker = orders[0]
                remaining = maker.remaining
                if remaining == 0:  # canceled earlier
                    orders.popleft()
                    continue
                trades += 1
                if remaining > left:
                    maker.remaining = remaining - left
                    level.qty -= left
                    left = 0
                    break
                left -= remaining
                level.qty -= remaining
                maker.remaining = 0
                orders.popleft()
                del orders_by_id[maker.id]
                level.live -= 1
                if level.live == 0:
                    del levels[key]
                    heappop(heap)
                    break
        filled = qty - left
        self.traded_qty += filled
        self.trades += trades
        return filled

    def best_bid(self) -> int | None:
        level = self.bids.best()
        return level.price if level is not None else None

    def best_ask(self) -> int | None:
        level = self.asks.best()
        return level.price if level is not None else None

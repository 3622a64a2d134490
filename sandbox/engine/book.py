"""Order book with price-time priority.

Each side keeps a dict of price levels and a heap of level keys (price for asks, -price for
bids) to find the best level in O(log n), and remembers the best level until it goes. A level
is a FIFO of orders; cancellation is lazy (the order is marked dead and skipped when it reaches
the front) so cancel is O(1). A level with no live orders is removed at once, so ``levels``
only ever holds levels with resting quantity.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Final

from mypy_extensions import i64, mypyc_attr

if TYPE_CHECKING:  # (accounts.py imports this module)
    from .accounts import Account, Position

# The heap functions as constants: compiled code reads a Final from a C static, a plain global
# from the module's dict on each call.
_HEAPPUSH: Final = heapq.heappush
_HEAPPOP: Final = heapq.heappop

# order.status values
NEW: Final = "NEW"
PARTIALLY_FILLED: Final = "PARTIALLY_FILLED"
FILLED: Final = "FILLED"
CANCELED: Final = "CANCELED"
EXPIRED: Final = "EXPIRED"


@mypyc_attr(acyclic=True)
class Order:
    """An order as the engine keeps it (ticks, lots). ``live`` while it rests in the book;
    a cancelled or expired order keeps the ``remaining`` it had when it left. ``owner`` and
    ``pos`` are its account (``account`` is its id) and that account's position in the order's
    market. ``key`` is ``id`` as one Python int object, the key of every dict of orders by id
    (None once the order is finished): compiled code would otherwise create an int object for
    each dict operation, and the dict compare it by value.

    Compiled, orders are not tracked by the cyclic garbage collector (``acyclic``): they are
    most of the engine's long-lived objects, and young-generation passes over them cost about
    a quarter of its time. Their back-references (``owner``, ``pos``, ``level``) do make cycles
    with the containers that hold them; ``Exchange.__del__`` breaks those. Compiled, an order
    is 176 bytes: a field less and the three flags side by side, where 192 bytes (pymalloc's
    size class, whose blocks all start 48 bytes into a cache line) spanned four lines each.
    The fields are laid out in the order ``__init__`` assigns them; ``_warm_forgotten`` (in
    exchange.py) reads one in every 64 bytes, and ``tests/engine/test_memory.py`` checks that
    it still does against the build's layout."""

    __slots__ = (
        "client_id",
        "done_ts",
        "filled",
        "id",
        "key",
        "level",
        "live",
        "market",
        "order_type",
        "owner",
        "pos",
        "price",
        "qty",
        "reduce_only",
        "remaining",
        "side",
        "status",
        "stp",
        "superseded",
        "tif",
        "ts",
    )

    def __init__(
        self,
        order_id: int,
        market: str,
        side: i64,
        price: i64,
        qty: i64,
        order_type: str,
        tif: str,
        reduce_only: bool,
        client_id: str | None,
        stp: str,
        ts: int,
        owner: Account,
        pos: Position,
    ) -> None:
        self.id = order_id
        self.key: Any = order_id
        self.level: Level | None = None  # its price level while it rests in the book
        self.market = market
        self.side = side
        self.price = price
        self.qty = qty
        self.remaining = qty
        self.filled: i64 = 0
        self.order_type = order_type
        self.tif = tif
        self.reduce_only = reduce_only
        self.live = False  # (next to reduce_only: compiled, the flags share 8 bytes)
        # Its client id was taken over by a newer order of the account, after this one had
        # expired from the recent window: forgetting it must leave the id to that order.
        self.superseded = False
        self.client_id = client_id
        self.stp = stp
        self.ts = ts
        self.owner = owner
        self.pos = pos
        self.done_ts = 0
        self.status = NEW

    def requeued(self, *, price: int, qty: int, ts: int) -> Order:
        """A copy with a new price and total quantity, queued afresh (loses time priority)."""
        order = Order(
            self.id,
            self.market,
            self.side,
            price,
            qty,
            self.order_type,
            self.tif,
            self.reduce_only,
            self.client_id,
            self.stp,
            ts,
            self.owner,
            self.pos,
        )
        order.filled = self.filled
        order.remaining = qty - self.filled
        order.status = self.status
        return order

    @property
    def account(self) -> str:
        """The owning account's id."""
        return self.owner.id

    def __repr__(self) -> str:
        side = "BUY" if self.side > 0 else "SELL"
        return (
            f"Order(id={self.id}, {self.account}, {self.market}, {side} "
            f"{self.remaining}/{self.qty} @ {self.price}, {self.status})"
        )


class Level:
    """Orders resting at one price, oldest first; ``qty`` and ``live`` count only live orders.

    The queue is ``orders[head:]``: taking the front order moves ``head`` on (a list with a
    moving head is cheaper than a deque in compiled code), and the list drops its taken prefix
    once that is most of it. Orders before ``head`` are never live.
    """

    __slots__ = ("head", "key", "live", "orders", "price", "qty")

    def __init__(self, price: i64, key: Any) -> None:
        self.price = price
        self.key = key  # its key in BookSide.levels, as that int object
        self.orders: list[Order] = []
        self.head: i64 = 0
        self.qty: i64 = 0
        self.live: i64 = 0

    def front(self) -> Order | None:
        """The oldest live order (dropping cancelled ones from the front), or None."""
        orders = self.orders
        head = self.head
        while head < len(orders):
            order = orders[head]
            if order.live:
                self._move_head(head)
                return order
            head += 1
        self._move_head(head)
        return None

    def take_front(self) -> Order:
        """Remove and return the front order."""
        order = self.orders[self.head]
        self._move_head(self.head + 1)
        return order

    def _move_head(self, head: i64) -> None:
        """Start the queue at ``head``; drop the taken prefix once it is most of the list."""
        if head >= 64 and head * 2 >= len(self.orders):
            del self.orders[:head]
            head = 0
        self.head = head


class BookSide:
    """One side of a book. ``sign`` is +1 for asks (lowest first), -1 for bids (highest first)."""

    __slots__ = ("_best", "_best_known", "_heap", "_in_heap", "levels", "sign")

    def __init__(self, sign: i64) -> None:
        self.sign = sign
        self.levels: dict[int, Level] = {}  # key = sign * price
        self._heap: list[int] = []
        self._in_heap: set[int] = set()
        # The best level (None: the side is empty) while ``_best_known``; a new level that
        # is better replaces it, and it is looked up again once it leaves the book.
        self._best: Level | None = None
        self._best_known = True

    def best(self) -> Level | None:
        """The best level, or None if the side is empty."""
        if self._best_known:
            return self._best
        heap: list[Any] = self._heap  # (items read as the int objects they are: no re-boxing)
        levels = self.levels
        best = None
        while heap:
            best = levels.get(heap[0])
            if best is not None:
                break
            self._in_heap.discard(_HEAPPOP(heap))
        self._best = best
        self._best_known = True
        return best

    def add(self, order: Order) -> None:
        """Append ``order`` at the back of its price level."""
        price = order.price
        key: Any = price if self.sign > 0 else -price  # one int object for all the uses below
        levels = self.levels
        level = levels.get(key)
        if level is None:
            level = levels[key] = Level(price, key)
            if self._best_known:
                best = self._best
                if best is None or (price < best.price if self.sign > 0 else price > best.price):
                    self._best = level
            in_heap = self._in_heap
            if key not in in_heap:
                in_heap.add(key)
                _HEAPPUSH(self._heap, key)
                if len(self._heap) > 2 * len(levels) + 64:
                    self._compact()
        level.orders.append(order)
        level.qty += order.remaining
        level.live += 1
        order.live = True
        order.level = level

    def remove(self, order: Order) -> None:
        """Take a live order out of the book (lazily: its slot is skipped later)."""
        level = order.level
        assert level is not None, "not in the book"
        order.live = False
        order.level = None
        level.qty -= order.remaining
        level.live -= 1
        if level.live == 0:
            self._drop(level)

    def reduce(self, order: Order, by: i64) -> None:
        """Lower a live order's remaining quantity in place (keeps its priority)."""
        level = order.level
        assert level is not None, "not in the book"
        level.qty -= by
        order.remaining -= by

    def pop_filled_front(self, level: Level) -> None:
        """Drop the filled front order of ``level``; remove the level if it is now empty."""
        order = level.take_front()
        order.live = False
        order.level = None
        level.live -= 1
        if level.live == 0:
            self._drop(level)

    def _drop(self, level: Level) -> None:
        """Remove an emptied level (its heap key goes lazily, when it reaches the top)."""
        del self.levels[level.key]
        if level is self._best:
            self._best_known = False

    def _compact(self) -> None:
        self._heap = list(self.levels)
        heapq.heapify(self._heap)
        self._in_heap = set(self._heap)

    def sorted_levels(self) -> list[Level]:
        """All levels, best first."""
        return [self.levels[key] for key in sorted(self.levels)]

    def depth(self, limit: int) -> list[tuple[int, int]]:
        """``(price, qty)`` of the best ``limit`` levels."""
        keys = sorted(self.levels)[:limit] if limit < len(self.levels) else sorted(self.levels)
        return [(self.levels[k].price, self.levels[k].qty) for k in keys]


class Book:
    """Both sides of one market's book."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids = BookSide(-1)
        self.asks = BookSide(1)

    def side(self, side: int) -> BookSide:
        """The side an order of ``side`` rests on (+1 buy -> bids)."""
        return self.bids if side > 0 else self.asks

    def best_bid(self) -> int | None:
        level = self.bids.best()
        return level.price if level is not None else None

    def best_ask(self) -> int | None:
        level = self.asks.best()
        return level.price if level is not None else None

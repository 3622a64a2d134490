"""Accounts: collateral, positions per market, open orders, and the margin they consume.

All money is ``int`` units of 1e-8 USDT. A position keeps its signed size (lots) and its signed
``cost``, the entry notional still open (positive for a long). Closing ``c`` lots of a position
of size ``s`` releases ``cost * c / |s|`` of it (rounded toward zero; the whole cost when the
position closes), and the fill realizes ``exit_notional - released`` for a long and
``released - exit_notional`` for a short. Because the same released amount leaves ``cost`` and
enters collateral, ``collateral - cost`` moves by exactly the traded notional: cash is conserved
to the unit across the two sides of every trade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from mypy_extensions import i64

from .book import Order

if TYPE_CHECKING:  # (exchange.py imports this module)
    from .exchange import Market


class Position:
    """An account's state in one market: position, leverage, and aggregates of its open orders.

    ``buy_qty``/``buy_value`` (and sell) sum the remaining quantity and ``price * qty`` (ticks x
    lots) of the open orders that are not reduce-only; ``reserve`` is the initial margin they
    hold (see :func:`order_reserve`). ``market`` is the market it is in.
    """

    __slots__ = (
        "buy_qty",
        "buy_value",
        "cost",
        "held",
        "leverage",
        "market",
        "max_exposure",
        "open_orders",
        "realized_pnl",
        "reduce_only_orders",
        "reserve",
        "sell_qty",
        "sell_value",
        "size",
        "stored",
    )

    def __init__(self, market: Market, leverage: int, max_exposure: int) -> None:
        self.market = market
        self.size = 0
        self.cost = 0
        self.realized_pnl = 0
        self.leverage = leverage
        self.max_exposure = max_exposure
        self.buy_qty: i64 = 0
        self.buy_value = 0
        self.sell_qty: i64 = 0
        self.sell_value = 0
        self.reserve = 0
        self.open_orders: i64 = 0
        self.reduce_only_orders: i64 = 0
        self.stored = False  # in its account's ``positions`` (a new one is not, until used)
        self.held = False  # its account is in its market's ``holders`` (size != 0)


class LiquidationState:
    """An account being liquidated: when it started and when its next step may run."""

    __slots__ = ("next_step_ts", "started_ts", "steps")

    def __init__(self, now: int) -> None:
        self.started_ts = now
        self.next_step_ts = now
        self.steps = 0


class Account:
    """Collateral, positions, open orders and recent client order ids of one account.

    The exchange's margin-check bookkeeping lives on the account too, as flags rather than
    dicts keyed by account id (a dict operation costs more than the check it guards):
    ``dirty`` - queued for the check at the end of the command; ``reindex`` - evaluated since
    the last mark move, so its risk triggers are recomputed at the next one; ``called`` - in
    margin-call state; ``liquidation`` - its liquidation, while one runs (also in the
    exchange's ``_liquidating``, which keeps them in start order)."""

    __slots__ = (
        "called",
        "client_ids",
        "collateral",
        "dirty",
        "done",
        "done_count",
        "done_head",
        "forgotten_count",
        "id",
        "insurance",
        "liquidation",
        "oldest_done_ts",
        "open_orders",
        "position_list",
        "positions",
        "reindex",
        "reserve",
    )

    def __init__(self, account_id: str) -> None:
        self.id = account_id
        self.insurance = False  # an insurance fund: the exchange's, closed to commands
        self.collateral = 0
        self.positions: dict[str, Position] = {}
        # The same positions in a list, in the same order: the margin checks walk it (compiled,
        # walking a list is a primitive loop; a dict's values go through CPython's iteration).
        self.position_list: list[Position] = []
        self.reserve = 0  # sum of Position.reserve
        self.open_orders: dict[int, Order] = {}
        # Recently finished orders: a ring, ``done_count`` of them from ``done_head`` on (see
        # ``finished``). The ``forgotten_count`` slots just before ``done_head`` hold orders no
        # longer remembered whose client ids are still in ``client_ids``: they are let go a
        # batch at a time (see ``Exchange._release_forgotten``). Every other slot is None.
        self.done: list[Order | None] = []
        self.done_head = 0
        self.done_count = 0
        self.forgotten_count = 0
        # At most the done_ts of the first order in ``finished`` (when not empty): a lower bound,
        # made exact when it says that order may have expired (forgetting the oldest by count
        # does not read the next one, long out of cache, for its time).
        self.oldest_done_ts = 0
        self.client_ids: dict[str, Order] = {}  # open and recent orders by client id
        self.dirty = False
        self.reindex = False
        self.called = False
        self.liquidation: LiquidationState | None = None

    @property
    def finished(self) -> list[Order]:
        """The recently finished orders, oldest first (a new list). The engine keeps them in a
        ring, a list that stops growing at ``recent_orders`` plus a batch of forgotten orders
        less one (``forget_batch``), whose free slots finishing orders take: compiled, reading
        and writing a list by index are primitives, where a deque's methods are generic calls;
        and nothing in it is ever moved except when it grows."""
        done, head = self.done, self.done_head
        end = head + self.done_count
        ring = done[head:end] if end <= len(done) else done[head:] + done[: end - len(done)]
        return cast("list[Order]", ring)  # (the slots in that range all hold an order)

    @property
    def forgotten(self) -> list[Order]:
        """The orders forgotten but not yet let go, oldest first (a new list). Not remembered:
        a client id one of them holds is free to take over."""
        done, count = self.done, self.forgotten_count
        start = self.done_head - count
        ring = done[start : self.done_head] if start >= 0 else done[start:] + done[: self.done_head]
        return cast("list[Order]", ring)

    @property
    def recent(self) -> dict[int, Order]:
        """The recently finished orders by id, oldest first: a new dict on each call (made for
        order queries; the engine itself keeps no index by id, which every finishing order
        would pay for)."""
        return {order.id: order for order in self.finished}

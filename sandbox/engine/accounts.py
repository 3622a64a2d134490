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

from collections import OrderedDict

from perpbot.risk.margin import Bracket

from .book import Order


class Position:
    """An account's state in one market: position, leverage, and aggregates of its open orders.

    ``buy_qty``/``buy_value`` (and sell) sum the remaining quantity and ``price * qty`` (ticks x
    lots) of the open orders that are not reduce-only; ``reserve`` is the initial margin they
    hold (see :func:`order_reserve`).
    """

    __slots__ = (
        "buy_qty",
        "buy_value",
        "cost",
        "leverage",
        "max_exposure",
        "open_orders",
        "realized_pnl",
        "reduce_only_orders",
        "reserve",
        "sell_qty",
        "sell_value",
        "size",
    )

    def __init__(self, leverage: int, max_exposure: int) -> None:
        self.size = 0
        self.cost = 0
        self.realized_pnl = 0
        self.leverage = leverage
        self.max_exposure = max_exposure
        self.buy_qty = 0
        self.buy_value = 0
        self.sell_qty = 0
        self.sell_value = 0
        self.reserve = 0
        self.open_orders = 0
        self.reduce_only_orders = 0


def order_reserve(
    size: int,
    buy_qty: int,
    buy_value: int,
    sell_qty: int,
    sell_value: int,
    leverage: int,
    factor: int,
) -> int:
    """Initial margin held by a market's open (non-reduce-only) orders, in money units.

    Only the quantity that would *increase* exposure is margined: buy orders beyond what would
    close a short, sell orders beyond what would close a long, each valued at the orders' average
    price. Both sides cannot be filled into exposure at once, so the larger of the two is held:
    ``ceil(max(buy_excess_value, sell_excess_value) * factor / leverage)``.
    """
    buy = 0  # -((-a) // b) is ceil(a / b), inlined: this runs for every order
    if buy_qty:
        excess = buy_qty + size if size < 0 else buy_qty
        if excess > 0:
            buy = -((-buy_value * excess * factor) // (buy_qty * leverage))
    sell = 0
    if sell_qty:
        excess = sell_qty - size if size > 0 else sell_qty
        if excess > 0:
            sell = -((-sell_value * excess * factor) // (sell_qty * leverage))
    return buy if buy > sell else sell


def max_notional_at(brackets: tuple[Bracket, ...], leverage: int) -> int:
    """Largest position notional allowed at ``leverage`` (the highest cap whose bracket allows
    that leverage); 0 if no bracket does."""
    best = 0
    for bracket in brackets:
        if bracket.max_leverage >= leverage:
            best = bracket.notional_cap
    return best


class Account:
    """Collateral, positions, open orders and recent client order ids of one account."""

    __slots__ = ("client_ids", "collateral", "id", "open_orders", "positions", "recent", "reserve")

    def __init__(self, account_id: str) -> None:
        self.id = account_id
        self.collateral = 0
        self.positions: dict[str, Position] = {}
        self.reserve = 0  # sum of Position.reserve
        self.open_orders: dict[int, Order] = {}
        self.recent: OrderedDict[int, Order] = OrderedDict()  # finished orders, oldest first
        self.client_ids: dict[str, Order] = {}  # open and recent orders by client id

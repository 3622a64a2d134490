"""Background liquidity: market-making agents that keep a two-sided book around the index.

An agent quotes ``levels`` post-only orders per side around a centre price: the market's index,
shifted against its inventory (long -> lower quotes, so it sells more and buys less). Level ``i``
(0 = best) sits ``first_gap_bps * gap_growth**i`` basis points from the centre and is
``base_notional * (1 + i)**size_exponent`` large: gaps and sizes both grow with depth, so the
book is tight and thin at the top and deep further out, like a real venue.

The agent is nearly stateless: every call reads the engine through its query methods
(``account_view``, ``prices``, ``open_orders``, ``book_snapshot``; ``get_order`` to keep client
ids fresh) and answers with the commands that move its resting orders to the targets. Only
levels whose target moved by more than ``requote_fraction`` of their distance from the centre,
that were (partly) filled, or that must shrink are touched, so a quiet market costs nothing.

Every command is built to be accepted: prices on tick and inside the mark's price band, sizes
in lots and above the minimum quantity and notional, post-only prices that never cross the
other accounts' orders (nor the ``others`` quotes of agents submitted before it) or its own,
and a command order in which no intermediate state crosses itself or breaks the position or
margin limits. Orders that do not fit the margin (an under-funded agent) are skipped, not sent.

Inventory is bounded hard: resting bids never exceed ``limit - position`` and asks never
``limit + position`` (signed position), with ``limit`` the profile's ``max_inventory`` or the
bracket's position limit at the current mark if lower, so fills cannot carry it past ``limit``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from perpbot.risk.margin import MONEY_SCALE, RATE_SCALE, ceil_div, max_notional_at, order_reserve
from sandbox.engine.book import Order
from sandbox.engine.codes import EngineError
from sandbox.engine.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    Deposit,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
)
from sandbox.engine.exchange import Exchange
from sandbox.engine.instruments import Instrument

__all__ = [
    "DEFAULT_AGENT_COLLATERAL",
    "NO_QUOTES",
    "PROFILES",
    "THICK",
    "THIN",
    "LiquidityAgent",
    "LiquidityProfile",
    "Quotes",
    "funding_commands",
    "tighter_quotes",
]

BPS = 10_000.0
DEFAULT_AGENT_COLLATERAL = 100_000_000 * MONEY_SCALE
"""What :func:`funding_commands` deposits per agent account: 100 million USDT."""

Quotes = tuple[int | None, int | None]
"""``(best bid, best ask)`` in ticks; ``None`` for an empty side."""
NO_QUOTES: Quotes = (None, None)

_CLIENT_ID = re.compile(r"([ab])(\d{1,3})-\d+")


@dataclass(frozen=True, slots=True)
class LiquidityProfile:
    """The shape and behaviour of one agent's quotes (notionals in USDT, distances in bps).

    ``levels`` per side; level ``i`` at ``first_gap_bps * gap_growth**i`` from the centre
    (rounded to ticks, strictly increasing) with ``base_notional * (1 + i)**size_exponent`` of
    size (converted to lots once, at the agent's reference price). ``max_inventory_notional``
    bounds the position; at that bound the centre is ``skew_bps`` below (long) or above (short)
    the index, proportionally in between. A level is requoted when its target moved more than
    ``requote_fraction`` of its distance from the centre, or its remaining size fell below
    ``refill_fraction`` of the target.
    """

    levels: int
    first_gap_bps: float
    gap_growth: float
    base_notional: Decimal
    size_exponent: float
    max_inventory_notional: Decimal
    skew_bps: float
    requote_fraction: float = 0.25
    refill_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 99:
            raise ValueError("levels must be in [1, 99] (the engine allows 200 open orders)")
        if not (math.isfinite(self.first_gap_bps) and self.first_gap_bps > 0):
            raise ValueError("first_gap_bps must be positive")
        if not (math.isfinite(self.gap_growth) and self.gap_growth >= 1):
            raise ValueError("gap_growth must be >= 1")
        if not (math.isfinite(self.size_exponent) and self.size_exponent >= 0):
            raise ValueError("size_exponent must be >= 0")
        if not (self.base_notional.is_finite() and self.base_notional > 0):
            raise ValueError("base_notional must be positive")
        if not (self.max_inventory_notional.is_finite() and self.max_inventory_notional > 0):
            raise ValueError("max_inventory_notional must be positive")
        if not (math.isfinite(self.skew_bps) and self.skew_bps >= 0):
            raise ValueError("skew_bps must be >= 0")
        if not 0 < self.requote_fraction < 1:
            raise ValueError("requote_fraction must be in (0, 1)")
        if not 0 <= self.refill_fraction <= 1:
            raise ValueError("refill_fraction must be in [0, 1]")

    def offsets(self, fair_ticks: int) -> list[int]:
        """Distance of each level from ``fair_ticks``, in ticks: >= 1, strictly increasing."""
        out: list[int] = []
        previous = 0
        for i in range(self.levels):
            distance = round(fair_ticks * self.first_gap_bps * self.gap_growth**i / BPS)
            previous = max(distance, previous + 1)
            out.append(previous)
        return out

    def sizes(self, instrument: Instrument, reference_ticks: int) -> list[int]:
        """Each level's size in lots at ``reference_ticks``: at least the minimum quantity,
        strictly increasing when ``size_exponent`` > 0, at most the maximum quantity."""
        base = float(self.base_notional / _lot_value(instrument, reference_ticks))
        out: list[int] = []
        previous = 0
        for i in range(self.levels):
            qty = max(round(base * (1 + i) ** self.size_exponent), instrument.min_qty)
            if self.size_exponent > 0:
                qty = max(qty, previous + 1)
            previous = min(qty, instrument.max_qty)
            out.append(previous)
        return out

    def inventory_limit(self, instrument: Instrument, reference_ticks: int) -> int:
        """``max_inventory_notional`` in lots at ``reference_ticks`` (at least the minimum)."""
        lots = round(self.max_inventory_notional / _lot_value(instrument, reference_ticks))
        return max(int(lots), instrument.min_qty)


THICK = LiquidityProfile(
    levels=12,
    first_gap_bps=1.0,
    gap_growth=1.35,
    base_notional=Decimal(2_000),
    size_exponent=1.4,
    max_inventory_notional=Decimal(500_000),
    skew_bps=3.0,
)
"""A deep venue: 12 levels from 1 bp to ~27 bp, ~357k USDT a side, 500k USDT inventory."""

THIN = LiquidityProfile(
    levels=6,
    first_gap_bps=5.0,
    gap_growth=1.6,
    base_notional=Decimal(1_000),
    size_exponent=1.2,
    max_inventory_notional=Decimal(50_000),
    skew_bps=8.0,
)
"""A thin venue: 6 levels from 5 bp to ~52 bp, ~28k USDT a side, 50k USDT inventory."""

PROFILES = {"thick": THICK, "thin": THIN}
"""The presets by name."""


def _lot_value(instrument: Instrument, price_ticks: int) -> Decimal:
    """USDT value of one lot at ``price_ticks``."""
    if price_ticks <= 0:
        raise ValueError("reference price must be positive ticks")
    return instrument.price_to_decimal(price_ticks) * instrument.lot_size


def funding_commands(
    agents: Iterable[LiquidityAgent], amount: int = DEFAULT_AGENT_COLLATERAL
) -> list[Deposit]:
    """One ``Deposit`` of ``amount`` (money units) per distinct agent account, in order."""
    accounts = dict.fromkeys(agent.account for agent in agents)
    return [Deposit(account, amount) for account in accounts]


@dataclass(frozen=True, slots=True)
class _Op:
    """Move one level to ``price``/``remaining``: a place (``order`` None) or an amend.

    ``target`` is the level's target price: ``price`` differs from it only for a resize in
    place, and a place always uses it (a kept price may have left the band since)."""

    side: int
    level: int
    price: int
    remaining: int
    order: Order | None
    target: int


class LiquidityAgent:
    """One market maker in one market, trading from its own account (``mm:<symbol>``).

    ``reference_price`` (ticks, default the instrument's initial price) converts the profile's
    notionals to lots once, so sizes do not wobble with the price. Call :meth:`commands` each
    step; fund the account first (:func:`funding_commands`).
    """

    def __init__(
        self,
        instrument: Instrument,
        profile: LiquidityProfile = THICK,
        *,
        account: str | None = None,
        reference_price: int | None = None,
    ) -> None:
        reference = instrument.initial_price if reference_price is None else reference_price
        self.instrument = instrument
        self.profile = profile
        self.account = f"mm:{instrument.symbol}" if account is None else account
        self.sizes = profile.sizes(instrument, reference)
        self.max_inventory = profile.inventory_limit(instrument, reference)
        self.planned_quotes: Quotes = NO_QUOTES
        """Own best bid and ask once the last :meth:`commands` are applied."""
        self.centre_shift_bps = 0.0
        """Quote around the index shifted by this many bps (fault injection: mark divergence)."""
        self._serial = 0

    # -- the one entry point ------------------------------------------------------------------
    def commands(self, exchange: Exchange, others: Quotes = NO_QUOTES) -> list[Command]:
        """The commands that bring this agent's orders to its current targets (maybe none).

        ``others``: quotes of agents whose commands are submitted before these in the same
        batch (not yet in the book); this agent stays clear of them as it does of other
        accounts' resting orders. An unknown (unfunded) or liquidating account does nothing.
        """
        inst = self.instrument
        symbol = inst.symbol
        try:
            view = exchange.account_view(self.account)
        except EngineError:
            self.planned_quotes = NO_QUOTES
            return []
        own = exchange.open_orders(self.account, symbol)
        size, leverage = 0, inst.default_leverage
        for pos in view.positions:
            if pos.market == symbol:
                size, leverage = pos.size, pos.leverage
        prices = exchange.prices(symbol)
        mark = prices.mark
        plan = _Plan(own, size, leverage, mark, inst, view.available)
        if view.in_liquidation:  # only reduce-only orders are accepted: sit it out
            self.planned_quotes = plan.quotes()
            return []
        others = tighter_quotes(self._others_best(exchange, own), others)
        fair = prices.index
        if self.centre_shift_bps:
            fair = max(1, fair + round(fair * self.centre_shift_bps / BPS))
        targets, thresholds = self._targets(fair, mark, size, plan.max_exposure, others)

        slots: dict[tuple[int, int], Order] = {}
        cancels: list[Order] = []
        for order in own:
            key = _slot(order, self.profile.levels)
            if key is None or key in slots or key not in targets:
                cancels.append(order)
            else:
                slots[key] = order
        ops = self._ops(targets, thresholds, slots, cancels)
        return self._sequence(exchange, cancels, ops, plan)

    # -- targets ------------------------------------------------------------------------------
    def _others_best(self, exchange: Exchange, own: list[Order]) -> Quotes:
        """Best bid and ask of the other accounts' resting orders (own quantity taken out)."""
        mine: dict[tuple[int, int], int] = {}
        for order in own:
            key = (order.side, order.price)
            mine[key] = mine.get(key, 0) + order.remaining
        book = exchange.book_snapshot(self.instrument.symbol, depth=len(own) + 1)
        bid = next((p for p, q in book.bids if q > mine.get((Side.BUY, p), 0)), None)
        ask = next((p for p, q in book.asks if q > mine.get((Side.SELL, p), 0)), None)
        return bid, ask

    def _targets(
        self, fair: int, mark: int, size: int, max_exposure: int, others: Quotes
    ) -> tuple[dict[tuple[int, int], tuple[int, int]], list[int]]:
        """Target ``(price, qty)`` per ``(side, level)`` and each level's requote threshold."""
        inst, profile = self.instrument, self.profile
        ratio = max(-1.0, min(1.0, size / self.max_inventory))
        centre = fair - round(fair * profile.skew_bps * ratio / BPS)
        offsets = profile.offsets(fair)
        thresholds = [int(profile.requote_fraction * d) for d in offsets]
        band = inst.price_band
        low = max(1, ceil_div(mark * (RATE_SCALE - band), RATE_SCALE))
        high = mark * (RATE_SCALE + band) // RATE_SCALE
        limit = min(self.max_inventory, max_exposure // (mark * inst.notional_factor))
        targets: dict[tuple[int, int], tuple[int, int]] = {}
        for side in (Side.BUY, Side.SELL):
            prices = [centre - side * d for d in offsets]
            other = others[1] if side > 0 else others[0]  # the opposite side's best
            if other is not None and side * (prices[0] - other) >= 0:  # would cross: back off
                shift = side * (prices[0] - other) + 1
                prices = [p - side * shift for p in prices]
            room = limit - side * size  # resting quantity that may still add to the position
            for level, price in enumerate(prices):
                if not low <= price <= high:
                    continue
                floor = self._min_lots(price)
                qty = min(max(self.sizes[level], floor), inst.max_qty, room)
                if qty < floor:
                    break
                room -= qty
                targets[(side, level)] = (price, qty)
        return targets, thresholds

    def _min_lots(self, price: int) -> int:
        """Smallest accepted quantity at ``price``: the minimum quantity and notional."""
        inst = self.instrument
        return max(inst.min_qty, ceil_div(inst.min_notional, price * inst.notional_factor))

    def _ops(
        self,
        targets: dict[tuple[int, int], tuple[int, int]],
        thresholds: list[int],
        slots: dict[tuple[int, int], Order],
        cancels: list[Order],
    ) -> list[_Op]:
        """Places and amends for the levels that need them (cancels are appended to
        ``cancels``): a level is left alone while its price is within its threshold and its
        remaining size within ``[refill_fraction, 1]`` of the target."""
        refill = self.profile.refill_fraction
        max_qty = self.instrument.max_qty
        ops: list[_Op] = []
        for (side, level), (price, qty) in targets.items():
            order = slots.get((side, level))
            if order is None:
                ops.append(_Op(side, level, price, qty, None, price))
                continue
            new_price = price
            close = abs(int(order.price) - price) <= thresholds[level]
            if close and qty >= self._min_lots(order.price):
                if refill * qty <= int(order.remaining) <= qty:
                    continue  # keep: priority is worth more than a tick or two
                new_price = order.price  # resize in place
            if order.filled + qty > max_qty:
                cancels.append(order)
                ops.append(_Op(side, level, price, qty, None, price))
            else:
                ops.append(_Op(side, level, new_price, qty, order, price))
        return ops

    # -- command order --------------------------------------------------------------------------
    def _sequence(
        self, exchange: Exchange, cancels: list[Order], ops: list[_Op], plan: _Plan
    ) -> list[Command]:
        """Cancels first, then each time the first op the engine would accept in the planned
        state (``plan``): it does not cross the agent's own resting orders (post-only would
        refuse it), and keeps the worst-case position and the order margin within the limits.
        If no op is acceptable, the first pending amend becomes a cancel now and a place later.
        That finishes: once only places are left, the state is kept orders plus final targets,
        all on the right side of the centre and within the position limit. Only margin can
        still block a place (an under-funded agent): it is then skipped, never rejected."""
        symbol = self.instrument.symbol
        out: list[Command] = []
        for cancel in cancels:
            out.append(CancelOrder(self.account, symbol, order_id=cancel.id))
            plan.remove(cancel.id)
        pending = list(ops)
        placed = 0
        while pending:
            chosen = next((i for i, op in enumerate(pending) if plan.accepts(op)), None)
            if chosen is None:
                stuck = next((i for i, op in enumerate(pending) if op.order is not None), None)
                if stuck is None:
                    break
                op = pending[stuck]
                assert op.order is not None
                out.append(CancelOrder(self.account, symbol, order_id=op.order.id))
                plan.remove(op.order.id)
                pending[stuck] = replace(op, order=None, price=op.target)
                continue
            op = pending.pop(chosen)
            order = op.order
            if order is None:
                placed -= 1  # planned orders get negative keys until the engine numbers them
                plan.put(placed, op)
                out.append(
                    PlaceOrder(
                        account=self.account,
                        market=symbol,
                        side=Side(op.side),
                        qty=op.remaining,
                        price=op.price,
                        order_type=OrderType.LIMIT,
                        tif=TimeInForce.POST_ONLY,
                        client_id=self._client_id(exchange, op.side, op.level),
                    )
                )
            else:
                plan.put(order.id, op)
                total = order.filled + op.remaining
                out.append(
                    AmendOrder(
                        self.account,
                        symbol,
                        order_id=order.id,
                        price=None if op.price == order.price else op.price,
                        qty=None if total == order.qty else total,
                    )
                )
        self.planned_quotes = plan.quotes()
        return out

    def _client_id(self, exchange: Exchange, side: int, level: int) -> str:
        """A fresh client id ``b<level>-<n>`` / ``a<level>-<n>``, never used by the account."""
        while True:
            self._serial += 1
            client_id = f"{'b' if side > 0 else 'a'}{level}-{self._serial}"
            if exchange.get_order(self.account, client_id=client_id) is None:
                return client_id


def _slot(order: Order, levels: int) -> tuple[int, int] | None:
    """``(side, level)`` an agent order was placed for, from its client id; None if foreign."""
    match = _CLIENT_ID.fullmatch(order.client_id or "")
    if match is None:
        return None
    side = Side.BUY if match.group(1) == "b" else Side.SELL
    level = int(match.group(2))
    if side != order.side or level >= levels or order.reduce_only:
        return None
    return side, level


class _Plan:
    """The agent's orders in one market as the engine will hold them while the commands are
    applied, with the engine's acceptance rules for a post-only place or amend."""

    def __init__(
        self,
        own: list[Order],
        size: int,
        leverage: int,
        mark: int,
        instrument: Instrument,
        available: int,
    ) -> None:
        self.orders = {o.id: (o.side, o.price, o.remaining) for o in own}
        self.size = size
        self.leverage = leverage
        self.factor = instrument.notional_factor
        self.mark_value = mark * instrument.notional_factor
        self.max_exposure = max_notional_at(instrument.brackets, leverage)
        self.available = available
        self.reserve = self._reserve(self.orders)

    def _reserve(self, orders: dict[int, tuple[int, int, int]]) -> int:
        """The order margin the engine holds for ``orders`` (as ``Position.reserve``)."""
        buy_qty = buy_value = sell_qty = sell_value = 0
        for side, price, remaining in orders.values():
            if side > 0:
                buy_qty += remaining
                buy_value += price * remaining
            else:
                sell_qty += remaining
                sell_value += price * remaining
        return order_reserve(
            self.size, buy_qty, buy_value, sell_qty, sell_value, self.leverage, self.factor
        )

    def _apply(self, orders: dict[int, tuple[int, int, int]]) -> None:
        reserve = self._reserve(orders)
        self.available -= reserve - self.reserve
        self.reserve = reserve
        self.orders = orders

    def remove(self, order_id: int) -> None:
        """A cancel: always accepted."""
        orders = dict(self.orders)
        del orders[order_id]
        self._apply(orders)

    def put(self, key: int, op: _Op) -> None:
        """Apply an accepted place or amend."""
        orders = dict(self.orders)
        orders[key] = (op.side, op.price, op.remaining)
        self._apply(orders)

    def accepts(self, op: _Op) -> bool:
        """Whether the engine would accept ``op`` now (band, size and notional are the
        targets' business): no post-only cross with an own order, worst-case position within
        the bracket limit, and any extra order margin within the available balance."""
        orders = dict(self.orders)
        if op.order is not None:
            del orders[op.order.id]
        moves = op.order is None or op.price != op.order.price
        if moves and any(
            side != op.side and (op.price - price) * op.side >= 0
            for side, price, _ in orders.values()
        ):
            return False
        orders[0] = (op.side, op.price, op.remaining)
        buy = sum(r for side, _, r in orders.values() if side > 0)
        sell = sum(r for side, _, r in orders.values() if side < 0)
        if max(abs(self.size + buy), abs(self.size - sell)) * self.mark_value > self.max_exposure:
            return False
        required = self._reserve(orders) - self.reserve
        return required <= 0 or required <= self.available

    def quotes(self) -> Quotes:
        """Best own bid and ask in the planned state."""
        bids = [price for side, price, _ in self.orders.values() if side > 0]
        asks = [price for side, price, _ in self.orders.values() if side < 0]
        return (max(bids) if bids else None, min(asks) if asks else None)


def tighter_quotes(a: Quotes, b: Quotes) -> Quotes:
    """The tighter of two quotes: higher bid, lower ask."""
    bids = [p for p in (a[0], b[0]) if p is not None]
    asks = [p for p in (a[1], b[1]) if p is not None]
    return (max(bids) if bids else None, min(asks) if asks else None)

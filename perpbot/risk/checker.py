"""Pre-trade risk checks over a portfolio snapshot: pure functions, no I/O.

:class:`RiskChecker` answers "what would this order do to my account?" with the numbers the
sandbox engine would compute (equity, maintenance/initial/order margin, available balance,
margin ratio and cross liquidation prices, to the unit: the arithmetic is
:mod:`perpbot.risk.margin`, the engine's own), plus estimates the engine does not make:
slippage from book depth, fees, funding over a horizon, distance to liquidation in sigmas of
volatility, and a stress suite (:mod:`perpbot.risk.stress`). It decides ``allow``, ``reject``
or ``resize`` (the largest quantity, in lots, that passes every limit), with a
:class:`RiskReason` per broken limit: a stable ``code``, a message, and the numbers.

Internally everything is the engine's integers (price in ticks, quantity in lots, money in
1e-8 USDT, rates in 1e-8); Decimals exist only at the boundary. Floats appear only in the
volatility (sigma) figures.

Worked example (BTC-PERP: tick 0.1, lot 0.001, taker fee 0.05%, market band 5%, brackets of
docs/mechanics.md §8; ``tests/risk/test_checker.py::test_worked_example``). Collateral 10,000
USDT, long 1 BTC at 60,000 (cost 60,000), leverage 10, mark 59,000. Proposed: BUY 0.2 BTC at
market, no book (expected to fill at the mark).

* before: equity = 10,000 + (59,000 - 60,000) = 9,000; IM = 59,000 / 10 = 5,900;
  MM = 59,000 x 0.5% - 50 = 245 (tier 2); available = 9,000 - 5,900 = 3,100;
  margin ratio = 245 / 9,000 = 0.02722223 (rounded up to 1e-8); liquidation price: the highest
  p with 10,000 + p - 60,000 <= 0.005 p - 50, p <= 50,201.005 -> 50,201.0.
* entry check (the engine's): the order rests at its protection price 59,000 x 1.05 = 61,950,
  holding 0.2 x 61,950 / 10 = 1,239 <= 3,100 available.
* after: fee = 11,800 x 0.05% = 5.9; size 1.2 BTC, cost 71,800; equity = 9,000 - 5.9 = 8,994.1;
  notional 70,800: IM = 7,080, MM = 70,800 x 0.5% - 50 = 304; available = 1,914.1;
  margin ratio = 304 / 8,994.1 = 0.03379994; liquidation price: 9,994.1 + 1.2 p - 71,800
  <= 0.006 p - 50, p <= 51,721.859... -> 51,721.8.
* With ``RiskLimits(min_available=Decimal(2000))`` the order is resized: available after q BTC
  is 3,100 - 5,929.5 q (IM 5,900 q plus fee 29.5 q), >= 2,000 up to q = 0.18551, so
  ``allowed_qty`` = 0.185 (available 2,003.0425; 0.186 would leave 1,997.113).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Literal, TypeVar

from perpbot.risk.margin import (
    MONEY_SCALE,
    RATE_SCALE,
    Bracket,
    apply_fill,
    build_brackets,
    ceil_div,
    liquidation_price,
    maintenance_margin,
    margin_ratio,
    max_notional_at,
    money_from_decimal,
    money_to_decimal,
    order_reserve,
    rate_from_decimal,
    rate_to_decimal,
    whole_units,
)
from perpbot.risk.stress import StressReport, run_stress

if TYPE_CHECKING:
    from perpbot.models import Account, MarketInfo, Order, OrderBook

__all__ = [
    "REASON_CODES",
    "AccountMetrics",
    "AccountState",
    "LiquidationBand",
    "LiquidationDistance",
    "MarketRules",
    "OpenOrderSnapshot",
    "Portfolio",
    "PositionSnapshot",
    "ProposedOrder",
    "RiskChecker",
    "RiskLimits",
    "RiskReason",
    "RiskReport",
]

Decision = Literal["allow", "reject", "resize"]

REASON_CODES: tuple[str, ...] = (
    # the order itself (reject, never resized)
    "UNKNOWN_MARKET",
    "MISSING_MARK",
    "INVALID_SIDE",
    "INVALID_QUANTITY",
    "INVALID_PRICE",
    "QTY_BELOW_MIN",
    "NOTIONAL_BELOW_MIN",
    "INSUFFICIENT_LIQUIDITY",
    # reduce-only larger than the position (resized to the position)
    "REDUCE_ONLY_WOULD_INCREASE_POSITION",
    # the engine's own order-entry checks (docs/mechanics.md §7.3, §7.4)
    "INSUFFICIENT_MARGIN",
    "MAX_POSITION_EXCEEDED",
    # RiskLimits
    "MARGIN_RATIO_EXCEEDS_MAX",
    "AVAILABLE_BELOW_MIN",
    "LEVERAGE_EXCEEDS_MAX",
    "SLIPPAGE_EXCEEDS_MAX",
    "LIQUIDATION_TOO_CLOSE",
    "LIQUIDATION_WITHIN_SIGMAS",
    "STRESS_LIQUIDATION",
)
"""Every :attr:`RiskReason.code` the checker emits."""

MARGIN_CALL_RATIO = 80_000_000  # the engine's default margin_call_ratio (80%), rate units
_HOUR_MS = 3_600_000
_YEAR_HOURS = 24 * 365
_BIG = 2**64


# -- inputs -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MarketRules:
    """One market's rules as the checker needs them (exact decimals; brackets in engine units)."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    brackets: tuple[Bracket, ...]
    maker_fee: Decimal
    taker_fee: Decimal
    min_qty: Decimal
    min_notional: Decimal
    funding_interval_ms: int = 8 * _HOUR_MS
    default_leverage: int = 20
    margin_call_ratio: Decimal = Decimal("0.8")
    market_band: Decimal = Decimal("0.05")

    @classmethod
    def from_market_info(cls, info: MarketInfo) -> MarketRules:
        """Rules from ``GET /v1/markets`` (the SDK's :class:`perpbot.models.MarketInfo`)."""
        rows = [
            (
                money_from_decimal(b.notional_cap),
                b.max_leverage,
                rate_from_decimal(b.maintenance_rate),
            )
            for b in info.brackets
        ]
        return cls(
            symbol=info.symbol,
            tick_size=Decimal(info.tick_size),
            lot_size=Decimal(info.lot_size),
            brackets=build_brackets(rows),
            maker_fee=Decimal(info.maker_fee),
            taker_fee=Decimal(info.taker_fee),
            min_qty=Decimal(info.min_qty),
            min_notional=Decimal(info.min_notional),
            funding_interval_ms=info.funding_interval_ms,
            default_leverage=info.default_leverage,
            market_band=Decimal(info.market_band),
        )


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """A position: signed ``size`` (long > 0), average ``entry_price`` and ``leverage``.

    ``cost`` (signed entry notional still open, USDT, as the engine keeps it) makes the
    snapshot exact; without it the cost is ``size * entry_price`` rounded to 1e-8 USDT, which
    after partial closes can differ from the engine's by a few units.
    """

    market: str
    size: Decimal
    entry_price: Decimal
    leverage: int
    cost: Decimal | None = None

    def __post_init__(self) -> None:
        _finite(self.market, size=self.size, entry_price=self.entry_price, cost=self.cost)


@dataclass(frozen=True, slots=True)
class OpenOrderSnapshot:
    """A resting order: ``side`` "BUY"/"SELL", ``remaining`` quantity at limit ``price``."""

    market: str
    side: str
    remaining: Decimal
    price: Decimal
    reduce_only: bool = False

    def __post_init__(self) -> None:
        _finite(self.market, remaining=self.remaining, price=self.price)


def _finite(market: str, **values: Decimal | None) -> None:
    for name, value in values.items():
        if value is not None and not (isinstance(value, Decimal) and value.is_finite()):
            raise ValueError(f"{market}: {name} must be a finite Decimal, got {value!r}")


@dataclass(frozen=True, slots=True)
class Portfolio:
    """What an account holds: collateral (USDT), positions, open orders, leverage per market.

    Treat it as immutable (do not mutate ``leverage`` after a check): a checker caches the
    engine-unit conversion of the last portfolio it saw (by identity or equality).
    """

    collateral: Decimal
    positions: tuple[PositionSnapshot, ...] = ()
    open_orders: tuple[OpenOrderSnapshot, ...] = ()
    leverage: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_models(cls, account: Account, open_orders: Sequence[Order] = ()) -> Portfolio:
        """From ``GET /v1/account`` and ``GET /v1/orders`` (SDK models). Exact: the cost is
        recovered as ``signed notional - unrealized PnL``."""
        positions = []
        leverage: dict[str, int] = {}
        for p in account.positions:
            leverage[p.market] = p.leverage
            size = Decimal(p.size)
            if not size:
                continue
            notional = Decimal(p.notional)
            cost = (notional if size > 0 else -notional) - Decimal(p.unrealized_pnl)
            entry = Decimal(p.entry_price) if p.entry_price is not None else Decimal(p.mark)
            positions.append(PositionSnapshot(p.market, size, entry, p.leverage, cost))
        orders = tuple(
            OpenOrderSnapshot(
                o.market, str(o.side), Decimal(o.remaining_qty), Decimal(o.price), o.reduce_only
            )
            for o in open_orders
            if o.status in ("NEW", "PARTIALLY_FILLED") and Decimal(o.remaining_qty) > 0
        )
        return cls(Decimal(account.collateral), tuple(positions), orders, leverage)


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    """An order to check. ``price`` None is a market order."""

    market: str
    side: str
    qty: Decimal
    price: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True)
class RiskLimits:
    """Limits the post-trade account must respect; None (or False) disables one.

    ``max_margin_ratio``: MM / equity after the trade; ``min_available``: USDT;
    ``max_leverage``: total notional / equity; ``min_liquidation_distance``: relative gap from
    mark to every position's liquidation price; ``min_liquidation_sigmas``: the same gap in
    standard deviations of log price over ``sigma_horizon_hours`` (needs ``volatility``);
    ``max_slippage``: average fill vs best price (needs a book); ``survive_stress``: the account
    must survive every stress scenario. Stress settings: ``stress_shock`` (relative move of a
    mark, default for every market) or ``stress_shocks`` per market; ``stress_correlation``:
    in the joint shock the markets other than the worst move by this share of their shock, all
    against the account; ``funding_spike``: funding rate per interval paid by every position for
    ``funding_horizon_hours``; ``mark_index_band``: marks moved against the account by this share.
    """

    max_margin_ratio: Decimal | None = None
    min_available: Decimal | None = None
    max_leverage: Decimal | None = None
    min_liquidation_distance: Decimal | None = None
    min_liquidation_sigmas: Decimal | None = None
    max_slippage: Decimal | None = None
    survive_stress: bool = False
    stress_shock: Decimal = Decimal("0.1")
    stress_shocks: Mapping[str, Decimal] = field(default_factory=dict)
    stress_correlation: Decimal = Decimal(1)
    funding_spike: Decimal = Decimal("0.003")
    mark_index_band: Decimal = Decimal("0.02")
    funding_horizon_hours: Decimal = Decimal(8)
    sigma_horizon_hours: Decimal = Decimal(24)


# -- outputs ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RiskReason:
    """Why an order was refused or resized: ``code`` (stable), a message, and the numbers."""

    code: str
    message: str
    details: dict[str, str] = field(default_factory=dict)


class AccountMetrics:
    """Cross-margin state (USDT). ``margin_ratio`` = MM / equity, None when equity <= 0.

    Held as exact money units; each figure becomes a ``Decimal`` when read (a check whose
    caller only looks at the decision does not pay for nine conversions). Immutable.
    """

    __slots__ = ("_collateral", "_im", "_mm", "_notional", "_om", "_upnl")
    _FIELDS = (
        "equity",
        "maintenance_margin",
        "initial_margin",
        "order_margin",
        "available",
        "margin_ratio",
        "collateral",
        "unrealized_pnl",
        "notional",
    )

    def __init__(
        self, collateral: int, unrealized_pnl: int, im: int, mm: int, om: int, notional: int
    ) -> None:
        """All in money units (1e-8 USDT), as the engine keeps them."""
        self._collateral = collateral
        self._upnl = unrealized_pnl
        self._im = im
        self._mm = mm
        self._om = om
        self._notional = notional

    @property
    def equity(self) -> Decimal:
        return _usdt(self._collateral + self._upnl)

    @property
    def maintenance_margin(self) -> Decimal:
        return _usdt(self._mm)

    @property
    def initial_margin(self) -> Decimal:
        return _usdt(self._im)

    @property
    def order_margin(self) -> Decimal:
        """Initial margin reserved by open orders."""
        return _usdt(self._om)

    @property
    def available(self) -> Decimal:
        """Equity - initial margin - order margin."""
        return _usdt(self._collateral + self._upnl - self._im - self._om)

    @property
    def margin_ratio(self) -> Decimal | None:
        ratio = margin_ratio(self._mm, self._collateral + self._upnl)
        return None if ratio is None else rate_to_decimal(ratio)

    @property
    def collateral(self) -> Decimal:
        return _usdt(self._collateral)

    @property
    def unrealized_pnl(self) -> Decimal:
        return _usdt(self._upnl)

    @property
    def notional(self) -> Decimal:
        """Sum of |position notional| at the marks."""
        return _usdt(self._notional)

    def as_dict(self) -> dict[str, Decimal | None]:
        """Every figure by name (Decimal USDT; ``margin_ratio`` as a rate)."""
        return {name: getattr(self, name) for name in self._FIELDS}

    def _key(self) -> tuple[int, ...]:
        return (self._collateral, self._upnl, self._im, self._mm, self._om, self._notional)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccountMetrics):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"AccountMetrics({shown})"


@dataclass(frozen=True, slots=True)
class LiquidationDistance:
    """From the mark to the liquidation price: in price, relative to the mark, in sigmas."""

    price_gap: Decimal
    relative: Decimal
    sigmas: Decimal | None = None


@dataclass(frozen=True, slots=True)
class LiquidationBand:
    """Between ``pressure_price`` (margin call: MM >= 80% of equity) and ``liquidation_price``
    (equity <= MM) the account is under maintenance-margin pressure; past it, forced reduction."""

    market: str
    pressure_price: Decimal | None
    liquidation_price: Decimal | None


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account at the marks: metrics, each position's liquidation price and band."""

    metrics: AccountMetrics
    liquidation_prices: dict[str, Decimal | None]
    bands: Mapping[str, LiquidationBand]


@dataclass(frozen=True, slots=True)
class RiskReport:
    """The checker's answer for one proposed order (``after`` = as if it filled in full at
    ``expected_fill``, paying ``fees``; for a resize, at ``allowed_qty``)."""

    decision: Decision
    allowed_qty: Decimal
    reasons: list[RiskReason]
    before: AccountMetrics
    after: AccountMetrics
    liquidation_prices: Mapping[str, Decimal | None]  # computed when first read
    distance: Mapping[str, LiquidationDistance]  # computed when first read
    expected_fill: Decimal | None
    fees: Decimal
    funding_cost: Decimal
    stress: StressReport | None
    bands: Mapping[str, LiquidationBand]
    slippage: Decimal | None = None
    order_margin_required: Decimal = Decimal(0)


# -- engine-unit internals ----------------------------------------------------------------------
class _Market:
    """A market's rules in engine units."""

    __slots__ = (
        "band",
        "brackets",
        "call",
        "factor",
        "interval_ms",
        "lot",
        "maker",
        "max_mmr",
        "min_notional",
        "min_qty",
        "ranges",
        "rules",
        "symbol",
        "taker",
        "tick",
        "tick_den",
        "tick_num",
    )

    def __init__(self, rules: MarketRules) -> None:
        factor = rules.tick_size * rules.lot_size * MONEY_SCALE
        if factor != factor.to_integral_value() or factor <= 0:
            raise ValueError(f"{rules.symbol}: tick*lot must be a whole number of 1e-8 USDT")
        self.rules = rules
        self.symbol = rules.symbol
        self.tick = rules.tick_size
        self.lot = rules.lot_size
        self.factor = int(factor)
        self.brackets = rules.brackets
        self.max_mmr = max(b.mmr for b in rules.brackets)
        self.maker = rate_from_decimal(rules.maker_fee)
        self.taker = rate_from_decimal(rules.taker_fee)
        self.min_qty = _units(rules.min_qty, rules.lot_size, "min_qty")
        self.min_notional = money_from_decimal(rules.min_notional)
        self.interval_ms = rules.funding_interval_ms
        self.call = rate_from_decimal(rules.margin_call_ratio)
        self.band = rate_from_decimal(rules.market_band)
        self.tick_num, self.tick_den = rules.tick_size.as_integer_ratio()
        caps = [b.notional_cap for b in rules.brackets]
        self.ranges = tuple(zip(rules.brackets, [0, *caps[:-1]], strict=True))

    def bracket_order(self, notional: int) -> Iterator[tuple[Bracket, int]]:
        """(bracket, previous cap) pairs: the bracket holding ``notional`` first, then all."""
        ranges = self.ranges
        for pair in ranges:
            if notional <= pair[0].notional_cap:
                yield pair
                break
        yield from ranges

    def price(self, ticks: int) -> Decimal:
        return ticks * self.tick

    def qty(self, lots: int) -> Decimal:
        return lots * self.lot


def _units(value: Decimal, unit: Decimal, what: str) -> int:
    n = whole_units(value, unit)
    if n is None:
        raise ValueError(f"{what} {value} is not a multiple of {unit}")
    return n


# A market of a converted portfolio, before marks (engine units):
# (market, (leverage, size, cost, buy_qty, buy_value, sell_qty, sell_value)).
_Slot = tuple["_Market", list[int]]


class _Pos:
    """One market of the account: position (lots, money) and open-order aggregates."""

    __slots__ = (
        "buy_qty",
        "buy_value",
        "cost",
        "leverage",
        "mark",
        "market",
        "sell_qty",
        "sell_value",
        "size",
    )

    def __init__(self, market: _Market, leverage: int, mark: int) -> None:
        self.market = market
        self.size = 0
        self.cost = 0
        self.leverage = leverage
        self.mark = mark
        self.buy_qty = self.buy_value = self.sell_qty = self.sell_value = 0

    def copy(self) -> _Pos:
        new = _Pos(self.market, self.leverage, self.mark)
        new.size, new.cost = self.size, self.cost
        new.buy_qty, new.buy_value = self.buy_qty, self.buy_value
        new.sell_qty, new.sell_value = self.sell_qty, self.sell_value
        return new

    def value(self) -> int:
        return self.size * self.mark * self.market.factor

    def reserve(self) -> int:
        return order_reserve(
            self.size,
            self.buy_qty,
            self.buy_value,
            self.sell_qty,
            self.sell_value,
            self.leverage,
            self.market.factor,
        )

    def sums(self) -> tuple[int, int, int, int, int]:
        """(unrealized PnL, IM, MM, order margin, |notional|) of this market at its mark."""
        size = self.size
        reserve = self.reserve() if self.buy_qty or self.sell_qty else 0
        if not size:
            return 0, 0, 0, reserve, 0
        value = size * self.mark * self.market.factor
        notional = value if value >= 0 else -value
        return (
            value - self.cost,
            -(-notional // self.leverage),
            maintenance_margin(self.market.brackets, notional),
            reserve,
            notional,
        )


@dataclass(slots=True)
class _Totals:
    """Account totals in money units."""

    collateral: int
    upnl: int
    im: int
    mm: int
    om: int
    gross: int = 0  # sum of |position notional|

    @property
    def equity(self) -> int:
        return self.collateral + self.upnl

    @property
    def available(self) -> int:
        return self.collateral + self.upnl - self.im - self.om


def _totals(collateral: int, book: Mapping[str, _Pos]) -> _Totals:
    upnl = im = mm = om = gross = 0
    for pos in book.values():
        u, i, m, o, g = pos.sums()
        upnl += u
        im += i
        mm += m
        om += o
        gross += g
    return _Totals(collateral, upnl, im, mm, om, gross)


def _usdt(units: int) -> Decimal:
    return Decimal(units).scaleb(-8)  # money_to_decimal, inlined: 9 per report side


def _metrics(t: _Totals) -> AccountMetrics:
    return AccountMetrics(t.collateral, t.upnl, t.im, t.mm, t.om, t.gross)


def _boundary(
    predicate: Callable[[int], bool], guess: int, long: bool, mark: int
) -> tuple[bool, int | None]:
    """For a long (``predicate`` true on [1, P]) the highest P, None if false at 1; for a short
    (true on [P, inf)) the lowest P. Gallops from ``guess`` then bisects, so a good guess costs
    a few evaluations. ``(False, None)`` means "gave up" (the caller falls back)."""
    guess = max(1, guess)
    limit = _BIG * max(mark, 1)
    if long:
        if predicate(guess):
            low, step = guess, 1
            while predicate(guess + step):
                low = guess + step
                step *= 2
                if step > limit:
                    return False, None
            high = guess + step
        else:
            if not predicate(1):
                return True, None
            high, step = guess, 1
            while guess - step > 1 and not predicate(guess - step):
                high = guess - step
                step *= 2
            low = max(1, guess - step)
        while high - low > 1:  # predicate(low) and not predicate(high)
            middle = (low + high) // 2
            if predicate(middle):
                low = middle
            else:
                high = middle
        return True, low
    if predicate(1):
        return True, 1
    if predicate(guess):
        high, step = guess, 1
        while guess - step > 1 and predicate(guess - step):
            high = guess - step
            step *= 2
        low = max(1, guess - step)
    else:
        low, step = guess, 1
        while not predicate(guess + step):
            low = guess + step
            step *= 2
            if step > limit:
                return False, None
        high = guess + step
    while high - low > 1:  # not predicate(low) and predicate(high)
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    return True, high


def _rate_at(brackets: Sequence[Bracket], notional: float) -> tuple[float, float]:
    for bracket in brackets:
        if notional <= bracket.notional_cap:
            break
    return bracket.mmr / RATE_SCALE, float(bracket.maint_amount)


def _liquidation(pos: _Pos, t: _Totals) -> int | None:
    """The engine's cross liquidation price (ticks) of ``pos``, all other marks unchanged.

    Solved exactly in integers within a bracket, then confirmed with the engine's own condition
    at the answer and one tick past it (the condition is monotone in the price, so that pins
    the boundary the engine's bisection finds); if no bracket's answer is confirmed, the shared
    bisection :func:`perpbot.risk.margin.liquidation_price` decides.
    """
    size, cost, market = pos.size, pos.cost, pos.market
    if not size:
        return None
    factor, brackets = market.factor, market.brackets
    value = size * pos.mark * factor
    notional = value if value >= 0 else -value
    other_equity = t.collateral + t.upnl - (value - cost)
    other_mm = t.mm - maintenance_margin(brackets, notional)

    def liquidatable(price: int) -> bool:
        v = size * price * factor
        return other_equity + v - cost <= other_mm + maintenance_margin(brackets, abs(v))

    base = other_mm - other_equity + cost  # liquidatable iff v - MM(|v|) <= base
    per_lot = (size if size > 0 else -size) * factor
    for bracket, floor_cap in market.bracket_order(notional):
        k = base - bracket.maint_amount
        cap = bracket.notional_cap
        if size > 0:
            # floor(v (RS - mmr) / RS) <= k  <=>  v < (k + 1) RS / (RS - mmr)
            v_max = -((-(k + 1) * RATE_SCALE) // (RATE_SCALE - bracket.mmr)) - 1
            price = v_max // per_lot
            if price < 1:
                if not liquidatable(1):
                    return None
                continue
            # both sides of the boundary in this bracket: the algebra above is the condition
            low, high = price * per_lot, (price + 1) * per_lot
            if floor_cap < low and high <= cap:
                return price
            if low > cap or high <= floor_cap:
                continue  # the answer is in another bracket
            if liquidatable(price) and not liquidatable(price + 1):
                return price
        else:
            # ceil(w (RS + mmr) / RS) >= -k  <=>  w > (-k - 1) RS / (RS + mmr), w = -v
            w_min = (-k - 1) * RATE_SCALE // (RATE_SCALE + bracket.mmr) + 1
            price = -(-w_min // per_lot)
            if price < 1:
                price = 1
            low, high = (price - 1) * per_lot, price * per_lot
            if price > 1 and floor_cap < low and high <= cap:
                return price
            if low > cap or high <= floor_cap:
                continue  # the answer is in another bracket
            if liquidatable(price) and (price == 1 or not liquidatable(price - 1)):
                return price
    return liquidation_price(size, cost, factor, brackets, other_equity, other_mm, pos.mark)


def _within(pos: _Pos, t: _Totals, num: int, den: int) -> bool:
    """Whether ``pos``'s cross liquidation price is closer to its mark than ``num/den`` of it
    (gap * den < num * mark): the engine's condition evaluated once, at the first price past
    the threshold (liquidation is monotone in the price), exactly like solving and comparing."""
    size = pos.size
    if not size:
        return False
    mark, factor, brackets = pos.mark, pos.market.factor, pos.market.brackets
    value = size * mark * factor
    other_equity = t.collateral + t.upnl - (value - pos.cost)
    other_mm = t.mm - maintenance_margin(brackets, value if value >= 0 else -value)
    if size > 0:  # liquidated at and below p: p > mark - mark*num/den
        price = max(1, (mark * den - mark * num) // den + 1)
    else:  # liquidated at and above p: p < mark + mark*num/den
        price = -(-(mark * den + mark * num) // den) - 1
    v = size * price * factor
    return other_equity + v - pos.cost <= other_mm + maintenance_margin(brackets, abs(v))


def _near(book: Mapping[str, _Pos], t: _Totals, num: int, den: int) -> list[tuple[str, _Pos]]:
    """The positions whose liquidation price is within ``num/den`` of their mark.

    A cheap screen first: moving one position's price by less than ``d = num/den`` of its mark
    loses less than ``d x |notional|`` of equity and raises maintenance margin by at most
    ``max_mmr x d x |notional|`` (+1 unit of rounding), so a position whose account slack
    (equity - MM) exceeds that cannot be liquidated within the distance; only the others get
    the exact :func:`_within` evaluation.
    """
    slack = (t.collateral + t.upnl - t.mm - 1) * den * RATE_SCALE
    out = []
    for symbol, pos in book.items():
        size = pos.size
        if not size:
            continue
        market = pos.market
        notional = size * pos.mark * market.factor
        if notional < 0:
            notional = -notional
        if slack > num * notional * (RATE_SCALE + market.max_mmr):
            continue
        if _within(pos, t, num, den):
            out.append((symbol, pos))
    return out


def _pressure(pos: _Pos, t: _Totals) -> int | None:
    """The mark (ticks) of ``pos``'s market at which MM >= margin_call_ratio x equity."""
    size, cost, factor, brackets = pos.size, pos.cost, pos.market.factor, pos.market.brackets
    if not size:
        return None
    call = pos.market.call
    value = size * pos.mark * factor
    other_equity = t.equity - (value - cost)
    other_mm = t.mm - maintenance_margin(brackets, abs(value))

    def called(price: int) -> bool:
        v = size * price * factor
        mm = other_mm + maintenance_margin(brackets, abs(v))
        return mm * RATE_SCALE >= call * (other_equity + v - cost)

    c = call / RATE_SCALE
    m, amt = _rate_at(brackets, abs(value))
    e0 = float(other_equity - cost)
    if size > 0:
        denominator = size * factor * (c - m)
        guess_f = (other_mm - amt - c * e0) / denominator if denominator > 0 else pos.mark
    else:
        guess_f = (c * e0 - other_mm + amt) / (-size * factor * (m + c))
    guess = int(guess_f) if 0 < guess_f < 1e30 else pos.mark
    done, price = _boundary(called, guess, size > 0, pos.mark)
    return price if done else None


def _liquidation_ticks(book: Mapping[str, _Pos], t: _Totals) -> dict[str, int | None]:
    return {symbol: _liquidation(pos, t) for symbol, pos in book.items() if pos.size}


def _prices(book: Mapping[str, _Pos], ticks: Mapping[str, int | None]) -> dict[str, Decimal | None]:
    return {s: None if p is None else book[s].market.price(p) for s, p in ticks.items()}


_V = TypeVar("_V")


class _Lazy(Mapping[str, _V]):
    """A read-only mapping computed on first access."""

    __slots__ = ("_compute", "_data")

    def __init__(self, compute: Callable[[], Mapping[str, _V]]) -> None:
        self._compute: Callable[[], Mapping[str, _V]] | None = compute
        self._data: Mapping[str, _V] | None = None

    def _get(self) -> Mapping[str, _V]:
        if self._data is None:
            assert self._compute is not None
            self._data, self._compute = self._compute(), None
        return self._data

    def __getitem__(self, key: str) -> _V:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(dict(self._get()))


class _Bands(Mapping[str, LiquidationBand]):
    """Liquidation bands per market, computed on first access (the pressure price is one more
    search per position, which a check that does not look at it should not pay for)."""

    def __init__(
        self, book: Mapping[str, _Pos], t: _Totals, ticks: Mapping[str, int | None]
    ) -> None:
        self._args = (book, t, ticks)
        self._bands: dict[str, LiquidationBand] | None = None

    def _get(self) -> dict[str, LiquidationBand]:
        if self._bands is None:
            book, t, ticks = self._args
            out = {}
            for symbol, liq in ticks.items():
                pos = book[symbol]
                pressure = _pressure(pos, t)
                out[symbol] = LiquidationBand(
                    symbol,
                    None if pressure is None else pos.market.price(pressure),
                    None if liq is None else pos.market.price(liq),
                )
            self._bands = out
        return self._bands

    def __getitem__(self, key: str) -> LiquidationBand:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


# -- the checker --------------------------------------------------------------------------------
_SIDES = {"BUY": 1, "SELL": -1, "buy": 1, "sell": -1}


_MEMO_LIMIT = 4096  # converted snapshots kept (cleared when exceeded)


class RiskChecker:
    """Pre-trade checks against ``limits`` for markets with ``rules`` (see the module docs)."""

    def __init__(self, rules: Mapping[str, MarketRules], limits: RiskLimits | None = None) -> None:
        self.rules = dict(rules)
        self.limits = limits or RiskLimits()
        self._markets = {symbol: _Market(r) for symbol, r in self.rules.items()}
        self._cached: tuple[Portfolio, int, tuple[_Slot, ...]] | None = None
        # engine units of position/order snapshots seen recently (by value)
        self._memo: dict[PositionSnapshot | OpenOrderSnapshot, tuple[int, int]] = {}
        self._mark_ticks: dict[str, tuple[Decimal, int]] = {}  # last mark seen per market
        self._before: (
            tuple[Portfolio, dict[str, Decimal], dict[str, _Pos], _Totals, AccountMetrics] | None
        ) = None
        lim = self.limits
        self._max_ratio = (
            None if lim.max_margin_ratio is None else rate_from_decimal(lim.max_margin_ratio)
        )
        self._min_available = (
            None if lim.min_available is None else money_from_decimal(lim.min_available)
        )
        distance = lim.min_liquidation_distance
        self._min_distance = (0, 1) if distance is None else distance.as_integer_ratio()

    # -- conversion ---------------------------------------------------------------------------
    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            raise KeyError(f"no rules for market {symbol!r}")
        return market

    def _convert(self, portfolio: Portfolio) -> tuple[int, tuple[_Slot, ...]]:
        """The portfolio in engine units, without marks: (collateral, slots). Cached for the
        last portfolio seen (a :class:`Portfolio` is immutable: re-checking the same snapshot
        with other orders or marks skips the conversion)."""
        cached = self._cached
        if cached is not None and (cached[0] is portfolio or cached[0] == portfolio):
            return cached[1], cached[2]
        slots: dict[str, list[int]] = {}  # symbol -> [leverage, size, cost, bq, bv, sq, sv]
        memo = self._memo
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        markets = self._markets
        leverage = portfolio.leverage
        for p in portfolio.positions:
            # Equal snapshots (an account fetched again, unchanged position) convert once.
            units = memo.get(p)
            if units is None:
                market = self._market(p.market)
                lots = _units(p.size, market.lot, "position size")
                if p.cost is not None:
                    cost = money_from_decimal(p.cost)
                else:
                    exact = (p.size * p.entry_price).scaleb(8)
                    cost = int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))
                units = memo[p] = (lots, cost)
            row = slots.get(p.market)
            if row is None:
                lev = leverage.get(p.market) or p.leverage
                row = slots[p.market] = [
                    lev or markets[p.market].rules.default_leverage,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ]
            row[1], row[2] = units
        for o in portfolio.open_orders:
            if o.reduce_only:
                continue
            units = memo.get(o)
            if units is None:
                market = self._market(o.market)
                lots = _units(o.remaining, market.lot, "order quantity")
                ticks = _units(o.price, market.tick, "order price")
                units = memo[o] = (lots, lots * ticks)
            row = slots.get(o.market)
            if row is None:
                lev = leverage.get(o.market) or markets[o.market].rules.default_leverage
                row = slots[o.market] = [lev, 0, 0, 0, 0, 0, 0]
            if _SIDES[o.side] > 0:
                row[3] += units[0]
                row[4] += units[1]
            else:
                row[5] += units[0]
                row[6] += units[1]
        collateral = money_from_decimal(portfolio.collateral)
        converted = tuple((markets[symbol], row) for symbol, row in slots.items())
        self._cached = (portfolio, collateral, converted)
        return collateral, converted

    def _book(
        self, portfolio: Portfolio, marks: Mapping[str, Decimal]
    ) -> tuple[int, dict[str, _Pos]]:
        """The portfolio in engine units at ``marks``: (collateral, {market: _Pos}); raises
        ValueError/KeyError on inexact values, unknown markets or missing marks."""
        collateral, slots = self._convert(portfolio)
        book: dict[str, _Pos] = {}
        seen = self._mark_ticks
        for market, (leverage, size, cost, buy_qty, buy_value, sell_qty, sell_value) in slots:
            symbol = market.symbol
            mark = marks.get(symbol)
            if mark is None:
                raise KeyError(f"no mark for {symbol!r}")
            last = seen.get(symbol)
            if last is not None and last[0] == mark:
                ticks = last[1]
            else:
                num, den = mark.as_integer_ratio()
                ticks, rest = divmod(num * market.tick_den, den * market.tick_num)
                if rest or ticks <= 0:
                    raise ValueError(f"mark {mark} of {symbol} is not a positive tick multiple")
                seen[symbol] = (mark, ticks)
            pos = book[symbol] = _Pos(market, leverage, ticks)
            pos.size, pos.cost = size, cost
            pos.buy_qty, pos.buy_value = buy_qty, buy_value
            pos.sell_qty, pos.sell_value = sell_qty, sell_value
        return collateral, book

    # -- state --------------------------------------------------------------------------------
    def evaluate(self, portfolio: Portfolio, *, marks: Mapping[str, Decimal]) -> AccountState:
        """The account at ``marks``: what ``GET /v1/account`` would show (same numbers)."""
        collateral, book = self._book(portfolio, marks)
        t = _totals(collateral, book)
        ticks = _liquidation_ticks(book, t)
        return AccountState(_metrics(t), _prices(book, ticks), _Bands(book, t, ticks))

    # -- the check ----------------------------------------------------------------------------
    def check(
        self,
        portfolio: Portfolio,
        order: ProposedOrder,
        *,
        marks: Mapping[str, Decimal],
        books: Mapping[str, OrderBook] | None = None,
        volatility: Mapping[str, Decimal] | None = None,
        funding_rates: Mapping[str, Decimal] | None = None,
        stress: bool = False,
    ) -> RiskReport:
        """Check ``order`` against the limits; see :class:`RiskReport`.

        The account's state before the order is kept for the next check: several orders checked
        against the same portfolio object at equal marks (a quote pair, a ladder) pay for it once.
        """
        last = self._before
        # An equal snapshot rebuilt from fresh API data hits too (comparing is ~5x cheaper
        # than converting it again).
        if last is not None and (last[0] is portfolio or last[0] == portfolio) and last[1] == marks:
            book, before_t, before = last[2], last[3], last[4]
        else:
            collateral, book = self._book(portfolio, marks)
            before_t = _totals(collateral, book)
            before = _metrics(before_t)
            self._before = (portfolio, dict(marks), book, before_t, before)
        run = _Run(self, portfolio, book, before_t, order, marks, books, volatility, stress)
        return run.report(before, funding_rates)


class _Run:
    """One check: the order in engine units and the evaluation of a candidate quantity."""

    def __init__(
        self,
        checker: RiskChecker,
        portfolio: Portfolio,
        book: dict[str, _Pos],
        before: _Totals,
        order: ProposedOrder,
        marks: Mapping[str, Decimal],
        books: Mapping[str, OrderBook] | None,
        volatility: Mapping[str, Decimal] | None,
        stress: bool,
    ) -> None:
        self.checker = checker
        self.limits = checker.limits
        self.leverage = portfolio.leverage
        self.book = book
        self.before = before
        self.order = order
        self.marks = marks
        self.books = books
        self.volatility = volatility
        self.stress = stress
        self.fatal: list[RiskReason] = []
        self._after: dict[int, tuple[_Totals, _Pos, int, int]] = {}
        self._liq: dict[int, dict[str, int | None]] = {}
        self.market: _Market | None = checker._markets.get(order.market)
        self.side = _SIDES.get(order.side, 0)
        self.lots = 0
        self.limit_ticks: int | None = None
        self.fill_ticks = 0
        self.expected_fill: Decimal | None = None
        self.slippage: Decimal | None = None
        self.taker = order.price is None
        self._validate()

    def _reject(self, code: str, message: str, **details: object) -> None:
        self.fatal.append(RiskReason(code, message, {k: str(v) for k, v in details.items()}))

    def _validate(self) -> None:
        order, market = self.order, self.market
        if market is None:
            self._reject(
                "UNKNOWN_MARKET", f"no rules for market {order.market}", market=order.market
            )
            return
        if not self.side:
            self._reject("INVALID_SIDE", f"side must be BUY or SELL, got {order.side!r}")
        if order.market not in self.marks:
            self._reject("MISSING_MARK", f"no mark for {order.market}", market=order.market)
            return
        lots = whole_units(order.qty, market.lot) if order.qty.is_finite() else None
        if lots is None or lots <= 0:
            self._reject(
                "INVALID_QUANTITY",
                f"quantity {order.qty} is not a positive multiple of {market.lot}",
                qty=order.qty,
                lot_size=market.lot,
            )
            return
        self.lots = lots
        if order.price is not None:
            ticks = whole_units(order.price, market.tick) if order.price.is_finite() else None
            if ticks is None or ticks <= 0:
                self._reject(
                    "INVALID_PRICE",
                    f"price {order.price} is not a positive multiple of {market.tick}",
                    price=order.price,
                    tick_size=market.tick,
                )
                return
            self.limit_ticks = ticks
        if order.market not in self.book:
            lev = self.leverage.get(order.market) or market.rules.default_leverage
            self.book = dict(self.book)  # the before-state is shared between checks: copy
            self.book[order.market] = _Pos(
                market, lev, _units(self.marks[order.market], market.tick, "mark")
            )
        pos = self.book[order.market]
        if order.reduce_only and (pos.size == 0 or (pos.size > 0) == (self.side > 0)):
            self._reject(
                "REDUCE_ONLY_WOULD_INCREASE_POSITION",
                f"reduce-only {order.side} with position {market.qty(pos.size)}",
                position=market.qty(pos.size),
            )
            return
        if not order.reduce_only:
            notional_ticks = self.limit_ticks if self.limit_ticks is not None else pos.mark
            notional = notional_ticks * lots * market.factor
            if lots < market.min_qty:
                self._reject(
                    "QTY_BELOW_MIN",
                    f"quantity {order.qty} is below the minimum {market.rules.min_qty}",
                    qty=order.qty,
                    min_qty=market.rules.min_qty,
                )
            elif notional < market.min_notional:
                self._reject(
                    "NOTIONAL_BELOW_MIN",
                    f"notional {money_to_decimal(notional)} is below the minimum",
                    notional=money_to_decimal(notional),
                    min_notional=market.rules.min_notional,
                )
        self._price_fill(pos)

    def _price_fill(self, pos: _Pos) -> None:
        """Where the order is expected to fill: the book walk if a book is given, else the limit
        price (or the mark for a market order); rounded to a tick against the account."""
        market, order = self.market, self.order
        assert market is not None
        ob = self.books.get(order.market) if self.books else None
        fill: Decimal | None = None
        if ob is not None:
            # imported here: perpbot.risk.margin (this package) is imported by the sandbox
            # engine, which should not pull in the SDK's HTTP and pydantic stack
            from perpbot.limits import estimate_fill

            levels = ob.asks if self.side > 0 else ob.bids
            est = estimate_fill(levels, order.qty, limit_price=order.price, side=order.side.upper())
            if levels:
                best = Decimal(levels[0][0])
                crosses = order.price is None or (
                    order.price >= best if self.side > 0 else order.price <= best
                )
                self.taker = self.taker or crosses
            if est.avg_price is not None and est.filled == order.qty:
                fill = est.avg_price
                self.slippage = est.slippage
            elif order.price is None:
                self._reject(
                    "INSUFFICIENT_LIQUIDITY",
                    f"the book holds {est.filled} of {order.qty} for a market order",
                    available=est.filled,
                    qty=order.qty,
                )
                return
            elif est.avg_price is not None:
                # partly marketable: the rest rests at the limit; average the two.
                rest = order.qty - est.filled
                fill = (est.notional + rest * order.price) / order.qty
                self.slippage = est.slippage
        if fill is None:
            fill = order.price if order.price is not None else market.price(pos.mark)
        self.expected_fill = fill
        rounding = ROUND_CEILING if self.side > 0 else ROUND_FLOOR
        self.fill_ticks = max(1, int((fill / market.tick).to_integral_value(rounding=rounding)))

    # -- one candidate quantity ---------------------------------------------------------------
    def after(self, lots: int) -> tuple[_Totals, _Pos, int, int]:
        """(totals after filling ``lots``, the order's market after, fee, order margin needed
        to place it) in money units."""
        cached = self._after.get(lots)
        if cached is None:
            cached = self._after[lots] = self._compute_after(lots)
        return cached

    def book_after(self, lots: int) -> tuple[_Totals, dict[str, _Pos]]:
        t, new, _fee, _required = self.after(lots)
        book = dict(self.book)
        book[self.order.market] = new
        return t, book

    def liquidations(self, lots: int) -> dict[str, int | None]:
        ticks = self._liq.get(lots)
        if ticks is None:
            t, book = self.book_after(lots)
            ticks = self._liq[lots] = _liquidation_ticks(book, t)
        return ticks

    def _compute_after(self, lots: int) -> tuple[_Totals, _Pos, int, int]:
        assert self.market is not None
        pos = self.book[self.order.market]
        new = pos.copy()
        rate = self.market.taker if self.taker else self.market.maker
        fee = ceil_div(self.fill_ticks * lots * self.market.factor * rate, RATE_SCALE)
        pnl = apply_fill(new, self.side, self.fill_ticks, lots, self.market.factor)
        u0, i0, m0, o0, g0 = pos.sums()
        u1, i1, m1, o1, g1 = new.sums()
        t = self.before
        after = _Totals(
            t.collateral + pnl - fee,
            t.upnl - u0 + u1,
            t.im - i0 + i1,
            t.mm - m0 + m1,
            t.om - o0 + o1,
            t.gross - g0 + g1,
        )
        # the engine's order-entry check: the order resting at its limit price
        required = 0
        if not self.order.reduce_only:
            ticks = self.limit_ticks
            if ticks is None:  # a market order is margined at its protection price
                band = self.market.band
                if self.side > 0:
                    ticks = pos.mark * (RATE_SCALE + band) // RATE_SCALE
                else:
                    ticks = ceil_div(pos.mark * (RATE_SCALE - band), RATE_SCALE)
            held = pos.copy()
            if self.side > 0:
                held.buy_qty += lots
                held.buy_value += lots * ticks
            else:
                held.sell_qty += lots
                held.sell_value += lots * ticks
            required = held.reserve() - o0
        return after, new, fee, required

    def closing(self, lots: int) -> bool:
        """True if ``lots`` only reduce the position (no flip past zero)."""
        size = self.book[self.order.market].size
        return size != 0 and (size > 0) != (self.side > 0) and lots <= abs(size)

    def failures(self, lots: int, *, with_stress: bool) -> list[RiskReason]:
        """The limits ``lots`` would break (empty: it passes)."""
        if self.closing(lots):
            return []
        market = self.market
        assert market is not None
        limits = self.limits
        t, new, _fee, required = self.after(lots)
        reasons: list[RiskReason] = []

        def fail(code: str, message: str, **details: object) -> None:
            reasons.append(RiskReason(code, message, {k: str(v) for k, v in details.items()}))

        if required > 0 and required > self.before.available:
            fail(
                "INSUFFICIENT_MARGIN",
                "the order needs more initial margin than is available",
                required=money_to_decimal(required),
                available=money_to_decimal(self.before.available),
            )
        worst = max(abs(new.size + new.buy_qty), abs(new.size - new.sell_qty))
        cap = max_notional_at(market.brackets, new.leverage)
        exposure = worst * new.mark * market.factor
        if exposure > cap:
            fail(
                "MAX_POSITION_EXCEEDED",
                f"position notional exceeds the bracket cap at {new.leverage}x",
                notional=money_to_decimal(exposure),
                max_notional=money_to_decimal(cap),
                leverage=new.leverage,
            )
        equity = t.equity
        limit = self.checker._max_ratio
        if limit is not None:
            ratio = margin_ratio(t.mm, equity)
            if ratio is None or ratio > limit:
                fail(
                    "MARGIN_RATIO_EXCEEDS_MAX",
                    "maintenance margin / equity after the trade exceeds the limit",
                    margin_ratio="None" if ratio is None else rate_to_decimal(ratio),
                    limit=limits.max_margin_ratio,
                )
        min_available = self.checker._min_available
        if min_available is not None and t.available < min_available:
            fail(
                "AVAILABLE_BELOW_MIN",
                "available balance after the trade is below the minimum",
                available=money_to_decimal(t.available),
                limit=limits.min_available,
            )
        if limits.max_leverage is not None:
            notional = t.gross
            lev_limit = limits.max_leverage
            lev_num, lev_den = lev_limit.as_integer_ratio()
            if equity <= 0 or notional * lev_den > lev_num * equity:
                fail(
                    "LEVERAGE_EXCEEDS_MAX",
                    "total notional / equity after the trade exceeds the limit",
                    leverage="inf" if equity <= 0 else Decimal(notional) / Decimal(equity),
                    limit=lev_limit,
                )
        slip_limit = limits.max_slippage
        if slip_limit is not None and self.slippage is not None and self.slippage > slip_limit:
            fail(
                "SLIPPAGE_EXCEEDS_MAX",
                "expected fill is too far from the best price",
                slippage=self.slippage,
                limit=slip_limit,
            )
        if limits.min_liquidation_distance is not None or (
            limits.min_liquidation_sigmas is not None and self.volatility
        ):
            t_after, book = self.book_after(lots)
            dist_num, dist_den = self.checker._min_distance
            if limits.min_liquidation_sigmas is None or not self.volatility:
                # Only the distance limit: one evaluation per position at the threshold price
                # instead of solving every liquidation price; solve just the ones too close.
                ticks = {
                    s: _liquidation(pos, t_after)
                    for s, pos in _near(book, t_after, dist_num, dist_den)
                }
            else:
                ticks = self.liquidations(lots)
            for symbol, dist in self.distances(book, ticks).items():
                if (
                    limits.min_liquidation_distance is not None
                    and dist.relative < limits.min_liquidation_distance
                ):
                    fail(
                        "LIQUIDATION_TOO_CLOSE",
                        f"{symbol} would be within the minimum distance of its liquidation price",
                        market=symbol,
                        relative=dist.relative,
                        limit=limits.min_liquidation_distance,
                    )
                if (
                    limits.min_liquidation_sigmas is not None
                    and dist.sigmas is not None
                    and dist.sigmas < limits.min_liquidation_sigmas
                ):
                    fail(
                        "LIQUIDATION_WITHIN_SIGMAS",
                        f"{symbol} would be too few standard deviations from liquidation",
                        market=symbol,
                        sigmas=dist.sigmas,
                        limit=limits.min_liquidation_sigmas,
                    )
        if with_stress and limits.survive_stress:
            book = dict(self.book)
            book[self.order.market] = new
            report = run_stress(book, t, limits)
            if not report.survives:
                worst_case = report.worst
                fail(
                    "STRESS_LIQUIDATION",
                    f"the account would be liquidated in stress scenario {worst_case.name}",
                    scenario=worst_case.name,
                    equity=worst_case.equity,
                    maintenance_margin=worst_case.maintenance_margin,
                )
        return reasons

    def distances(
        self, book: Mapping[str, _Pos], ticks: Mapping[str, int | None]
    ) -> dict[str, LiquidationDistance]:
        out: dict[str, LiquidationDistance] = {}
        hours = float(self.limits.sigma_horizon_hours)
        for symbol, liq in ticks.items():
            if liq is None:
                continue
            pos = book[symbol]
            market = pos.market
            gap = abs(pos.mark - liq)
            relative = Decimal(gap) / Decimal(pos.mark)
            sigmas: Decimal | None = None
            vol = self.volatility.get(symbol) if self.volatility else None
            if vol is not None and vol > 0 and hours > 0:
                sd = float(vol) * math.sqrt(hours / _YEAR_HOURS)
                sigmas = Decimal(repr(round(abs(math.log(pos.mark / liq)) / sd, 6)))
            out[symbol] = LiquidationDistance(market.price(gap), relative, sigmas)
        return out

    # -- the report ---------------------------------------------------------------------------
    def resize(self) -> int:
        """Largest lots in [0, self.lots) passing every limit (binary search; 0 if none)."""
        low = 0
        size = self.book[self.order.market].size
        if size and (size > 0) != (self.side > 0):
            low = min(abs(size), self.lots)  # closing always passes
        high = self.lots  # fails
        while high - low > 1:
            middle = (low + high) // 2
            if self.failures(middle, with_stress=True):
                high = middle
            else:
                low = middle
        return low

    def report(
        self, before: AccountMetrics, funding_rates: Mapping[str, Decimal] | None
    ) -> RiskReport:
        market = self.market
        if self.fatal or market is None:
            return self._final("reject", 0, self.fatal, before, funding_rates)
        lots = self.lots
        size = self.book[self.order.market].size
        if self.order.reduce_only and lots > abs(size):
            reasons = [
                RiskReason(
                    "REDUCE_ONLY_WOULD_INCREASE_POSITION",
                    "reduce-only order larger than the position",
                    {"qty": str(self.order.qty), "position": str(market.qty(size))},
                )
            ]
            return self._final("resize", abs(size), reasons, before, funding_rates)
        reasons = self.failures(lots, with_stress=True)
        if not reasons:
            return self._final("allow", lots, [], before, funding_rates)
        allowed = self.resize()
        small = allowed < market.min_qty or (
            allowed * self.fill_ticks * market.factor < market.min_notional
        )
        if allowed == 0 or (small and not self.closing(allowed)):
            return self._final("reject", 0, reasons, before, funding_rates)
        return self._final("resize", allowed, reasons, before, funding_rates)

    def _final(
        self,
        decision: Decision,
        lots: int,
        reasons: list[RiskReason],
        before: AccountMetrics,
        funding_rates: Mapping[str, Decimal] | None,
    ) -> RiskReport:
        market = self.market
        book: dict[str, _Pos] = self.book
        fee = 0
        t = self.before
        if market is not None and lots:
            t, book = self.book_after(lots)
            fee = self.after(lots)[2]
        required = 0
        if market is not None and not self.fatal:
            required = max(0, self.after(self.lots)[3])
        stress_report = None
        if self.stress:
            stress_report = run_stress(book, t, self.limits)
        funding = Decimal(0)
        if funding_rates:
            hours = self.limits.funding_horizon_hours
            for symbol, pos in book.items():
                rate = funding_rates.get(symbol)
                if rate is not None and pos.size:
                    intervals = hours * _HOUR_MS / pos.market.interval_ms
                    funding += money_to_decimal(pos.value()) * rate * intervals
        # Liquidation prices, distances and bands are computed when first read (unless a limit
        # already needed them): a check whose caller only wants the decision does not pay.
        if market is not None and lots:
            ticks: Mapping[str, int | None] = _Lazy(lambda: self.liquidations(lots))
        else:
            ticks = _Lazy(lambda: _liquidation_ticks(book, t))
        return RiskReport(
            decision=decision,
            allowed_qty=market.qty(lots) if market is not None else Decimal(0),
            reasons=reasons,
            before=before,
            after=_metrics(t),
            liquidation_prices=_Lazy(lambda: _prices(book, ticks)),
            distance=_Lazy(lambda: self.distances(book, ticks)),
            expected_fill=self.expected_fill,
            fees=money_to_decimal(fee),
            funding_cost=funding,
            stress=stress_report,
            bands=_Bands(book, t, ticks),
            slippage=self.slippage,
            order_margin_required=money_to_decimal(required),
        )

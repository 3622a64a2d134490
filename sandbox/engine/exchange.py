"""The exchange facade: ``submit(command) -> events``. Pure, synchronous and deterministic.

Every handler validates the whole command before it changes anything, so a refused command
returns a single :class:`~sandbox.engine.events.Rejected` and leaves the state untouched. The
same commands with the same clock readings give byte-identical events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from heapq import heapify, heappop
from typing import Any, Final, TypeVar

from mypy_extensions import i64, mypyc_attr

from perpbot.risk.margin import (
    RATE_SCALE,
    ceil_div,
    fill_position,
    liquidation_price,
    maintenance_margin,
    margin_ratio,
    max_notional_at,
    mul,
    mul_rate_ceil,
    order_reserve,
    rate_below,
)

from .accounts import Account, LiquidationState, Position
from .book import CANCELED, EXPIRED, FILLED, PARTIALLY_FILLED, Book, BookSide, Level, Order
from .clock import Clock, ManualClock
from .codes import EngineError, RejectCode
from .commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    OrderType,
    PlaceOrder,
    RegisterBackstop,
    SelfTradePrevention,
    SetLeverage,
    SetMarkPrice,
    Side,
    Tick,
    TimeInForce,
    UpdateIndexSource,
    Withdraw,
)
from .events import (
    ACCOUNTS_STREAM,
    BackstopRegistered,
    Deposited,
    Event,
    FundingPaid,
    FundingSettled,
    IndexDegraded,
    IndexRestored,
    IndexSourceUpdated,
    InsuranceFundUsed,
    LeverageChanged,
    LiquidationFill,
    LiquidationFinished,
    LiquidationStarted,
    MarginCall,
    MarkPriceSet,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    PositionTransferred,
    PricesUpdated,
    Rejected,
    Trade,
    Withdrawn,
)
from .funding import FundingCalculator, funding_payments, impact_price, premium_index
from .instruments import MAX_TICKS, Instrument
from .liquidation import (
    LiquidationConfig,
    LiquidationMode,
    RiskIndex,
    adl_score,
    bankruptcy_price,
    safe_distance,
    slope_per_tick,
    steps_for,
)
from .pricing import IndexCalculator, MarkCalculator, mid_ticks

_RESERVED_MESSAGE: Final = "insurance fund accounts are run by the exchange (deposits only)"
CLIENT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._:/-]{1,36}")
# Enum members read on every order, as module constants: on Python 3.11 ``TimeInForce.GTC`` is
# a slow metaclass attribute lookup (~10x a global), and the order path makes several.
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_LIMIT: Final = OrderType.LIMIT
_LIQUIDATION: Final = OrderType.LIQUIDATION
_GTC: Final = TimeInForce.GTC
_IOC: Final = TimeInForce.IOC
_FOK: Final = TimeInForce.FOK
_POST_ONLY: Final = TimeInForce.POST_ONLY
_CANCEL_TAKER: Final = SelfTradePrevention.CANCEL_TAKER
_CANCEL_MAKER: Final = SelfTradePrevention.CANCEL_MAKER


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """Engine-wide settings (per-market settings live on :class:`Instrument`)."""

    default_stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    max_open_orders: int = 200  # per account and market
    recent_orders: int = 1000  # finished orders remembered per account
    recent_order_ttl_ms: int = 24 * 3600 * 1000  # ... for at most this long after they finished
    # Orders no longer remembered are let go (memory, client ids) this many at a time per
    # account: a little memory for speed (see Exchange._release_forgotten). At least 1.
    forget_batch: int = 64
    max_amount: int = 10**18  # largest single deposit/withdrawal (10 billion USDT)


class Market:
    """Per-market state: the instrument, its book, prices, funding, risk index, sequence."""

    __slots__ = (
        "backstops",
        "book",
        "brackets",
        "factor",
        "funding",
        "holders",
        "impact_notional",
        "index",
        "index_calc",
        "index_degraded",
        "instrument",
        "insurance",
        "last_price",
        "liquidation",
        "mark",
        "mark_calc",
        "max_buy",
        "max_price",
        "min_price",
        "min_sell",
        "next_funding_ts",
        "next_mark_ts",
        "next_sample_ts",
        "next_unwind_ts",
        "risk",
        "seq",
        "symbol",
        "top_mmr",
        "trade_id",
    )

    def __init__(self, instrument: Instrument, now: int) -> None:
        mech = instrument.mechanics
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.factor = instrument.notional_factor
        self.top_mmr = instrument.brackets[-1].mmr
        self.brackets = instrument.brackets
        self.liquidation = mech.liquidation
        self.book = Book()
        self.mark = self.min_price = self.max_price = self.max_buy = self.min_sell = 0
        self.set_mark(instrument.initial_price)
        self.index = instrument.initial_price
        self.index_degraded = False
        # The last trade's price, 0 before the first trade (see ``last``): compiled, a machine
        # integer is stored as it is, where an ``int | None`` is a boxed object, made anew by
        # every fill.
        self.last_price: i64 = 0
        self.seq: i64 = 0
        self.trade_id: i64 = 0
        self.index_calc = IndexCalculator(mech.index)
        self.mark_calc = MarkCalculator(mech.mark)
        self.funding = FundingCalculator(mech.funding)
        self.impact_notional = mech.impact_margin * instrument.brackets[0].max_leverage
        sample = mech.funding.sample_interval_ms
        self.next_sample_ts = now - now % sample + sample
        self.next_funding_ts = self.funding.next_funding_time(now)
        self.next_mark_ts = now
        self.next_unwind_ts = now
        self.risk = RiskIndex()
        self.insurance = f"insurance:{instrument.symbol}"
        self.backstops: dict[str, tuple[int, int]] = {}  # account -> (max_qty, discount)
        self.holders: dict[str, None] = {}  # accounts with a position here (insertion order)

    @property
    def last(self) -> int | None:
        """The last trade's price (ticks); None before the first trade."""
        return self.last_price if self.last_price else None

    def set_mark(self, mark: int) -> None:
        """Set the mark and the price limits derived from it: a limit order's price must lie in
        ``[min_price, max_price]`` (mark +- price_band, rounded inward), and a market order
        never fills beyond ``max_buy`` / ``min_sell`` (mark +- market_band, rounded inward)."""
        inst = self.instrument
        self.mark = mark
        # No order price exceeds MAX_TICKS: the upper limits are held at it (so a mark that high
        # refuses every limit order), and so is a market order's protection limit (the book's
        # prices are all at most MAX_TICKS: holding the limit there changes no fill).
        self.min_price = ceil_div(mark * (RATE_SCALE - inst.price_band), RATE_SCALE)
        self.max_price = min(mark * (RATE_SCALE + inst.price_band) // RATE_SCALE, MAX_TICKS)
        self.max_buy = min(mark * (RATE_SCALE + inst.market_band) // RATE_SCALE, MAX_TICKS)
        self.min_sell = min(ceil_div(mark * (RATE_SCALE - inst.market_band), RATE_SCALE), MAX_TICKS)


@dataclass(frozen=True, slots=True)
class PositionView:
    """A position at the current mark. ``liquidation_price`` (ticks): the mark of this market
    at which, all other marks unchanged, equity <= maintenance margin; None if no price can."""

    market: str
    size: int
    cost: int
    leverage: int
    mark: int
    unrealized_pnl: int
    realized_pnl: int
    initial_margin: int
    maintenance_margin: int
    order_margin: int
    liquidation_price: int | None


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account's margin state at the current marks (money units)."""

    account: str
    collateral: int
    unrealized_pnl: int
    equity: int
    position_margin: int
    order_margin: int
    available: int
    maintenance_margin: int
    margin_ratio: int | None  # MM / equity in rate units (1e-8); None when equity <= 0
    in_liquidation: bool
    positions: tuple[PositionView, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class MarketPrices:
    """The three prices of a market and its funding state (ticks, rate units, ms)."""

    market: str
    last: int | None
    index: int
    mark: int
    index_degraded: bool
    predicted_funding_rate: int
    last_funding_rate: int
    next_funding_ts: int
    insurance_fund: int


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Aggregated depth at the market's event sequence number ``seq``."""

    market: str
    seq: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


def _unknown_market(symbol: object) -> EngineError:
    return EngineError(RejectCode.UNKNOWN_MARKET, f"unknown market {symbol!r}")


def _unknown_account(account_id: object) -> EngineError:
    return EngineError(RejectCode.UNKNOWN_ACCOUNT, f"unknown account {account_id!r}")


def _value(pos: Position) -> int:
    """A position's signed value at its market's mark (money units)."""
    market = pos.market
    return mul(mul(pos.size, market.mark), market.factor)


def _pnl_and_mm(pos: Position) -> tuple[int, int]:
    """A position's unrealized PnL and maintenance margin at its market's mark."""
    value = _value(pos)
    notional = value if value >= 0 else -value
    return value - pos.cost, maintenance_margin(pos.market.brackets, notional)


def _restored_at(equity: int, mm: int, lead: Market | None) -> bool:
    """A liquidation is over: no position left (no ``lead`` market), or MM at most the lead
    market's target share of equity."""
    return lead is None or mm * RATE_SCALE <= lead.liquidation.target_ratio * equity


def _keep_position(account: Account, pos: Position) -> None:
    """Store a position :meth:`Exchange._position` made (once an accepted command uses it)."""
    if not pos.stored:
        account.positions[pos.market.symbol] = pos
        account.position_list.append(pos)
        pos.stored = True


def _release_client_id(account: Account, order: Order) -> None:
    """Free a forgotten order's client id, unless a newer order of the account holds it."""
    client_id = order.client_id
    if client_id is not None and not order.superseded:
        del account.client_ids[client_id]


def _warm_forgotten(done: list[Order | None], start: int, count: int) -> i64:
    """Read the client id (its first bytes) of each of the ``count`` orders in the ring's
    slots from ``start`` on, and one field in every 64 bytes of the order (as compiled: the
    fields at offsets 56, 112, 120 and 168; taking it from the list reads the first 16),
    bringing all of it into cache for ``Exchange._release_forgotten``. The total is returned
    only so the compiler keeps the reads."""
    total: i64 = 0
    size = len(done)
    slot = start
    for _ in range(count):
        order = done[slot]
        slot += 1
        if slot == size:
            slot = 0
        if order is None:  # (never, within the count)
            continue
        total += order.side
        if order.live:
            total += 1
        client_id = order.client_id
        if client_id is not None:
            total += len(client_id)
        if order.status is FILLED:
            total += 1
    return total


def _is_int(value: object) -> bool:
    return type(value) is int


_E = TypeVar("_E", OrderType, TimeInForce, SelfTradePrevention)


def _member(enum: type[_E], value: object) -> _E:
    """``value`` as a member of ``enum`` (members pass through; their string values convert)."""
    if isinstance(value, enum):
        return value
    try:
        member: _E = enum(str(value))  # named: mypyc sees the call as Any
        return member
    except ValueError:
        raise EngineError(
            RejectCode.INVALID_ORDER, f"{value!r} is not a valid {enum.__name__}"
        ) from None


# Commands are named tuples; the hot paths read their unvalidated fields by position, untyped
# (compiled code type-checks a field read by name, which would raise TypeError on bad input
# instead of the engine's rejection, and costs ~10x an index). tests/engine/test_commands.py
# checks these against the commands' fields.
_ACCOUNT: Final = 0  # every command with an account has it first
_MARKET: Final = 1  # PlaceOrder, CancelOrder, AmendOrder
_SIDE: Final = 2  # PlaceOrder
_QTY: Final = 3
_PRICE: Final = 4
_ORDER_TYPE: Final = 5
_TIF: Final = 6
_REDUCE_ONLY: Final = 7
_PLACE_CLIENT_ID: Final = 8
_STP: Final = 9
_ORDER_ID: Final = 2  # CancelOrder, AmendOrder
_CLIENT_ID: Final = 3
_PLACE_ORDER: Final = PlaceOrder  # (a Final name is read without a module-dict lookup)
_CANCEL_ORDER: Final = CancelOrder
_ORDER_TYPE_CLASS: Final = OrderType
_TIF_CLASS: Final = TimeInForce
# A method that compiled code has no primitive for, called as the function it is: a method
# call looks the name up on every call (~3x the cost of the call itself).
_IS_ASCII: Final = str.isascii


@mypyc_attr(allow_interpreted_subclasses=True)
class Exchange:
    """The deterministic exchange core. Feed it commands; it answers with events."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        clock: Clock,
        config: ExchangeConfig | None = None,
    ) -> None:
        self.clock = clock
        self.config = config or ExchangeConfig()
        if self.config.forget_batch < 1:
            raise ValueError(f"forget_batch must be at least 1, got {self.config.forget_batch}")
        now = clock.now_ms()
        self.markets: dict[str, Market] = {i.symbol: Market(i, now) for i in instruments}
        self.accounts: dict[str, Account] = {}
        self.fees_collected = 0
        self.total_deposits = 0
        self.total_withdrawals = 0
        # Each market's insurance fund is an account holding its seed (counted as a deposit).
        self.insurance_funds: dict[str, str] = {}
        for market in self.markets.values():
            fund = Account(market.insurance)
            fund.insurance = True
            fund.collateral = market.instrument.mechanics.liquidation.insurance_seed
            self.accounts[fund.id] = fund
            self.insurance_funds[fund.id] = market.symbol
            self.total_deposits += fund.collateral
        # Accounts to check at the end of the command, first queued first (see _queue_check).
        self._dirty: list[Account] = []
        self._liquidating: dict[str, LiquidationState] = {}  # in the order they started
        self._reindex_pending: list[Account] = []  # evaluated since the last mark move
        self._risk_version = 0
        self._accounts_seq = 0
        self._next_order_id = 1
        self._warmed: i64 = 0  # a sink for _warm_forgotten's reads (see there); means nothing
        # (PlaceOrder and CancelOrder are dispatched by submit itself)
        self._handlers: dict[type, Callable[[Any], list[Event]]] = {
            CancelAll: self._cancel_all,
            AmendOrder: self._amend,
            Deposit: self._deposit,
            Withdraw: self._withdraw,
            SetLeverage: self._set_leverage,
            SetMarkPrice: self._set_mark,
            UpdateIndexSource: self._update_index_source,
            Tick: self._tick,
            RegisterBackstop: self._register_backstop,
        }

    def __del__(self) -> None:
        """Drop every container of orders, so a dropped exchange is freed.

        An order points back at its account, position and price level, which hold it: each
        such pair is a reference cycle. Compiled, orders are invisible to the cyclic garbage
        collector (see :class:`~sandbox.engine.book.Order`), so it cannot break those cycles;
        emptying the containers here does. (An exchange is itself in a cycle through its
        bound-method handlers, so the collector is what finalizes it.)"""
        try:
            accounts = self.accounts
            markets = self.markets
        except AttributeError:  # __init__ did not get that far
            return
        for account in accounts.values():
            account.open_orders.clear()
            account.done.clear()
            account.done_head = account.done_count = account.forgotten_count = 0
            account.client_ids.clear()
        for market in markets.values():
            for side in (market.book.bids, market.book.asks):
                for level in side.levels.values():
                    level.orders.clear()

    # -- the one entry point ------------------------------------------------------------------
    def submit(self, command: Command | object) -> list[Event]:
        """Apply ``command``; return the events it caused, or one ``Rejected`` (also for
        anything that is not a command)."""
        kind = type(command)
        cmd: Any = command
        try:
            if kind is _PLACE_ORDER or kind is _CANCEL_ORDER:  # most of the traffic
                # Dispatched without the table, with the account looked up once here. (An
                # account id that is not a string, or unknown, is refused by the handler.)
                fields: tuple[object, ...] = cmd
                account_id = fields[_ACCOUNT]
                account = self.accounts.get(account_id) if isinstance(account_id, str) else None
                if account is not None and account.insurance:
                    raise EngineError(RejectCode.RESERVED_ACCOUNT, _RESERVED_MESSAGE)
                if kind is _PLACE_ORDER:
                    events = self._place(cmd, account)
                else:
                    events = self._cancel(cmd, account)
            else:
                account_id = getattr(cmd, "account", None)
                if (
                    isinstance(account_id, str)
                    and account_id in self.insurance_funds
                    and not isinstance(cmd, Deposit)
                ):
                    raise EngineError(RejectCode.RESERVED_ACCOUNT, _RESERVED_MESSAGE)
                handler = self._handlers.get(kind)
                if handler is None:
                    raise EngineError(
                        RejectCode.UNKNOWN_COMMAND, f"unknown command {kind.__name__}"
                    )
                events = handler(command)
        except EngineError as err:
            return [
                Rejected(ts=self._now(), code=err.code, message=err.message, details=err.details)
            ]
        if self._dirty:
            self._evaluate_dirty(events)
        return events

    def _now(self) -> int:
        """The clock's time. The engine's own ManualClock is read with a compiled call; any other
        clock through its Python method."""
        clock = self.clock
        if isinstance(clock, ManualClock):
            return clock.now_ms()
        return clock.now_ms()

    # -- lookups that raise typed errors --------------------------------------------------------
    def _market(self, symbol: object) -> Market:
        market = self.markets.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise _unknown_market(symbol)
        return market

    def _account(self, account_id: object) -> Account:
        account = self.accounts.get(account_id) if isinstance(account_id, str) else None
        if account is None:
            raise _unknown_account(account_id)
        return account

    def _position(self, account: Account, market: Market) -> Position:
        """The account's position slot in ``market``; a detached blank one if it has none yet
        (stored only once a command is accepted, so rejections leave no trace)."""
        pos = account.positions.get(market.symbol)
        if pos is None:
            inst = market.instrument
            lev = inst.default_leverage
            pos = Position(market, lev, max_notional_at(inst.brackets, lev))
        return pos

    def _find_open(
        self, account: Account, market: Market, command: CancelOrder | AmendOrder
    ) -> Order:
        fields: tuple[object, ...] = command
        order_id = fields[_ORDER_ID]
        client_id = fields[_CLIENT_ID]
        if (order_id is None) == (client_id is None):
            raise EngineError(RejectCode.INVALID_ORDER, "give exactly one of order_id, client_id")
        if order_id is not None:
            # the int object as given, untyped: compiled code would otherwise make a new one
            key: Any = fields[_ORDER_ID]
            order = account.open_orders.get(key) if type(order_id) is int else None
        elif isinstance(client_id, str):
            order = account.client_ids.get(client_id)
        else:
            order = None
        # (both dicts are the account's own; its client ids include finished orders)
        if order is None or not order.live or order.pos.market is not market:
            ref = order_id if order_id is not None else client_id
            raise EngineError(RejectCode.UNKNOWN_ORDER, f"no open order {ref!r} in {market.symbol}")
        return order

    # -- margin ---------------------------------------------------------------------------------
    def _available(self, account: Account) -> int:
        """Equity at mark minus position initial margin minus margin held by open orders."""
        equity = account.collateral
        position_margin = 0
        for pos in account.position_list:
            if pos.size:
                value = _value(pos)
                equity += value - pos.cost
                position_margin -= (-value if value > 0 else value) // pos.leverage  # ceil
        return equity - position_margin - account.reserve

    def _check_exposure_and_margin(
        self,
        account: Account,
        market: Market,
        pos: Position,
        side: i64,
        add_qty: i64,
        add_value: int,
        leverage: int,
        max_exposure: int,
        *,
        released_margin: int = 0,
    ) -> int:
        """Validate the position's open orders with ``add_qty`` lots of ``add_value`` added
        on ``side`` (1 buys, -1 sells, 0 neither; negative amounts remove); return the order
        margin they would hold. Raises if the worst-case exposure exceeds the bracket or the
        extra margin exceeds the available balance."""
        buy_qty, buy_value = pos.buy_qty, pos.buy_value
        sell_qty, sell_value = pos.sell_qty, pos.sell_value
        if side > 0:
            buy_qty += add_qty
            buy_value += add_value
        elif side < 0:
            sell_qty += add_qty
            sell_value += add_value
        size = pos.size
        # (not max() and abs(): compiled, those box their arguments)
        after_buys, after_sells = size + int(buy_qty), size - int(sell_qty)
        after_buys = after_buys if after_buys >= 0 else -after_buys
        after_sells = after_sells if after_sells >= 0 else -after_sells
        worst = after_buys if after_buys > after_sells else after_sells
        exposure = mul(worst * market.mark, market.factor)
        if exposure > max_exposure:
            raise EngineError(
                RejectCode.MAX_POSITION_EXCEEDED,
                f"worst-case position notional {exposure} exceeds {max_exposure} at "
                f"{leverage}x leverage",
                notional=exposure,
                max_notional=max_exposure,
                leverage=leverage,
            )
        reserve = order_reserve(
            size, buy_qty, buy_value, sell_qty, sell_value, leverage, market.factor
        )
        required = reserve - pos.reserve - released_margin
        if required > 0:
            available = self._available(account)
            if required > available:
                raise EngineError(
                    RejectCode.INSUFFICIENT_MARGIN,
                    f"order needs {required} of margin, {available} available",
                    required=required,
                    available=available,
                )
        return reserve

    def _set_reserve(self, account: Account, pos: Position, factor: int) -> None:
        if not pos.buy_qty and not pos.sell_qty:
            reserve = 0  # no open orders to margin: what order_reserve returns, without the call
        else:
            reserve = order_reserve(
                pos.size,
                pos.buy_qty,
                pos.buy_value,
                pos.sell_qty,
                pos.sell_value,
                pos.leverage,
                factor,
            )
        account.reserve += reserve - pos.reserve
        pos.reserve = reserve

    # -- order entry ----------------------------------------------------------------------------
    def _place(self, command: PlaceOrder, owner: Account | None) -> list[Event]:
        """``owner``: the command's account, None if there is no such account."""
        # Unvalidated fields are read by position, untyped (see _ACCOUNT and the rest).
        fields: tuple[object, ...] = command
        symbol = fields[_MARKET]  # (_market, inlined: a method call costs a few percent here)
        market = self.markets.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise _unknown_market(symbol)
        if owner is None:
            raise _unknown_account(fields[_ACCOUNT])
        account = owner
        inst = market.instrument
        # Validated values become typed locals (machine or plain ints): fast when compiled.
        given_side = fields[_SIDE]
        if given_side is _BUY:
            side: i64 = 1
        elif given_side is _SELL:
            side = -1
        elif type(given_side) is int and (given_side == 1 or given_side == -1):
            side = given_side
        else:
            raise EngineError(
                RejectCode.INVALID_ORDER, f"side must be BUY or SELL, got {given_side!r}"
            )
        given_qty = fields[_QTY]
        if type(given_qty) is not int:  # _is_int, inlined on the hot path
            raise EngineError(
                RejectCode.INVALID_QUANTITY, f"quantity {given_qty!r} must be lots > 0"
            )
        lots: int = given_qty  # (a typed local: compiled, ``given_qty`` stays an object)
        if lots <= 0:
            raise EngineError(RejectCode.INVALID_QUANTITY, f"quantity {lots!r} must be lots > 0")
        if lots < inst.min_qty:
            raise EngineError(
                RejectCode.QTY_BELOW_MIN, f"quantity {lots} < {inst.min_qty}", min_qty=inst.min_qty
            )
        mark = market.mark
        given_type = fields[_ORDER_TYPE]
        order_type: OrderType = (  # members pass as they are; _member converts
            given_type if type(given_type) is _ORDER_TYPE_CLASS else _member(OrderType, given_type)
        )
        if order_type is _LIQUIDATION:
            raise EngineError(RejectCode.INVALID_ORDER, "liquidation orders are the exchange's")
        given_tif = fields[_TIF]
        tif: TimeInForce | None = (
            given_tif
            if given_tif is None or type(given_tif) is _TIF_CLASS
            else _member(TimeInForce, given_tif)
        )
        if order_type is _LIMIT:
            given_price = fields[_PRICE]
            if type(given_price) is not int:
                raise EngineError(
                    RejectCode.INVALID_PRICE, f"price {given_price!r} must be ticks > 0"
                )
            price: int = given_price
            if price <= 0:
                raise EngineError(RejectCode.INVALID_PRICE, f"price {price!r} must be ticks > 0")
            tif = _GTC if tif is None else tif
            max_qty = inst.max_qty
            if price > market.max_price or price < market.min_price:  # (a call only to raise)
                self._check_band(market, price)
            # Within the band, so at most MAX_TICKS: a machine integer from here on.
            limit: i64 = price
            notional_price = price
        else:
            if fields[_PRICE] is not None:
                raise EngineError(RejectCode.INVALID_ORDER, "a market order takes no price")
            tif = _IOC if tif is None else tif
            if tif is not _IOC and tif is not _FOK:
                raise EngineError(RejectCode.INVALID_ORDER, f"a market order cannot be {tif}")
            max_qty = inst.market_max_qty
            # Protection limit: never sweep beyond mark * (1 +- market_band), rounded inward.
            limit = market.max_buy if side > 0 else market.min_sell
            notional_price = mark
        if lots > max_qty:
            raise EngineError(
                RejectCode.QTY_ABOVE_MAX, f"quantity {lots} > {max_qty}", max_qty=max_qty
            )
        qty: i64 = lots  # at most the instrument's max_qty, so at most MAX_LOTS
        given_stp = fields[_STP]
        stp = (
            self.config.default_stp
            if given_stp is None
            else _member(SelfTradePrevention, given_stp)
        )
        given_client_id = fields[_PLACE_CLIENT_ID]
        taken_over = (
            None if given_client_id is None else self._check_client_id(account, given_client_id)
        )
        client_id = given_client_id if isinstance(given_client_id, str) else None  # (checked)
        pos = account.positions.get(market.symbol)
        if pos is None:
            pos = self._position(account, market)  # a detached blank one
        given_reduce_only = fields[_REDUCE_ONLY]
        if given_reduce_only is not True and given_reduce_only is not False:
            raise EngineError(RejectCode.INVALID_ORDER, "reduce_only must be a bool")
        reduce_only = given_reduce_only is True
        if not reduce_only and account.liquidation is not None:
            raise EngineError(
                RejectCode.ACCOUNT_IN_LIQUIDATION,
                "the account is being liquidated: only reduce-only orders are accepted",
            )
        rests = tif is _GTC or tif is _POST_ONLY  # (members: compared by identity)
        if rests and pos.open_orders >= self.config.max_open_orders:
            raise EngineError(
                RejectCode.TOO_MANY_OPEN_ORDERS,
                f"at most {self.config.max_open_orders} open orders per market",
                max_open_orders=self.config.max_open_orders,
            )
        book_side = market.book.asks if side > 0 else market.book.bids
        if tif is _POST_ONLY:
            best = book_side.best()
            if best is not None and book_side.sign * best.price <= book_side.sign * limit:
                raise EngineError(
                    RejectCode.POST_ONLY_WOULD_TAKE,
                    f"post-only order at {limit} would take the resting {best.price}",
                    best_price=best.price,
                )
        if reduce_only:
            size = pos.size
            if size == 0 or (size > 0) == (side > 0):
                raise EngineError(
                    RejectCode.REDUCE_ONLY_WOULD_INCREASE,
                    "reduce-only order would open or increase the position",
                    position=size,
                )
            qty = min(qty, abs(size))  # never more than the position it reduces
            reserve = pos.reserve
        else:
            notional = mul(notional_price * int(qty), market.factor)
            if notional < inst.min_notional:
                raise EngineError(
                    RejectCode.NOTIONAL_BELOW_MIN,
                    f"notional {notional} < {inst.min_notional}",
                    notional=notional,
                    min_notional=inst.min_notional,
                )
            value = int(limit * qty)  # (ticks x lots < 2**62; sums of them are Python ints)
            reserve = self._check_exposure_and_margin(
                account, market, pos, side, qty, value, pos.leverage, pos.max_exposure
            )
        if tif is _FOK:
            fillable = self._fillable(market, book_side, account.id, limit, qty, stp)
            if fillable < qty:
                raise EngineError(
                    RejectCode.FOK_NOT_FILLABLE,
                    f"only {fillable} of {qty} can fill now",
                    fillable=fillable,
                )

        # ---- accepted: from here on, state changes ----
        now = self._now()
        _keep_position(account, pos)
        order, accepted = self._accept(
            market,
            account,
            pos,
            side,
            limit,
            qty,
            order_type,
            tif,
            reduce_only,
            client_id,
            stp,
            now,
        )
        if taken_over is not None:  # (rare) forgetting it must leave the id to the new order
            taken_over.superseded = True
        # (a list display: made with its one item, no growth on a first append)
        events: list[Event] = [accepted]
        # ``reserve`` is the order margin if the whole order rests with nothing else changed.
        self._execute(market, account, pos, order, book_side, events, now, reserve)
        return events

    def _accept(
        self,
        market: Market,
        account: Account,
        pos: Position,
        side: i64,
        price: i64,
        qty: i64,
        order_type: OrderType,
        tif: TimeInForce,
        reduce_only: bool,
        client_id: str | None,
        stp: SelfTradePrevention,
        now: int,
    ) -> tuple[Order, OrderAccepted]:
        """Number a validated order and register its client id; return it with its
        ``OrderAccepted``, the caller's first event of the order."""
        order_id = self._next_order_id
        self._next_order_id = order_id + 1
        order = Order(
            order_id,
            market.symbol,
            side,
            price,
            qty,
            order_type,
            tif,
            reduce_only,
            client_id,
            stp,
            now,
            account,
            pos,
        )
        if client_id is not None:
            account.client_ids[client_id] = order
        market.seq += 1
        accepted = OrderAccepted(  # positional: keyword construction costs ~10% of a command
            now,  # ts
            market.symbol,  # stream
            market.seq,  # seq
            order_id,  # order_id
            client_id,  # client_id
            account.id,  # account
            side,  # side
            order_type,  # order_type
            tif,  # tif
            price,  # price
            qty,  # qty
            reduce_only,  # reduce_only
        )
        return order, accepted

    def _execute(
        self,
        market: Market,
        account: Account,
        pos: Position,
        order: Order,
        book_side: BookSide,
        events: list[Event],
        now: int,
        resting_reserve: int = -1,
    ) -> None:
        """Match ``order`` as a taker, then rest or expire what is left.

        ``resting_reserve``: the order margin already computed for the order resting whole (-1:
        none); used if matching changed nothing (the only event so far is the acceptance).
        (An int with a sentinel, not ``int | None``: compiled, an optional int is boxed.)"""
        accepted_only = len(events)
        # (_match only if the best opposite level is within the limit: a resting limit order
        # usually is not marketable, and the call would cost more than the check)
        best = book_side.best()
        stopped = False
        if best is not None and (
            best.price <= order.price if book_side.sign > 0 else best.price >= order.price
        ):
            stopped = self._match(market, order, book_side, events, now)
        if pos.reduce_only_orders:
            self._sync_reduce_only(market, account, pos, events, now)
        if order.remaining == 0:
            order.status = FILLED
            self._finish(account, order, now)
        elif stopped or (order.tif is not _GTC and order.tif is not _POST_ONLY):
            self._emit_cancel(market, order, "self_trade" if stopped else "expired", events, now)
            order.status = EXPIRED
            self._finish(account, order, now)
        else:
            unchanged = len(events) == accepted_only and not order.reduce_only
            self._rest(market, account, pos, order, resting_reserve if unchanged else -1)

    def _rest(
        self,
        market: Market,
        account: Account,
        pos: Position,
        order: Order,
        reserve: int = -1,
    ) -> None:
        book = market.book
        (book.bids if order.side > 0 else book.asks).add(order)  # == book.side(order.side)
        account.open_orders[order.key] = order
        pos.open_orders += 1
        if order.reduce_only:
            pos.reduce_only_orders += 1
            return
        remaining = order.remaining
        if order.side > 0:
            pos.buy_qty += remaining
            pos.buy_value += int(order.price * remaining)
        else:
            pos.sell_qty += remaining
            pos.sell_value += int(order.price * remaining)
        if reserve < 0:  # not known: computed
            self._set_reserve(account, pos, market.factor)
        else:
            account.reserve += reserve - pos.reserve
            pos.reserve = reserve

    def _unrest(self, market: Market, account: Account, order: Order) -> Position:
        """Take a live order out of the book and out of its account's aggregates."""
        book = market.book
        (book.bids if order.side > 0 else book.asks).remove(order)  # == book.side(order.side)
        del account.open_orders[order.key]
        pos = order.pos
        pos.open_orders -= 1
        if order.reduce_only:
            pos.reduce_only_orders -= 1
        else:
            remaining = order.remaining
            if order.side > 0:
                pos.buy_qty -= remaining
                pos.buy_value -= int(order.price * remaining)
            else:
                pos.sell_qty -= remaining
                pos.sell_value -= int(order.price * remaining)
            self._set_reserve(account, pos, market.factor)
        return pos

    def _finish(self, account: Account, order: Order, now: int) -> None:
        """Remember a finished order (and its client id) for a while, within bounds."""
        order.done_ts = now
        # Its key was for the open-order dicts, which it has left: freed now, while it is in
        # cache, not when the order is forgotten (and the history holds one int less each).
        order.key = None
        config = self.config
        limit = config.recent_orders
        count = account.done_count
        if count and (count >= limit or account.oldest_done_ts < now - config.recent_order_ttl_ms):
            self._forget_oldest(account, now, limit - 1)  # (makes room for this one)
            count = account.done_count
        if limit <= 0:  # nothing is remembered
            _release_client_id(account, order)
            return
        done = account.done
        size = len(done)
        if count == 0:
            account.oldest_done_ts = now
        head = account.done_head
        slot = head + count  # after the newest
        if slot >= size:
            slot -= size
        if count + account.forgotten_count < size:  # that slot is free
            done[slot] = order
        # The ring is full: it grows by a slot there, before the oldest order it holds (so it
        # grows only while full: to the limit plus a batch of forgotten orders, less one).
        elif slot == 0:  # (at the end: the same place, going round)
            done.append(order)
            if count == 0:  # (all forgotten: the new order is the head)
                account.done_head = size
        else:
            done.insert(slot, order)
            if head > slot or (head == slot and count > 0):  # the head moved up
                account.done_head = head + 1
        account.done_count = count + 1

    def _forget_oldest(self, account: Account, now: int, keep: int) -> None:
        """Forget the oldest finished orders while more than ``keep`` are remembered or the
        oldest is too old: the head of the ring moves past them, not reading them (they are
        long out of cache), and they are let go, their client ids freed,
        ``config.forget_batch`` at a time."""
        forgotten = account.forgotten_count
        done = account.done
        size = len(done)
        head = account.done_head
        count = account.done_count
        horizon = now - self.config.recent_order_ttl_ms
        while count:
            if count <= keep:  # not too many: only the time can make the oldest go
                if account.oldest_done_ts >= horizon:
                    break  # (a lower bound of the oldest's time: not expired)
                first = done[head]
                if first is not None:  # (always, within the count)
                    account.oldest_done_ts = first.done_ts  # (exact, now)
                    if first.done_ts >= horizon:
                        break
            head += 1
            if head == size:
                head = 0
            count -= 1
            forgotten += 1
        account.done_head = head
        account.done_count = count
        account.forgotten_count = forgotten
        if forgotten >= self.config.forget_batch:
            self._release_forgotten(account)

    def _release_forgotten(self, account: Account) -> None:
        """Free the client ids of the orders the account no longer remembers, and let the
        orders go.

        Why in batches: by the time an order is forgotten (a thousand finished orders of its
        account later) it, its client id and its slot of the id index have long left the
        processor's caches. Released one at a time, as each is forgotten, every step of that
        waits for the memory read before it (the order, then the id, then the index). Read
        first for a whole batch by ``_warm_forgotten``, in a loop whose iterations do not
        depend on each other, tens of those reads are in flight at once; the release loop then
        finds them in cache. About a tenth of the engine's time on the benchmark's stream."""
        done = account.done
        size = len(done)
        count = account.forgotten_count
        start = account.done_head - count
        if start < 0:
            start += size
        self._warmed = _warm_forgotten(done, start, count)
        slot = start
        for _ in range(count):
            order = done[slot]
            if order is not None:  # (always, within the count)
                _release_client_id(account, order)
            done[slot] = None
            slot += 1
            if slot == size:
                slot = 0
        account.forgotten_count = 0

    def _check_client_id(self, account: Account, client_id: object) -> Order | None:
        """Check that ``client_id`` is well-formed and not in use by an open or recent order.
        Returns the finished order that still holds it past the recent window (the new order
        takes the id over: see ``Order.superseded``), usually None."""
        if not isinstance(client_id, str) or not (
            # ASCII letters and digits only (the usual case) pass without the regex
            (0 < len(client_id) <= 36 and _IS_ASCII(client_id) and client_id.isalnum())
            or CLIENT_ID_PATTERN.fullmatch(client_id)
        ):
            raise EngineError(
                RejectCode.INVALID_CLIENT_ORDER_ID,
                "client order id must be 1-36 characters of A-Z a-z 0-9 . _ : / -",
            )
        existing = account.client_ids.get(client_id)
        if existing is None:
            return None
        if not existing.live and (
            existing.done_ts < (self._now() - self.config.recent_order_ttl_ms)
            or existing in account.forgotten  # (rare: orders compare by identity)
        ):
            return existing  # no longer recent (expired, or forgotten and not yet let go)
        raise EngineError(
            RejectCode.DUPLICATE_CLIENT_ORDER_ID,
            f"client order id {client_id!r} is already used by order {existing.id}",
            existing_order=order_record(existing),
        )

    @staticmethod
    def _check_band(market: Market, price: int) -> None:
        if price > market.max_price or price < market.min_price:
            band = market.instrument.price_band
            raise EngineError(
                RejectCode.PRICE_OUT_OF_BAND,
                f"price {price} is outside mark {market.mark} +- {band}/{RATE_SCALE}",
                mark=market.mark,
                min_price=market.min_price,
                max_price=market.max_price,
            )

    def _fillable(
        self, market: Market, book_side: BookSide, account_id: str, limit: int, qty: int, stp: str
    ) -> int:
        """How much of ``qty`` would fill now against ``book_side`` up to ``limit``.

        Walks the book exactly as matching would, including self-trade prevention and the
        makers' reduce-only orders, which shrink or vanish as their owners' positions change
        during the sweep (so a FOK order never fills in part).
        """
        total = 0
        sign = book_side.sign
        simulated: dict[str, int] = {}  # position sizes of makers with reduce-only orders
        for level in book_side.sorted_levels():
            if (level.price > limit) if sign > 0 else (level.price < limit):
                break
            for maker in level.orders[level.head :]:
                if not maker.live:
                    continue
                if maker.account == account_id:
                    if stp == _CANCEL_MAKER:
                        continue
                    return total
                take = int(maker.remaining)  # (sums below stay Python ints)
                size = simulated.get(maker.account)
                if size is None:
                    pos = maker.pos
                    size = pos.size if pos.reduce_only_orders else None
                if size is not None:
                    if maker.reduce_only:
                        if size == 0 or (size > 0) == (maker.side > 0):
                            continue  # cancelled by the time the sweep reaches it
                        take = min(take, abs(size))
                    take = min(take, qty - total)
                    simulated[maker.account] = size + int(maker.side) * take
                total += take
                if total >= qty:
                    return total
        return total

    # -- matching -------------------------------------------------------------------------------
    def _match(
        self, market: Market, taker: Order, book_side: BookSide, events: list[Event], now: int
    ) -> bool:
        """Fill ``taker`` against ``book_side`` in price-time order up to its limit price.

        Returns True if self-trade prevention stopped the taker.
        """
        asks = book_side.sign > 0  # beyond the limit: above it on the asks, below it on the bids
        limit = taker.price
        taker_account = taker.owner
        taker_pos = taker.pos
        while taker.remaining:
            level = book_side.best()
            if level is None or (level.price > limit if asks else level.price < limit):
                return False
            while taker.remaining:
                maker = level.front()
                if maker is None:
                    break
                if maker.owner is taker.owner:
                    stp = taker.stp
                    if stp == _CANCEL_TAKER:
                        return True
                    self._cancel_resting(market, maker, "self_trade", events, now)
                    if stp != _CANCEL_MAKER:
                        return True
                    continue
                maker_account = maker.owner
                maker_pos = maker.pos
                self._fill(
                    market,
                    book_side,
                    level,
                    maker,
                    taker,
                    maker_account,
                    maker_pos,
                    taker_account,
                    taker_pos,
                    events,
                )
                if maker.remaining == 0:
                    self._finish_filled_maker(maker_account, maker_pos, maker, now)
                if maker_pos.reduce_only_orders:
                    self._sync_reduce_only(market, maker_account, maker_pos, events, now)
        return False

    def _fill(
        self,
        market: Market,
        book_side: BookSide,
        level: Level,
        maker: Order,
        taker: Order,
        maker_account: Account,
        maker_pos: Position,
        taker_account: Account,
        taker_pos: Position,
        events: list[Event],
    ) -> None:
        qty = taker.remaining if taker.remaining < maker.remaining else maker.remaining
        price = maker.price
        factor = market.factor
        inst = market.instrument
        notional = mul(price * qty, factor)

        level.qty -= qty
        maker.remaining -= qty
        maker.filled += qty
        maker.status = PARTIALLY_FILLED
        taker.remaining -= qty
        taker.filled += qty
        taker.status = PARTIALLY_FILLED
        if maker.remaining == 0:
            book_side.pop_filled_front(level)

        if not maker.reduce_only:
            if maker.side > 0:
                maker_pos.buy_qty -= qty
                maker_pos.buy_value -= int(price * qty)
            else:
                maker_pos.sell_qty -= qty
                maker_pos.sell_value -= int(price * qty)
        maker_fee = mul_rate_ceil(notional, inst.maker_fee)
        # A liquidation pays the liquidation fee (to the insurance fund) instead of a taker fee.
        taker_fee = (
            0 if taker.order_type is _LIQUIDATION else mul_rate_ceil(notional, inst.taker_fee)
        )
        maker_pnl = _apply_fill(maker_pos, maker.side, price, qty, factor)
        taker_pnl = _apply_fill(taker_pos, taker.side, price, qty, factor)
        if (maker_pos.size != 0) != maker_pos.held:  # it opened or closed
            self._track_holder(market, maker.account, maker_pos)
        if (taker_pos.size != 0) != taker_pos.held:
            self._track_holder(market, taker.account, taker_pos)
        maker_account.collateral += maker_pnl - maker_fee
        taker_account.collateral += taker_pnl - taker_fee
        self.fees_collected += maker_fee + taker_fee
        if not maker_account.dirty:  # _queue_check, inlined
            maker_account.dirty = True
            self._dirty.append(maker_account)
        if not taker_account.dirty:
            taker_account.dirty = True
            self._dirty.append(taker_account)
        self._set_reserve(maker_account, maker_pos, factor)
        self._set_reserve(taker_account, taker_pos, factor)

        market.last_price = price
        market.trade_id += 1
        market.seq += 1
        events.append(
            Trade(  # positional, in field order: keywords cost ~10% of the hot path
                taker.ts,  # ts
                market.symbol,  # stream
                market.seq,  # seq
                market.trade_id,  # trade_id
                price,  # price
                qty,  # qty
                taker.side,  # taker_side
                maker.id,  # maker_order_id
                taker.id,  # taker_order_id
                maker.account,  # maker_account
                taker.account,  # taker_account
                maker_fee,  # maker_fee
                taker_fee,  # taker_fee
                maker_pnl,  # maker_realized
                taker_pnl,  # taker_realized
                maker.remaining,  # maker_remaining
                taker.remaining,  # taker_remaining
            )
        )

    @staticmethod
    def _track_holder(market: Market, account_id: str, pos: Position) -> None:
        """Keep ``market.holders`` (and the risk index) in step with who holds a position."""
        if pos.size:
            if not pos.held:
                market.holders[account_id] = None
                pos.held = True
        elif pos.held:
            del market.holders[account_id]
            pos.held = False
            market.risk.discard(account_id)

    def _finish_filled_maker(self, account: Account, pos: Position, maker: Order, now: int) -> None:
        maker.status = FILLED
        del account.open_orders[maker.key]
        pos.open_orders -= 1
        if maker.reduce_only:
            pos.reduce_only_orders -= 1
        self._finish(account, maker, now)

    def _sync_reduce_only(
        self, market: Market, account: Account, pos: Position, events: list[Event], now: int
    ) -> None:
        """After the position changed: cancel resting reduce-only orders that would no longer
        reduce it, and shrink any whose remaining quantity exceeds the position."""
        size = pos.size
        held = abs(size)
        for order in [
            o for o in account.open_orders.values() if o.reduce_only and o.market == market.symbol
        ]:
            if size == 0 or (size > 0) == (order.side > 0):
                self._cancel_resting(market, order, "reduce_only", events, now)
            elif order.remaining > held:
                market.book.side(order.side).reduce(order, order.remaining - held)
                order.qty = order.filled + held
                market.seq += 1
                events.append(
                    OrderAmended(
                        ts=now,
                        stream=market.symbol,
                        seq=market.seq,
                        order_id=order.id,
                        account=account.id,
                        side=order.side,
                        old_price=order.price,
                        price=order.price,
                        qty=order.qty,
                        remaining=order.remaining,
                        priority_kept=True,
                    )
                )

    # -- cancel ---------------------------------------------------------------------------------
    def _emit_cancel(
        self, market: Market, order: Order, reason: str, events: list[Event], now: int
    ) -> None:
        market.seq += 1
        events.append(
            OrderCanceled(
                now,  # ts
                market.symbol,  # stream
                market.seq,  # seq
                order.id,  # order_id
                order.client_id,  # client_id
                order.account,  # account
                order.side,  # side
                order.price,  # price
                order.remaining,  # remaining
                reason,  # reason
            )
        )

    def _cancel_resting(
        self, market: Market, order: Order, reason: str, events: list[Event], now: int
    ) -> None:
        account = order.owner
        self._unrest(market, account, order)
        self._emit_cancel(market, order, reason, events, now)
        order.status = CANCELED if reason == "canceled" else EXPIRED
        self._finish(account, order, now)

    def _cancel(self, command: CancelOrder, owner: Account | None) -> list[Event]:
        """``owner``: the command's account, None if there is no such account."""
        fields: tuple[object, ...] = command  # unvalidated: read by position, untyped
        symbol = fields[_MARKET]  # (_market, inlined)
        market = self.markets.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise _unknown_market(symbol)
        if owner is None:
            raise _unknown_account(fields[_ACCOUNT])
        account = owner
        order = self._find_open(account, market, command)
        events: list[Event] = []
        self._cancel_resting(market, order, "canceled", events, self._now())
        return events

    def _cancel_all(self, command: CancelAll) -> list[Event]:
        cmd: Any = command  # unvalidated fields: read untyped (mypyc checks typed reads)
        account = self._account(cmd.account)
        symbol = None if cmd.market is None else self._market(cmd.market).symbol
        events: list[Event] = []
        now = self._now()
        for order in list(account.open_orders.values()):
            if symbol is None or order.market == symbol:
                self._cancel_resting(self.markets[order.market], order, "canceled", events, now)
        return events

    # -- amend ----------------------------------------------------------------------------------
    def _amend(self, command: AmendOrder) -> list[Event]:
        cmd: Any = command  # unvalidated fields: read untyped (mypyc checks typed reads)
        market = self._market(cmd.market)
        account = self._account(cmd.account)
        order = self._find_open(account, market, cmd)
        inst = market.instrument
        price = order.price if cmd.price is None else cmd.price
        qty = order.qty if cmd.qty is None else cmd.qty
        if not _is_int(price) or price <= 0:
            raise EngineError(RejectCode.INVALID_PRICE, f"price {price!r} must be ticks > 0")
        if not _is_int(qty) or qty <= 0:
            raise EngineError(RejectCode.INVALID_QUANTITY, f"quantity {qty!r} must be lots > 0")
        if qty <= order.filled:
            raise EngineError(
                RejectCode.INVALID_QUANTITY,
                f"new quantity {qty} must exceed the filled {order.filled}",
                filled=order.filled,
            )
        if qty < inst.min_qty:
            raise EngineError(RejectCode.QTY_BELOW_MIN, f"quantity {qty} < {inst.min_qty}")
        if qty > inst.max_qty:
            raise EngineError(RejectCode.QTY_ABOVE_MAX, f"quantity {qty} > {inst.max_qty}")
        if price != order.price:
            self._check_band(market, price)
        pos = account.positions[market.symbol]
        remaining = qty - order.filled
        if order.reduce_only:
            remaining = min(remaining, abs(pos.size))
            qty = order.filled + remaining
        if price == order.price and qty == order.qty:
            raise EngineError(RejectCode.AMEND_NO_CHANGE, "the amendment changes nothing")
        opposite = market.book.asks if order.side > 0 else market.book.bids
        if order.tif is _POST_ONLY and price != order.price:
            best = opposite.best()
            if best is not None and opposite.sign * best.price <= opposite.sign * price:
                raise EngineError(
                    RejectCode.POST_ONLY_WOULD_TAKE,
                    f"post-only order at {price} would take the resting {best.price}",
                    best_price=best.price,
                )
        if not order.reduce_only:
            notional = price * qty * market.factor
            if notional < inst.min_notional:
                raise EngineError(
                    RejectCode.NOTIONAL_BELOW_MIN, f"notional {notional} < {inst.min_notional}"
                )
            old_value = int(order.price * order.remaining)
            self._check_exposure_and_margin(
                account,
                market,
                pos,
                order.side,
                remaining - order.remaining,
                price * remaining - old_value,
                pos.leverage,
                pos.max_exposure,
            )

        now = self._now()
        events: list[Event] = []
        old_price = order.price
        keeps_priority = price == order.price and remaining <= order.remaining
        if keeps_priority:
            shrink = order.remaining - remaining
            market.book.side(order.side).reduce(order, shrink)
            order.qty = qty
            if not order.reduce_only:
                if order.side > 0:
                    pos.buy_qty -= shrink
                    pos.buy_value -= price * shrink
                else:
                    pos.sell_qty -= shrink
                    pos.sell_value -= price * shrink
                self._set_reserve(account, pos, market.factor)
        else:
            # Re-queue as a fresh object: the book's lazy deletion leaves the old one in its
            # level's queue, where it must stay dead.
            self._unrest(market, account, order)
            order = order.requeued(price=price, qty=qty, ts=now)
            if order.client_id is not None:
                account.client_ids[order.client_id] = order
        market.seq += 1
        events.append(
            OrderAmended(
                ts=now,
                stream=market.symbol,
                seq=market.seq,
                order_id=order.id,
                account=account.id,
                side=order.side,
                old_price=old_price,
                price=price,
                qty=qty,
                remaining=remaining,
                priority_kept=keeps_priority,
            )
        )
        if not keeps_priority:
            self._execute(market, account, pos, order, opposite, events, now)
        return events

    # -- account commands -----------------------------------------------------------------------
    def _check_amount(self, amount: object) -> int:
        if not _is_int(amount) or not 0 < amount <= self.config.max_amount:  # type: ignore[operator]
            raise EngineError(
                RejectCode.INVALID_AMOUNT,
                f"amount {amount!r} must be money units in (0, {self.config.max_amount}]",
            )
        return amount  # type: ignore[return-value]

    def _deposit(self, command: Deposit) -> list[Event]:
        cmd: Any = command  # unvalidated fields: read untyped (mypyc checks typed reads)
        amount = self._check_amount(cmd.amount)
        if not isinstance(cmd.account, str) or not CLIENT_ID_PATTERN.fullmatch(cmd.account):
            raise EngineError(
                RejectCode.INVALID_ACCOUNT_ID,
                f"account id {cmd.account!r} must be 1-36 characters of A-Z a-z 0-9 . _ : / -",
            )
        account = self.accounts.get(cmd.account)
        if account is None:
            account = self.accounts[cmd.account] = Account(cmd.account)
        account.collateral += amount
        self._queue_check(account)
        self.total_deposits += amount
        self._accounts_seq += 1
        return [
            Deposited(
                ts=self._now(),
                stream=ACCOUNTS_STREAM,
                seq=self._accounts_seq,
                account=account.id,
                amount=amount,
                collateral=account.collateral,
            )
        ]

    def _withdraw(self, command: Withdraw) -> list[Event]:
        cmd: Any = command  # unvalidated fields: read untyped (mypyc checks typed reads)
        account = self._account(cmd.account)
        amount = self._check_amount(cmd.amount)
        allowed = min(self._available(account), account.collateral)
        if amount > allowed:
            raise EngineError(
                RejectCode.WITHDRAWAL_EXCEEDS_AVAILABLE,
                f"withdrawal {amount} exceeds the {allowed} available",
                requested=amount,
                available=allowed,
            )
        account.collateral -= amount
        self._queue_check(account)
        self.total_withdrawals += amount
        self._accounts_seq += 1
        return [
            Withdrawn(
                ts=self._now(),
                stream=ACCOUNTS_STREAM,
                seq=self._accounts_seq,
                account=account.id,
                amount=amount,
                collateral=account.collateral,
            )
        ]

    def _set_leverage(self, command: SetLeverage) -> list[Event]:
        cmd: Any = command  # unvalidated fields: read untyped (mypyc checks typed reads)
        market = self._market(cmd.market)
        account = self._account(cmd.account)
        inst = market.instrument
        leverage = cmd.leverage
        top = inst.brackets[0].max_leverage
        if not _is_int(leverage) or not 1 <= leverage <= top:
            raise EngineError(
                RejectCode.INVALID_LEVERAGE,
                f"leverage {leverage!r} must be an integer in [1, {top}]",
                max_leverage=top,
            )
        pos = self._position(account, market)
        if leverage == pos.leverage:
            raise EngineError(RejectCode.INVALID_LEVERAGE, f"leverage is already {leverage}")
        max_exposure = max_notional_at(inst.brackets, leverage)
        value = abs(pos.size) * market.mark * market.factor
        old_position_margin = ceil_div(value, pos.leverage)
        new_position_margin = ceil_div(value, leverage)
        self._check_exposure_and_margin(
            account,
            market,
            pos,
            0,  # no order added
            0,
            0,
            leverage,
            max_exposure,
            released_margin=old_position_margin - new_position_margin,
        )
        _keep_position(account, pos)
        pos.leverage = leverage
        pos.max_exposure = max_exposure
        self._set_reserve(account, pos, market.factor)
        market.seq += 1
        return [
            LeverageChanged(
                ts=self._now(),
                stream=market.symbol,
                seq=market.seq,
                account=account.id,
                leverage=leverage,
            )
        ]

    def _set_mark(self, command: SetMarkPrice) -> list[Event]:
        cmd: Any = command  # unvalidated fields: read untyped (mypyc checks typed reads)
        market = self._market(cmd.market)
        if not _is_int(cmd.price) or cmd.price <= 0:
            raise EngineError(RejectCode.INVALID_PRICE, f"mark {cmd.price!r} must be ticks > 0")
        self._move_mark(market, cmd.price)
        market.seq += 1
        return [MarkPriceSet(ts=self._now(), stream=market.symbol, seq=market.seq, price=cmd.price)]

    # -- prices and funding -------------------------------------------------------------------
    def _update_index_source(self, command: UpdateIndexSource) -> list[Event]:
        cmd: Any = command  # unvalidated fields: read untyped (mypyc checks typed reads)
        market = self._market(cmd.market)
        weights = market.instrument.mechanics.index.weights
        if not isinstance(cmd.source, str) or cmd.source not in weights:
            raise EngineError(
                RejectCode.UNKNOWN_INDEX_SOURCE,
                f"{market.symbol} has no index source {cmd.source!r}",
                sources=sorted(weights),
            )
        if not _is_int(cmd.price) or cmd.price <= 0:
            raise EngineError(RejectCode.INVALID_PRICE, f"price {cmd.price!r} must be ticks > 0")
        now = self._now()
        market.index_calc.update_source(cmd.source, cmd.price, now)
        market.seq += 1
        return [
            IndexSourceUpdated(
                ts=now, stream=market.symbol, seq=market.seq, source=cmd.source, price=cmd.price
            )
        ]

    def _tick(self, cmd: Tick) -> list[Event]:
        now = self._now()
        events: list[Event] = []
        for market in self.markets.values():
            self._advance_market(market, now, events)
        for account_id, state in self._liquidating.items():
            if state.next_step_ts <= now:
                self._queue_check(self.accounts[account_id])
        if self._dirty:
            self._evaluate_dirty(events)
        for market in self.markets.values():
            self._unwind_insurance(market, now, events)
        return events

    def _advance_market(self, market: Market, now: int, events: list[Event]) -> None:
        """Premium samples and funding settlements due by ``now`` (in time order), then the
        index and mark if their interval has passed."""
        mech = market.instrument.mechanics
        while True:
            sample_ts, funding_ts = market.next_sample_ts, market.next_funding_ts
            if min(sample_ts, funding_ts) > now:
                break
            if sample_ts <= funding_ts:
                premium = self._premium(market)
                if premium is not None:
                    market.funding.add_sample(premium, sample_ts)
                market.next_sample_ts = sample_ts + mech.funding.sample_interval_ms
            else:
                self._settle_funding(market, funding_ts, events)
                market.next_funding_ts = funding_ts + mech.funding.interval_ms
        if now >= market.next_mark_ts:
            self._update_prices(market, now, events)
            market.next_mark_ts = now - now % mech.mark_interval_ms + mech.mark_interval_ms

    def _premium(self, market: Market) -> int | None:
        """Premium index from impact prices on our own book; None (no sample this minute)
        when either side is too thin to fill the impact notional."""
        impact_bid = impact_price(
            market.book.bids.depth(1_000), market.impact_notional, market.factor
        )
        impact_ask = impact_price(
            market.book.asks.depth(1_000), market.impact_notional, market.factor
        )
        if impact_bid is None or impact_ask is None:
            return None
        return premium_index(impact_bid, impact_ask, market.index)

    def _update_prices(self, market: Market, now: int, events: list[Event]) -> None:
        result = market.index_calc.compute(now)
        if result.degraded:
            if not market.index_degraded:
                market.index_degraded = True
                market.seq += 1
                events.append(
                    IndexDegraded(
                        ts=now,
                        stream=market.symbol,
                        seq=market.seq,
                        held=market.index,
                        excluded=[f"{name}:{why}" for name, why in result.excluded],
                    )
                )
        else:
            assert result.price is not None
            market.index = result.price
            if market.index_degraded:
                market.index_degraded = False
                market.seq += 1
                events.append(
                    IndexRestored(ts=now, stream=market.symbol, seq=market.seq, index=market.index)
                )
        index = market.index
        book = market.book
        market.mark_calc.sample_basis(mid_ticks(book.best_bid(), book.best_ask()), index, now)
        rate = market.funding.predicted_rate()
        mark = market.mark_calc.compute(
            index,
            market.last,
            rate,
            market.next_funding_ts - now,
            market.instrument.mechanics.funding.interval_ms,
        )
        self._move_mark(market, mark)
        market.seq += 1
        events.append(
            PricesUpdated(
                ts=now,
                stream=market.symbol,
                seq=market.seq,
                index=index,
                mark=mark,
                last=market.last,
                funding_rate=rate,
                next_funding_ts=market.next_funding_ts,
            )
        )

    def _move_mark(self, market: Market, mark: int) -> None:
        """Set the mark and queue every account whose risk trigger it reached (and only them)."""
        if self._reindex_pending:
            self._flush_reindex()
        market.set_mark(mark)
        accounts = self.accounts
        for account_id in market.risk.due(mark):
            self._queue_check(accounts[account_id])

    def _settle_funding(self, market: Market, funding_ts: int, events: list[Event]) -> None:
        rate = market.funding.settle(funding_ts)
        symbol = market.symbol
        accounts = self.accounts
        holders = {  # in account-id order, so the events' order does not depend on history
            account_id: accounts[account_id].positions[symbol].size
            for account_id in sorted(market.holders)
        }
        payments, residue = funding_payments(holders, market.mark, rate, market.factor)
        for account_id, amount in payments.items():
            account = self.accounts[account_id]
            account.collateral -= amount
            self._queue_check(account)
            market.seq += 1
            events.append(
                FundingPaid(
                    ts=funding_ts,
                    stream=symbol,
                    seq=market.seq,
                    account=account_id,
                    size=holders[account_id],
                    amount=amount,
                )
            )
        self.accounts[market.insurance].collateral += residue
        market.seq += 1
        events.append(
            FundingSettled(
                ts=funding_ts,
                stream=symbol,
                seq=market.seq,
                funding_ts=funding_ts,
                rate=rate,
                mark=market.mark,
                paid=sum(a for a in payments.values() if a > 0),
                residue=residue,
            )
        )

    # -- risk: evaluation, margin calls, liquidation ---------------------------------------------
    def _margin_state(self, account: Account) -> tuple[int, int, list[tuple[int, str]]]:
        """``(equity, maintenance margin, [(position MM, market), ...])`` at the marks."""
        equity = account.collateral
        total_mm = 0
        contributions: list[tuple[int, str]] = []
        for pos in account.position_list:
            if pos.size:
                pnl, mm = _pnl_and_mm(pos)
                equity += pnl
                total_mm += mm
                contributions.append((mm, pos.market.symbol))
        return equity, total_mm, contributions

    def _margin_summary(self, account: Account) -> tuple[int, int, Market | None]:
        """``(equity, maintenance margin, lead market)`` at the marks: what
        :meth:`_margin_state` gives, with the market of the largest position MM (the first on
        a tie; None without positions) in place of the list, which is not built."""
        equity = account.collateral
        total_mm = 0
        lead: Market | None = None
        lead_mm = 0
        for pos in account.position_list:
            if pos.size:
                market = pos.market  # _pnl_and_mm, inlined (no tuple on this path)
                value = _value(pos)
                equity += value - pos.cost
                mm = maintenance_margin(market.brackets, value if value >= 0 else -value)
                total_mm += mm
                if lead is None or mm > lead_mm:
                    lead = market
                    lead_mm = mm
        return equity, total_mm, lead

    def _queue_check(self, account: Account) -> None:
        """Queue ``account`` for the margin check at the end of the command; one already
        waiting keeps its place."""
        if not account.dirty:
            account.dirty = True
            self._dirty.append(account)

    def _evaluate_dirty(self, events: list[Event]) -> None:
        """Check every queued account, first queued first, until none is left: an account
        queued again during the pass (once it has been checked) goes after the ones still
        waiting."""
        now = self._now()
        while self._dirty:
            waiting = self._dirty
            self._dirty = []
            for account in waiting:
                account.dirty = False
                self._evaluate(account, events, now)

    def _evaluate(self, account: Account, events: list[Event], now: int) -> None:
        """The exact check: liquidate, continue a liquidation, margin-call, or re-index."""
        if account.insurance:
            self._check_insurance_fund(account, events, now)
            return
        equity, mm, lead = self._margin_summary(account)
        state = account.liquidation
        if lead is not None and equity <= mm:
            cfg = lead.liquidation
            deep = rate_below(equity, cfg.backstop_ratio, mm)  # equity < backstop_ratio * MM
            if state is None or now >= state.next_step_ts or deep:
                self._liquidate(account, events, now)
                equity, mm, lead = self._margin_summary(account)
        elif lead is None and account.collateral < 0 and state is None:
            self._cover_deficit(account, events, now)
        elif state is not None:
            if _restored_at(equity, mm, lead):
                self._finish_liquidation(account, events, now)
            elif now >= state.next_step_ts:
                self._liquidate(account, events, now)
                equity, mm, lead = self._margin_summary(account)
        if lead is not None:
            call_ratio = lead.liquidation.margin_call_ratio
            called = not rate_below(mm, call_ratio, equity)  # MM >= call_ratio * equity
            if called and not account.called and account.liquidation is None:
                account.called = True
                self._accounts_seq += 1
                events.append(
                    MarginCall(
                        ts=now,
                        stream=ACCOUNTS_STREAM,
                        seq=self._accounts_seq,
                        account=account.id,
                        equity=equity,
                        maintenance_margin=mm,
                    )
                )
            elif not called:
                account.called = False
            # New triggers only matter once a mark moves: computed then, once (§15).
            if not account.reindex:
                account.reindex = True
                self._reindex_pending.append(account)
        else:
            account.called = False

    def _flush_reindex(self) -> None:
        """Give every account evaluated since the last mark move its triggers (§15), from its
        state now - which no mark move has changed since that evaluation."""
        pending = self._reindex_pending
        for account in pending:
            account.reindex = False
            equity, mm, contributions = self._margin_state(account)
            if not contributions:
                continue
            threshold = RATE_SCALE  # once called (or liquidating): watch for liquidation
            if not account.called and account.liquidation is None:
                threshold = self._lead_config(contributions).margin_call_ratio
            self._reindex(account, equity, mm, contributions, threshold)
        pending.clear()

    def _lead_config(self, contributions: list[tuple[int, str]]) -> LiquidationConfig:
        """Liquidation settings of the market with the largest maintenance margin (the first
        listed on a tie): they govern account-level decisions."""
        return self.markets[_lead_market(contributions)].liquidation

    def _reindex(
        self,
        account: Account,
        equity: int,
        mm: int,
        contributions: list[tuple[int, str]],
        threshold: int,
    ) -> None:
        """Give the account a trigger price in every market it holds: the mark may move that
        far against it before ``threshold * equity - MM`` can reach zero (docs/mechanics.md
        §15). Insurance funds use ``threshold`` = 100% and ``mm`` = 0: their trigger is zero
        equity."""
        if not contributions:
            return
        buffer = threshold * equity - RATE_SCALE * mm - RATE_SCALE * len(contributions) - 1
        self._risk_version += 1
        if len(contributions) == 1:  # the common case, without the bookkeeping below
            market = self.markets[contributions[0][1]]
            size = account.positions[market.symbol].size
            # safe_distance with one market: buffer * mark // (slope * mark) == buffer // slope
            distance = (
                buffer // slope_per_tick(size, market.factor, market.top_mmr) if buffer > 0 else 0
            )
            trigger = market.mark - distance if size > 0 else market.mark + distance
            market.risk.set(account.id, size, trigger, self._risk_version)
            return
        weights = []
        for _, symbol in contributions:
            market = self.markets[symbol]
            size = account.positions[symbol].size
            weights.append((market, size, slope_per_tick(size, market.factor, market.top_mmr)))
        total = sum(slope * market.mark for market, _, slope in weights)
        version = self._risk_version
        for market, size, _ in weights:
            distance = safe_distance(buffer, total, market.mark)
            trigger = market.mark - distance if size > 0 else market.mark + distance
            market.risk.set(account.id, size, trigger, version)

    def _liquidate(self, account: Account, events: list[Event], now: int) -> None:
        """Start or continue a liquidation: steps until healthy, or until the next cooldown."""
        state = account.liquidation
        if state is None:
            state = account.liquidation = self._liquidating[account.id] = LiquidationState(now)
            account.called = False
            equity, mm, _ = self._margin_state(account)
            orders = list(account.open_orders.values())
            for order in orders:
                self._cancel_resting(self.markets[order.market], order, "liquidation", events, now)
            self._accounts_seq += 1
            events.append(
                LiquidationStarted(
                    ts=now,
                    stream=ACCOUNTS_STREAM,
                    seq=self._accounts_seq,
                    account=account.id,
                    equity=equity,
                    maintenance_margin=mm,
                    orders_cancelled=len(orders),
                )
            )
        for _ in range(4 * len(self.markets) + 8):
            equity, mm, contributions = self._margin_state(account)
            if not contributions or (state.steps and self._restored(equity, mm, contributions)):
                break
            cfg = self._lead_config(contributions)
            mode, closed = self._liquidation_step(account, contributions, events, now)
            state.steps += 1
            if not closed:
                break  # nothing could absorb it now; the next evaluation tries again
            equity, mm, contributions = self._margin_state(account)
            if self._restored(equity, mm, contributions):
                break
            deep = equity * RATE_SCALE < cfg.backstop_ratio * mm
            if mode is LiquidationMode.INCREMENTAL and not deep:
                state.next_step_ts = now + cfg.cooldown_ms
                return
        if self._restored(*self._margin_state(account)):
            self._finish_liquidation(account, events, now)

    def _restored(self, equity: int, mm: int, contributions: list[tuple[int, str]]) -> bool:
        """A liquidation is over: no position left, or MM at most the target share of equity."""
        lead = self.markets[_lead_market(contributions)] if contributions else None
        return _restored_at(equity, mm, lead)

    def _liquidation_step(
        self,
        account: Account,
        contributions: list[tuple[int, str]],
        events: list[Event],
        now: int,
    ) -> tuple[LiquidationMode, int]:
        """Close (part of) the position with the largest maintenance margin; return the mode
        and the lots closed. Order of venues:
        auction (auction mode), then the book down to the bankruptcy price, then the insurance
        fund takes the rest at the bankruptcy price, or ADL if the fund cannot afford it."""
        equity, mm, _ = self._margin_state(account)
        symbol = _lead_market(contributions)
        market = self.markets[symbol]
        cfg = market.instrument.mechanics.liquidation
        pos = account.positions[symbol]
        size, mark, factor = pos.size, market.mark, market.factor
        held = abs(size)
        close_side = -1 if size > 0 else 1
        deep = equity * RATE_SCALE < cfg.backstop_ratio * mm
        if deep:
            qty = held
        elif cfg.mode is LiquidationMode.INCREMENTAL and held * mark * factor > (
            cfg.min_step_notional
        ):
            qty = min(steps_for(size, cfg.step_rate), self._lots_to_restore(account, market, cfg))
        else:
            qty = held
        bankruptcy = bankruptcy_price(size, mark, equity, factor)
        auction_qty = book_qty = takeover_qty = adl_qty = fee = 0
        if not deep:
            if cfg.mode is LiquidationMode.AUCTION:
                auction_qty = self._auction(account, market, qty, bankruptcy, events, now)
            remaining = qty - auction_qty
            if remaining:
                book_qty, notional = self._liquidation_order(
                    account, market, close_side, remaining, bankruptcy, events, now
                )
                after, _, _ = self._margin_state(account)
                fee = min(mul_rate_ceil(notional, cfg.fee_rate), max(0, after))
                if fee:
                    account.collateral -= fee
                    self.accounts[market.insurance].collateral += fee
        rest = qty - auction_qty - book_qty
        if rest and pos.size:
            rest = min(rest, abs(pos.size))
            equity_now, _, _ = self._margin_state(account)
            price = bankruptcy_price(pos.size, mark, equity_now, factor)
            fund = self.accounts[market.insurance]
            fund_equity, _, _ = self._margin_state(fund)
            fund_pnl_at_mark = (1 if pos.size > 0 else -1) * (mark - price) * rest * factor
            if fund_equity + fund_pnl_at_mark >= 0:
                takeover_qty = rest
                self._transfer(market, account, fund, rest, price, "takeover", events, now)
                if fund_pnl_at_mark < 0:
                    self._market_event_fund_used(market, fund, -fund_pnl_at_mark, events, now)
            else:
                adl_qty = self._adl(market, account, rest, price, events, now)
        market.seq += 1
        events.append(
            LiquidationFill(
                ts=now,
                stream=symbol,
                seq=market.seq,
                account=account.id,
                mode=cfg.mode.value if not deep else "BACKSTOP",
                side=close_side,
                qty=auction_qty + book_qty + takeover_qty + adl_qty,
                book_qty=book_qty,
                auction_qty=auction_qty,
                takeover_qty=takeover_qty,
                adl_qty=adl_qty,
                mark=mark,
                bankruptcy_price=bankruptcy,
                fee=fee,
                equity=equity,
                maintenance_margin=mm,
            )
        )
        return cfg.mode, auction_qty + book_qty + takeover_qty + adl_qty

    def _lots_to_restore(self, account: Account, market: Market, cfg: LiquidationConfig) -> int:
        """Fewest lots of this position to close at the mark (paying the liquidation fee) for
        MM / equity to fall to the target; the whole position if even that is not enough."""
        equity, mm, _ = self._margin_state(account)
        pos = account.positions[market.symbol]
        held, mark, factor = abs(pos.size), market.mark, market.factor
        brackets = market.instrument.brackets
        position_mm = maintenance_margin(brackets, held * mark * factor)

        def healthy(lots: int) -> bool:
            fee = mul_rate_ceil(lots * mark * factor, cfg.fee_rate)
            mm_after = (
                mm - position_mm + maintenance_margin(brackets, (held - lots) * mark * factor)
            )
            return bool(mm_after * RATE_SCALE <= cfg.target_ratio * (equity - fee))

        low, high = 1, held
        if not healthy(high):
            return held
        while low < high:
            middle = (low + high) // 2
            if healthy(middle):
                high = middle
            else:
                low = middle + 1
        return low

    def _liquidation_order(
        self,
        account: Account,
        market: Market,
        side: int,
        qty: int,
        limit: int,
        events: list[Event],
        now: int,
    ) -> tuple[int, int]:
        """An IOC reduce-only order for the account into the book, never beyond ``limit``.
        Returns (filled lots, filled notional in money units). (The limit, the bankruptcy
        price, can lie outside 0..MAX_TICKS; the order's is held within, where every resting
        price is, so it fills the same.)"""
        limit = 0 if limit < 0 else MAX_TICKS if limit > MAX_TICKS else limit
        order, accepted = self._accept(
            market,
            account,
            account.positions[market.symbol],
            side,
            limit,
            qty,
            OrderType.LIQUIDATION,
            TimeInForce.IOC,
            True,
            None,
            SelfTradePrevention.CANCEL_MAKER,
            now,
        )
        events.append(accepted)
        first = len(events)
        book_side = market.book.asks if side > 0 else market.book.bids
        pos = account.positions[market.symbol]
        self._execute(market, account, pos, order, book_side, events, now)
        notional = sum(
            int(e.price * e.qty) * market.factor
            for e in events[first:]
            if isinstance(e, Trade) and e.taker_order_id == order.id
        )
        return order.filled, notional

    def _auction(
        self,
        account: Account,
        market: Market,
        qty: int,
        bankruptcy: int,
        events: list[Event],
        now: int,
    ) -> int:
        """Descending-price auction to the market's registered backstops: price steps from the
        mark toward the bankruptcy price; at each step every backstop whose discount is met
        takes what it can afford (registration order). Returns the lots sold."""
        cfg = market.instrument.mechanics.liquidation
        pos = account.positions[market.symbol]
        mark, factor = market.mark, market.factor
        long_position = pos.size > 0
        taken: dict[str, int] = {}
        left = qty
        for step in range(cfg.auction_steps + 1):
            price = mark + (bankruptcy - mark) * step // cfg.auction_steps
            for backstop_id, (max_qty, discount) in market.backstops.items():
                if not left or not pos.size:
                    break
                if backstop_id == account.id:
                    continue
                if long_position:  # the backstop buys: needs price <= mark * (1 - discount)
                    acceptable = price * RATE_SCALE <= mark * (RATE_SCALE - discount)
                else:
                    acceptable = price * RATE_SCALE >= mark * (RATE_SCALE + discount)
                capacity = max_qty - taken.get(backstop_id, 0)
                if not acceptable or capacity <= 0:
                    continue
                backstop = self.accounts[backstop_id]
                slot = self._position(backstop, market)
                margin_per_lot = ceil_div(mark * factor, slot.leverage)
                affordable = max(0, self._available(backstop)) // margin_per_lot
                lots = min(left, capacity, affordable, abs(pos.size))
                if lots <= 0:
                    continue
                self._transfer(market, account, backstop, lots, price, "auction", events, now)
                taken[backstop_id] = taken.get(backstop_id, 0) + lots
                left -= lots
        return qty - left

    def _transfer(
        self,
        market: Market,
        source: Account,
        target: Account,
        qty: int,
        price: int,
        reason: str,
        events: list[Event],
        now: int,
    ) -> None:
        """Move ``qty`` lots of ``source``'s position to ``target`` at ``price``, off the book
        and without fees: ``source`` closes, ``target`` trades the same direction."""
        symbol = market.symbol
        source_pos = source.positions[symbol]
        side = 1 if source_pos.size > 0 else -1
        target_pos = target.positions.get(symbol)
        if target_pos is None:
            target_pos = self._position(target, market)
            _keep_position(target, target_pos)
        source.collateral += _apply_fill(source_pos, -side, price, qty, market.factor)
        target.collateral += _apply_fill(target_pos, side, price, qty, market.factor)
        self._track_holder(market, source.id, source_pos)
        self._track_holder(market, target.id, target_pos)
        for account, pos in ((source, source_pos), (target, target_pos)):
            self._set_reserve(account, pos, market.factor)
            if pos.reduce_only_orders:
                self._sync_reduce_only(market, account, pos, events, now)
            self._queue_check(account)
        market.seq += 1
        events.append(
            PositionTransferred(
                ts=now,
                stream=symbol,
                seq=market.seq,
                from_account=source.id,
                to_account=target.id,
                side=side,
                qty=qty,
                price=price,
                reason=reason,
            )
        )

    def _adl(
        self,
        market: Market,
        bankrupt: Account,
        qty: int,
        price: int,
        events: list[Event],
        now: int,
    ) -> int:
        """Close ``qty`` lots of ``bankrupt``'s position against opposing positions, highest
        ADL score first (ties: account id), at ``price``. Returns the lots closed."""
        symbol = market.symbol
        bankrupt_side = 1 if bankrupt.positions[symbol].size > 0 else -1
        ranked = []
        for account_id in market.holders:
            acc = self.accounts[account_id]
            pos = acc.positions[symbol]
            if (
                account_id == bankrupt.id
                or account_id in self.insurance_funds
                or pos.size * bankrupt_side >= 0
            ):
                continue
            equity, _, _ = self._margin_state(acc)
            value = pos.size * market.mark * market.factor
            score = adl_score(value - pos.cost, pos.cost, abs(value), equity)
            ranked.append((-score, account_id))
        heapify(ranked)  # pop the best few instead of sorting everyone
        left = qty
        while left and ranked:
            _, account_id = heappop(ranked)
            counterparty = self.accounts[account_id]
            lots = min(left, abs(counterparty.positions[symbol].size))
            self._transfer(market, bankrupt, counterparty, lots, price, "adl", events, now)
            left -= lots
        # Last resort: only an insurance fund holds the other side; it absorbs the rest.
        for fund_id in self.insurance_funds:
            fund_pos = self.accounts[fund_id].positions.get(symbol)
            if not left or fund_id == bankrupt.id or fund_pos is None:
                continue
            if fund_pos.size * bankrupt_side < 0:
                lots = min(left, abs(fund_pos.size))
                fund = self.accounts[fund_id]
                self._transfer(market, bankrupt, fund, lots, price, "adl", events, now)
                left -= lots
        return qty - left

    def _check_insurance_fund(self, fund: Account, events: list[Event], now: int) -> None:
        """A fund whose equity fell below zero closes its positions by ADL at its bankruptcy
        price; otherwise it is re-indexed (its trigger is zero equity)."""
        equity, _, contributions = self._margin_state(fund)
        if contributions and equity < 0:
            for _, symbol in sorted(contributions, reverse=True):
                market = self.markets[symbol]
                pos = fund.positions[symbol]
                if not pos.size:
                    continue
                equity, _, _ = self._margin_state(fund)
                price = bankruptcy_price(pos.size, market.mark, equity, market.factor)
                self._adl(market, fund, abs(pos.size), price, events, now)
            equity, _, contributions = self._margin_state(fund)
        if fund.dirty:  # (its own ADL queued it again: this was its check)
            fund.dirty = False
            self._dirty.remove(fund)
        self._reindex(fund, equity, 0, contributions, RATE_SCALE)

    def _market_event_fund_used(
        self, market: Market, fund: Account, amount: int, events: list[Event], now: int
    ) -> None:
        market.seq += 1
        events.append(
            InsuranceFundUsed(
                ts=now,
                stream=market.symbol,
                seq=market.seq,
                account=fund.id,
                amount=amount,
                balance=fund.collateral,
                reason="takeover",
            )
        )

    def _finish_liquidation(self, account: Account, events: list[Event], now: int) -> None:
        """End the liquidation; an account left with no position and negative collateral is
        made whole by the insurance fund of the market it last held."""
        self._liquidating.pop(account.id, None)
        account.liquidation = None
        equity, mm, contributions = self._margin_state(account)
        if not contributions and account.collateral < 0:
            self._cover_deficit(account, events, now)
            equity = 0
        self._accounts_seq += 1
        events.append(
            LiquidationFinished(
                ts=now,
                stream=ACCOUNTS_STREAM,
                seq=self._accounts_seq,
                account=account.id,
                equity=equity,
                maintenance_margin=mm,
            )
        )

    def _cover_deficit(self, account: Account, events: list[Event], now: int) -> None:
        """An account with no position left and negative collateral (a gap through its
        bankruptcy price, or an ADL at another account's bankruptcy price) is brought back to
        zero by the insurance fund of the first market it traded."""
        symbol = next(iter(account.positions), next(iter(self.markets)))
        fund = self.accounts[self.markets[symbol].insurance]
        deficit = -account.collateral
        fund.collateral -= deficit
        account.collateral = 0
        self._queue_check(fund)
        self._accounts_seq += 1
        events.append(
            InsuranceFundUsed(
                ts=now,
                stream=ACCOUNTS_STREAM,
                seq=self._accounts_seq,
                account=fund.id,
                amount=deficit,
                balance=fund.collateral,
                reason=f"deficit of {account.id}",
            )
        )

    def _unwind_insurance(self, market: Market, now: int, events: list[Event]) -> None:
        """The insurance fund sells what it took over back into the book (reduce-only market
        orders within the protection band), at most once per mark interval."""
        fund = self.accounts[market.insurance]
        pos = fund.positions.get(market.symbol)
        if pos is None or not pos.size or now < market.next_unwind_ts:
            return
        market.next_unwind_ts = now + market.instrument.mechanics.mark_interval_ms
        qty = min(abs(pos.size), market.instrument.market_max_qty)
        side = Side.SELL if pos.size > 0 else Side.BUY
        try:
            events.extend(
                self._place(
                    PlaceOrder(
                        fund.id,
                        market.symbol,
                        side,
                        qty,
                        order_type=OrderType.MARKET,
                        reduce_only=True,
                    ),
                    fund,
                )
            )
        except EngineError:
            return
        if self._dirty:
            self._evaluate_dirty(events)

    def _register_backstop(self, command: RegisterBackstop) -> list[Event]:
        cmd: Any = command  # unvalidated fields: read untyped (mypyc checks typed reads)
        market = self._market(cmd.market)
        account = self._account(cmd.account)
        if (
            not _is_int(cmd.max_qty)
            or not _is_int(cmd.discount)
            or cmd.max_qty < 0
            or not 0 <= cmd.discount < RATE_SCALE
            or account.id in self.insurance_funds
        ):
            raise EngineError(
                RejectCode.INVALID_BACKSTOP,
                "a backstop needs max_qty >= 0 lots and 0 <= discount < 100%",
            )
        if cmd.max_qty:
            market.backstops[account.id] = (cmd.max_qty, cmd.discount)
        else:
            market.backstops.pop(account.id, None)
        market.seq += 1
        return [
            BackstopRegistered(
                ts=self._now(),
                stream=market.symbol,
                seq=market.seq,
                account=account.id,
                max_qty=cmd.max_qty,
                discount=cmd.discount,
            )
        ]

    # -- queries (never change state) -----------------------------------------------------------
    def account_view(self, account_id: str) -> AccountView:
        """Margin state of ``account_id`` at the current marks."""
        account = self._account(account_id)
        upnl_total = position_margin = mm_total = 0
        views = []
        for symbol, pos in account.positions.items():
            market = self.markets[symbol]
            value = pos.size * market.mark * market.factor
            upnl = value - pos.cost if pos.size else 0
            notional = abs(value)
            im = ceil_div(notional, pos.leverage)
            mm = maintenance_margin(market.instrument.brackets, notional) if pos.size else 0
            upnl_total += upnl
            position_margin += im
            mm_total += mm
            if pos.size or pos.open_orders or pos.realized_pnl:
                views.append(
                    PositionView(
                        market=symbol,
                        size=pos.size,
                        cost=pos.cost,
                        leverage=pos.leverage,
                        mark=market.mark,
                        unrealized_pnl=upnl,
                        realized_pnl=pos.realized_pnl,
                        initial_margin=im,
                        maintenance_margin=mm,
                        order_margin=pos.reserve,
                        liquidation_price=self.liquidation_price(account.id, symbol),
                    )
                )
        equity = account.collateral + upnl_total
        return AccountView(
            account=account.id,
            collateral=account.collateral,
            unrealized_pnl=upnl_total,
            equity=equity,
            position_margin=position_margin,
            order_margin=account.reserve,
            available=equity - position_margin - account.reserve,
            maintenance_margin=mm_total,
            margin_ratio=margin_ratio(mm_total, equity),
            in_liquidation=account.liquidation is not None,
            positions=tuple(views),
        )

    def liquidation_price(self, account_id: str, symbol: str) -> int | None:
        """The mark (ticks) of ``symbol`` at which the account becomes liquidatable
        (equity <= maintenance margin) with every other mark unchanged: for a long the highest
        such price, for a short the lowest. None without a position, or if no price can."""
        account = self._account(account_id)
        market = self._market(symbol)
        pos = account.positions.get(symbol)
        if pos is None or not pos.size:
            return None
        brackets, factor = market.instrument.brackets, market.factor
        equity, mm, _ = self._margin_state(account)
        value = pos.size * market.mark * factor
        return liquidation_price(
            pos.size,
            pos.cost,
            factor,
            brackets,
            equity - (value - pos.cost),
            mm - maintenance_margin(brackets, abs(value)),
            market.mark,
        )

    def prices(self, symbol: str) -> MarketPrices:
        """Last, index and mark price, the predicted and last funding rate, the next funding
        time and the insurance fund's balance."""
        market = self._market(symbol)
        return MarketPrices(
            market=symbol,
            last=market.last,
            index=market.index,
            mark=market.mark,
            index_degraded=market.index_degraded,
            predicted_funding_rate=market.funding.predicted_rate(),
            last_funding_rate=market.funding.last_rate,
            next_funding_ts=market.next_funding_ts,
            insurance_fund=self.accounts[market.insurance].collateral,
        )

    def premium(self, symbol: str) -> int | None:
        """The premium index (rate units) the book shows now: impact bid/ask against the index;
        None when a side is too thin to fill the impact notional."""
        return self._premium(self._market(symbol))

    def book_snapshot(self, symbol: str, depth: int = 20) -> BookSnapshot:
        """Aggregated ``(price, qty)`` levels, best first, with the market's sequence number."""
        market = self._market(symbol)
        return BookSnapshot(
            market=symbol,
            seq=market.seq,
            bids=market.book.bids.depth(depth),
            asks=market.book.asks.depth(depth),
        )

    def open_orders(self, account_id: str, market: str | None = None) -> list[Order]:
        """The account's resting orders, oldest first."""
        account = self._account(account_id)
        return [o for o in account.open_orders.values() if market is None or o.market == market]

    def get_order(
        self, account_id: str, *, order_id: int | None = None, client_id: str | None = None
    ) -> Order | None:
        """An open or recently finished order of the account, by id or client id."""
        account = self._account(account_id)
        if client_id is not None:
            found = account.client_ids.get(client_id)
            if found is not None and not found.live and found in account.forgotten:
                return None  # no longer remembered (its id not yet released: see _forget_oldest)
            return found
        if order_id is None:
            return None
        order = account.open_orders.get(order_id)
        if order is None:
            # Finished orders are kept in a queue, not indexed by id: a lookup here is rare
            # (order queries), while a dict would cost every order that finishes.
            for done in account.finished:
                if done.id == order_id:
                    return done
        return order


def _lead_market(contributions: list[tuple[int, str]]) -> str:
    """The market whose position has the largest maintenance margin (first listed on a tie)."""
    if len(contributions) == 1:
        return contributions[0][1]
    return max(contributions, key=lambda c: c[0])[1]


def _apply_fill(pos: Position, side: int, price: int, qty: int, factor: int) -> int:
    """:func:`perpbot.risk.margin.apply_fill`, plus the position's realized PnL."""
    pos.size, pos.cost, pnl = fill_position(pos.size, pos.cost, side, price, qty, factor)
    pos.realized_pnl += pnl
    return pnl


def order_record(order: Order) -> dict[str, Any]:
    """A plain-data snapshot of an order (for rejection details and logs)."""
    return {
        "order_id": order.id,
        "client_id": order.client_id,
        "account": order.account,
        "market": order.market,
        "side": int(order.side),
        "order_type": str(order.order_type),
        "tif": str(order.tif),
        "price": order.price,
        "qty": order.qty,
        "filled": order.filled,
        "remaining": order.remaining,
        "reduce_only": order.reduce_only,
        "status": order.status,
        "ts": order.ts,
    }

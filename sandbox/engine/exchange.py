"""The exchange facade: ``submit(command) -> events``. Pure, synchronous and deterministic.

Every handler validates the whole command before it changes anything, so a refused command
returns a single :class:`~sandbox.engine.events.Rejected` and leaves the state untouched. The
same commands with the same clock readings give byte-identical events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from perpbot.risk.margin import RATE_SCALE, ceil_div, maintenance_margin, mul_rate_ceil

from .accounts import Account, Position, max_notional_at, order_reserve
from .book import CANCELED, EXPIRED, FILLED, PARTIALLY_FILLED, Book, BookSide, Level, Order
from .clock import Clock
from .codes import EngineError, RejectCode
from .commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    SetLeverage,
    SetMarkPrice,
    Side,
    TimeInForce,
    Withdraw,
)
from .events import (
    ACCOUNTS_STREAM,
    Deposited,
    Event,
    LeverageChanged,
    MarkPriceSet,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    Rejected,
    Trade,
    Withdrawn,
)
from .instruments import Instrument

CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:/-]{1,36}")
_RESTING_TIFS = (TimeInForce.GTC, TimeInForce.POST_ONLY)
_CANCEL_TAKER = SelfTradePrevention.CANCEL_TAKER
_CANCEL_MAKER = SelfTradePrevention.CANCEL_MAKER


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """Engine-wide settings (per-market settings live on :class:`Instrument`)."""

    default_stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER
    max_open_orders: int = 200  # per account and market
    recent_orders: int = 1000  # finished orders remembered per account
    recent_order_ttl_ms: int = 24 * 3600 * 1000  # ... for at most this long after they finished
    max_amount: int = 10**18  # largest single deposit/withdrawal (10 billion USDT)


class Market:
    """Per-market state: the instrument, its book, prices and the event sequence."""

    __slots__ = ("book", "factor", "instrument", "last", "mark", "seq", "symbol", "trade_id")

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.factor = instrument.notional_factor
        self.book = Book()
        self.mark = instrument.initial_price
        self.last: int | None = None
        self.seq = 0
        self.trade_id = 0


@dataclass(frozen=True, slots=True)
class PositionView:
    market: str
    size: int
    cost: int
    leverage: int
    unrealized_pnl: int
    realized_pnl: int
    initial_margin: int
    maintenance_margin: int
    order_margin: int


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
    positions: tuple[PositionView, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Aggregated depth at the market's event sequence number ``seq``."""

    market: str
    seq: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


def _is_int(value: object) -> bool:
    return type(value) is int


_E = TypeVar("_E", OrderType, TimeInForce, SelfTradePrevention)


def _member(enum: type[_E], value: object) -> _E:
    """``value`` as a member of ``enum`` (members pass through; their string values convert)."""
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value))
    except ValueError:
        raise EngineError(
            RejectCode.INVALID_ORDER, f"{value!r} is not a valid {enum.__name__}"
        ) from None


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
        self.markets: dict[str, Market] = {i.symbol: Market(i) for i in instruments}
        self.accounts: dict[str, Account] = {}
        self.fees_collected = 0
        self.total_deposits = 0
        self.total_withdrawals = 0
        self._accounts_seq = 0
        self._next_order_id = 1
        self._open: dict[int, Order] = {}
        self._handlers: dict[type, Callable[[Any], list[Event]]] = {
            PlaceOrder: self._place,
            CancelOrder: self._cancel,
            CancelAll: self._cancel_all,
            AmendOrder: self._amend,
            Deposit: self._deposit,
            Withdraw: self._withdraw,
            SetLeverage: self._set_leverage,
            SetMarkPrice: self._set_mark,
        }

    # -- the one entry point ------------------------------------------------------------------
    def submit(self, command: Command) -> list[Event]:
        """Apply ``command``; return the events it caused, or one ``Rejected``."""
        handler = self._handlers.get(type(command))
        try:
            if handler is None:
                raise EngineError(
                    RejectCode.UNKNOWN_COMMAND, f"unknown command {type(command).__name__}"
                )
            return handler(command)
        except EngineError as err:
            return [
                Rejected(
                    ts=self.clock.now_ms(), code=err.code, message=err.message, details=err.details
                )
            ]

    # -- lookups that raise typed errors --------------------------------------------------------
    def _market(self, symbol: object) -> Market:
        market = self.markets.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise EngineError(RejectCode.UNKNOWN_MARKET, f"unknown market {symbol!r}")
        return market

    def _account(self, account_id: object) -> Account:
        account = self.accounts.get(account_id) if isinstance(account_id, str) else None
        if account is None:
            raise EngineError(RejectCode.UNKNOWN_ACCOUNT, f"unknown account {account_id!r}")
        return account

    def _position(self, account: Account, market: Market) -> Position:
        """The account's position slot in ``market``; a detached blank one if it has none yet
        (stored only once a command is accepted, so rejections leave no trace)."""
        pos = account.positions.get(market.symbol)
        if pos is None:
            inst = market.instrument
            lev = inst.default_leverage
            pos = Position(lev, max_notional_at(inst.brackets, lev))
        return pos

    def _find_open(self, account: Account, market: Market, cmd: CancelOrder | AmendOrder) -> Order:
        if (cmd.order_id is None) == (cmd.client_id is None):
            raise EngineError(RejectCode.INVALID_ORDER, "give exactly one of order_id, client_id")
        if cmd.order_id is not None:
            order = self._open.get(cmd.order_id) if _is_int(cmd.order_id) else None
        elif isinstance(cmd.client_id, str):
            order = account.client_ids.get(cmd.client_id)
        else:
            order = None
        if (
            order is None
            or not order.live
            or order.account != account.id
            or order.market != market.symbol
        ):
            ref = cmd.order_id if cmd.order_id is not None else cmd.client_id
            raise EngineError(RejectCode.UNKNOWN_ORDER, f"no open order {ref!r} in {market.symbol}")
        return order

    # -- margin ---------------------------------------------------------------------------------
    def _available(self, account: Account) -> int:
        """Equity at mark minus position initial margin minus margin held by open orders."""
        equity = account.collateral
        position_margin = 0
        markets = self.markets
        for symbol, pos in account.positions.items():
            if pos.size:
                market = markets[symbol]
                value = pos.size * market.mark * market.factor
                equity += value - pos.cost
                position_margin += ceil_div(value if value > 0 else -value, pos.leverage)
        return equity - position_margin - account.reserve

    def _check_exposure_and_margin(
        self,
        account: Account,
        market: Market,
        pos: Position,
        buy: tuple[int, int],
        sell: tuple[int, int],
        leverage: int,
        max_exposure: int,
        *,
        released_margin: int = 0,
    ) -> int:
        """Validate a would-be order set ``buy``/``sell`` = (qty, value) for the position;
        return the order margin it would hold. Raises if the worst-case exposure exceeds the
        bracket or the extra margin exceeds the available balance."""
        size = pos.size
        worst = max(abs(size + buy[0]), abs(size - sell[0]))
        exposure = worst * market.mark * market.factor
        if exposure > max_exposure:
            raise EngineError(
                RejectCode.MAX_POSITION_EXCEEDED,
                f"worst-case position notional {exposure} exceeds {max_exposure} at "
                f"{leverage}x leverage",
                notional=exposure,
                max_notional=max_exposure,
                leverage=leverage,
            )
        reserve = order_reserve(size, buy[0], buy[1], sell[0], sell[1], leverage, market.factor)
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
    def _place(self, cmd: PlaceOrder) -> list[Event]:
        market = self._market(cmd.market)
        account = self._account(cmd.account)
        inst = market.instrument
        side = cmd.side
        if type(side) not in (int, Side) or (side != 1 and side != -1):
            raise EngineError(RejectCode.INVALID_ORDER, f"side must be BUY or SELL, got {side!r}")
        qty = cmd.qty
        if not _is_int(qty) or qty <= 0:
            raise EngineError(RejectCode.INVALID_QUANTITY, f"quantity {qty!r} must be lots > 0")
        if qty < inst.min_qty:
            raise EngineError(
                RejectCode.QTY_BELOW_MIN, f"quantity {qty} < {inst.min_qty}", min_qty=inst.min_qty
            )
        mark = market.mark
        order_type = _member(OrderType, cmd.order_type)
        tif = None if cmd.tif is None else _member(TimeInForce, cmd.tif)
        if order_type is OrderType.LIMIT:
            price = cmd.price
            if not _is_int(price) or price <= 0:  # type: ignore[operator]
                raise EngineError(RejectCode.INVALID_PRICE, f"price {price!r} must be ticks > 0")
            assert price is not None
            tif = TimeInForce.GTC if tif is None else tif
            max_qty = inst.max_qty
            self._check_band(inst, price, mark)
            limit = notional_price = price
        else:
            if cmd.price is not None:
                raise EngineError(RejectCode.INVALID_ORDER, "a market order takes no price")
            tif = TimeInForce.IOC if tif is None else tif
            if tif not in (TimeInForce.IOC, TimeInForce.FOK):
                raise EngineError(RejectCode.INVALID_ORDER, f"a market order cannot be {tif}")
            max_qty = inst.market_max_qty
            band = inst.market_band
            # Protection limit: never sweep beyond mark * (1 +- market_band), rounded inward.
            if side > 0:
                limit = mark * (RATE_SCALE + band) // RATE_SCALE
            else:
                limit = ceil_div(mark * (RATE_SCALE - band), RATE_SCALE)
            notional_price = mark
        if qty > max_qty:
            raise EngineError(
                RejectCode.QTY_ABOVE_MAX, f"quantity {qty} > {max_qty}", max_qty=max_qty
            )
        stp = self.config.default_stp if cmd.stp is None else _member(SelfTradePrevention, cmd.stp)
        client_id = cmd.client_id
        if client_id is not None:
            self._check_client_id(account, client_id)
        pos = self._position(account, market)
        reduce_only = cmd.reduce_only is True
        if cmd.reduce_only is not True and cmd.reduce_only is not False:
            raise EngineError(RejectCode.INVALID_ORDER, "reduce_only must be a bool")
        rests = tif in _RESTING_TIFS
        if rests and pos.open_orders >= self.config.max_open_orders:
            raise EngineError(
                RejectCode.TOO_MANY_OPEN_ORDERS,
                f"at most {self.config.max_open_orders} open orders per market",
                max_open_orders=self.config.max_open_orders,
            )
        book_side = market.book.asks if side > 0 else market.book.bids
        if tif is TimeInForce.POST_ONLY:
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
            notional = notional_price * qty * market.factor
            if notional < inst.min_notional:
                raise EngineError(
                    RejectCode.NOTIONAL_BELOW_MIN,
                    f"notional {notional} < {inst.min_notional}",
                    notional=notional,
                    min_notional=inst.min_notional,
                )
            value = limit * qty
            buy = (pos.buy_qty + qty, pos.buy_value + value) if side > 0 else None
            sell = (pos.sell_qty + qty, pos.sell_value + value) if side < 0 else None
            reserve = self._check_exposure_and_margin(
                account,
                market,
                pos,
                buy or (pos.buy_qty, pos.buy_value),
                sell or (pos.sell_qty, pos.sell_value),
                pos.leverage,
                pos.max_exposure,
            )
        if tif is TimeInForce.FOK:
            fillable = self._fillable(market, book_side, account.id, limit, qty, stp)
            if fillable < qty:
                raise EngineError(
                    RejectCode.FOK_NOT_FILLABLE,
                    f"only {fillable} of {qty} can fill now",
                    fillable=fillable,
                )
        del reserve  # validated; the real reserve is recomputed as the order rests or fills

        # ---- accepted: from here on, state changes ----
        now = self.clock.now_ms()
        account.positions.setdefault(market.symbol, pos)
        order_id = self._next_order_id
        self._next_order_id = order_id + 1
        order = Order(
            order_id,
            account.id,
            market.symbol,
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
        if client_id is not None:
            account.client_ids[client_id] = order
        market.seq += 1
        events: list[Event] = [
            OrderAccepted(
                ts=now,
                stream=market.symbol,
                seq=market.seq,
                order_id=order_id,
                client_id=client_id,
                account=account.id,
                side=side,
                order_type=order_type,
                tif=tif,
                price=limit,
                qty=qty,
                reduce_only=reduce_only,
            )
        ]
        self._execute(market, account, pos, order, book_side, events, now)
        return events

    def _execute(
        self,
        market: Market,
        account: Account,
        pos: Position,
        order: Order,
        book_side: BookSide,
        events: list[Event],
        now: int,
    ) -> None:
        """Match ``order`` as a taker, then rest or expire what is left."""
        stopped = self._match(market, order, book_side, events, now)
        if pos.reduce_only_orders:
            self._sync_reduce_only(market, account, pos, events, now)
        if order.remaining == 0:
            order.status = FILLED
            self._finish(account, order, now)
        elif stopped or order.tif not in _RESTING_TIFS:
            self._emit_cancel(market, order, "self_trade" if stopped else "expired", events, now)
            order.status = EXPIRED
            self._finish(account, order, now)
        else:
            self._rest(market, account, pos, order)

    def _rest(self, market: Market, account: Account, pos: Position, order: Order) -> None:
        market.book.side(order.side).add(order)
        account.open_orders[order.id] = order
        self._open[order.id] = order
        pos.open_orders += 1
        if order.reduce_only:
            pos.reduce_only_orders += 1
            return
        if order.side > 0:
            pos.buy_qty += order.remaining
            pos.buy_value += order.price * order.remaining
        else:
            pos.sell_qty += order.remaining
            pos.sell_value += order.price * order.remaining
        self._set_reserve(account, pos, market.factor)

    def _unrest(self, market: Market, account: Account, order: Order) -> Position:
        """Take a live order out of the book and out of its account's aggregates."""
        market.book.side(order.side).remove(order)
        del account.open_orders[order.id]
        del self._open[order.id]
        pos = account.positions[market.symbol]
        pos.open_orders -= 1
        if order.reduce_only:
            pos.reduce_only_orders -= 1
        else:
            if order.side > 0:
                pos.buy_qty -= order.remaining
                pos.buy_value -= order.price * order.remaining
            else:
                pos.sell_qty -= order.remaining
                pos.sell_value -= order.price * order.remaining
            self._set_reserve(account, pos, market.factor)
        return pos

    def _finish(self, account: Account, order: Order, now: int) -> None:
        """Remember a finished order (and its client id) for a while, within bounds."""
        order.done_ts = now
        recent = account.recent
        recent[order.id] = order
        config = self.config
        horizon = now - config.recent_order_ttl_ms
        while recent:
            oldest = next(iter(recent.values()))
            if len(recent) <= config.recent_orders and oldest.done_ts >= horizon:
                break
            recent.popitem(last=False)
            if oldest.client_id is not None and account.client_ids.get(oldest.client_id) is oldest:
                del account.client_ids[oldest.client_id]

    def _check_client_id(self, account: Account, client_id: object) -> None:
        if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
            raise EngineError(
                RejectCode.INVALID_CLIENT_ORDER_ID,
                "client order id must be 1-36 characters of A-Z a-z 0-9 . _ : / -",
            )
        existing = account.client_ids.get(client_id)
        if existing is None:
            return
        if not existing.live and existing.done_ts < (
            self.clock.now_ms() - self.config.recent_order_ttl_ms
        ):
            return  # expired from the recent window; _finish prunes it lazily
        raise EngineError(
            RejectCode.DUPLICATE_CLIENT_ORDER_ID,
            f"client order id {client_id!r} is already used by order {existing.id}",
            existing_order=order_record(existing),
        )

    @staticmethod
    def _check_band(inst: Instrument, price: int, mark: int) -> None:
        band = inst.price_band
        scaled = price * RATE_SCALE
        if scaled > mark * (RATE_SCALE + band) or scaled < mark * (RATE_SCALE - band):
            raise EngineError(
                RejectCode.PRICE_OUT_OF_BAND,
                f"price {price} is outside mark {mark} +- {band}/{RATE_SCALE}",
                mark=mark,
                min_price=ceil_div(mark * (RATE_SCALE - band), RATE_SCALE),
                max_price=mark * (RATE_SCALE + band) // RATE_SCALE,
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
        symbol = market.symbol
        simulated: dict[str, int] = {}  # position sizes of makers with reduce-only orders
        for level in book_side.sorted_levels():
            if sign * level.price > sign * limit:
                break
            for maker in level.orders:
                if not maker.live:
                    continue
                if maker.account == account_id:
                    if stp == _CANCEL_MAKER:
                        continue
                    return total
                take = maker.remaining
                size = simulated.get(maker.account)
                if size is None:
                    pos = self.accounts[maker.account].positions[symbol]
                    size = pos.size if pos.reduce_only_orders else None
                if size is not None:
                    if maker.reduce_only:
                        if size == 0 or (size > 0) == (maker.side > 0):
                            continue  # cancelled by the time the sweep reaches it
                        take = min(take, abs(size))
                    take = min(take, qty - total)
                    simulated[maker.account] = size + maker.side * take
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
        sign = book_side.sign
        limit_key = sign * taker.price
        taker_account = self.accounts[taker.account]
        taker_pos = taker_account.positions[market.symbol]
        while taker.remaining:
            level = book_side.best()
            if level is None or sign * level.price > limit_key:
                return False
            orders = level.orders
            while orders and taker.remaining:
                maker = orders[0]
                if not maker.live:
                    orders.popleft()
                    continue
                if maker.account == taker.account:
                    stp = taker.stp
                    if stp == _CANCEL_TAKER:
                        return True
                    self._cancel_resting(market, maker, "self_trade", events, now)
                    if stp != _CANCEL_MAKER:
                        return True
                    continue
                self._fill(market, book_side, level, maker, taker, taker_account, taker_pos, events)
                if maker.remaining == 0:
                    maker_account = self.accounts[maker.account]
                    self._finish_filled_maker(market, maker_account, maker, now)
                    maker_pos = maker_account.positions[market.symbol]
                    if maker_pos.reduce_only_orders:
                        self._sync_reduce_only(market, maker_account, maker_pos, events, now)
                else:
                    maker_pos = self.accounts[maker.account].positions[market.symbol]
                    if maker_pos.reduce_only_orders:
                        self._sync_reduce_only(
                            market, self.accounts[maker.account], maker_pos, events, now
                        )
        return False

    def _fill(
        self,
        market: Market,
        book_side: BookSide,
        level: Level,
        maker: Order,
        taker: Order,
        taker_account: Account,
        taker_pos: Position,
        events: list[Event],
    ) -> None:
        qty = taker.remaining if taker.remaining < maker.remaining else maker.remaining
        price = maker.price
        factor = market.factor
        inst = market.instrument
        notional = price * qty * factor

        level.qty -= qty
        maker.remaining -= qty
        maker.filled += qty
        maker.status = PARTIALLY_FILLED
        taker.remaining -= qty
        taker.filled += qty
        taker.status = PARTIALLY_FILLED
        if maker.remaining == 0:
            book_side.pop_filled_front(level)

        maker_account = self.accounts[maker.account]
        maker_pos = maker_account.positions[market.symbol]
        if not maker.reduce_only:
            if maker.side > 0:
                maker_pos.buy_qty -= qty
                maker_pos.buy_value -= price * qty
            else:
                maker_pos.sell_qty -= qty
                maker_pos.sell_value -= price * qty
        maker_fee = mul_rate_ceil(notional, inst.maker_fee)
        taker_fee = mul_rate_ceil(notional, inst.taker_fee)
        maker_pnl = _apply_fill(maker_pos, maker.side, price, qty, factor)
        taker_pnl = _apply_fill(taker_pos, taker.side, price, qty, factor)
        maker_account.collateral += maker_pnl - maker_fee
        taker_account.collateral += taker_pnl - taker_fee
        self.fees_collected += maker_fee + taker_fee
        self._set_reserve(maker_account, maker_pos, factor)
        self._set_reserve(taker_account, taker_pos, factor)

        market.last = price
        market.trade_id += 1
        market.seq += 1
        events.append(
            Trade(
                ts=taker.ts,
                stream=market.symbol,
                seq=market.seq,
                trade_id=market.trade_id,
                price=price,
                qty=qty,
                taker_side=taker.side,
                maker_order_id=maker.id,
                taker_order_id=taker.id,
                maker_account=maker.account,
                taker_account=taker.account,
                maker_fee=maker_fee,
                taker_fee=taker_fee,
                maker_realized=maker_pnl,
                taker_realized=taker_pnl,
                maker_remaining=maker.remaining,
                taker_remaining=taker.remaining,
            )
        )

    def _finish_filled_maker(
        self, market: Market, account: Account, maker: Order, now: int
    ) -> None:
        maker.status = FILLED
        del account.open_orders[maker.id]
        del self._open[maker.id]
        pos = account.positions[market.symbol]
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
                ts=now,
                stream=market.symbol,
                seq=market.seq,
                order_id=order.id,
                client_id=order.client_id,
                account=order.account,
                remaining=order.remaining,
                reason=reason,
            )
        )

    def _cancel_resting(
        self, market: Market, order: Order, reason: str, events: list[Event], now: int
    ) -> None:
        account = self.accounts[order.account]
        self._unrest(market, account, order)
        self._emit_cancel(market, order, reason, events, now)
        order.status = CANCELED if reason == "canceled" else EXPIRED
        self._finish(account, order, now)

    def _cancel(self, cmd: CancelOrder) -> list[Event]:
        market = self._market(cmd.market)
        account = self._account(cmd.account)
        order = self._find_open(account, market, cmd)
        events: list[Event] = []
        self._cancel_resting(market, order, "canceled", events, self.clock.now_ms())
        return events

    def _cancel_all(self, cmd: CancelAll) -> list[Event]:
        account = self._account(cmd.account)
        symbol = None if cmd.market is None else self._market(cmd.market).symbol
        events: list[Event] = []
        now = self.clock.now_ms()
        for order in list(account.open_orders.values()):
            if symbol is None or order.market == symbol:
                self._cancel_resting(self.markets[order.market], order, "canceled", events, now)
        return events

    # -- amend ----------------------------------------------------------------------------------
    def _amend(self, cmd: AmendOrder) -> list[Event]:
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
            self._check_band(inst, price, market.mark)
        pos = account.positions[market.symbol]
        remaining = qty - order.filled
        if order.reduce_only:
            remaining = min(remaining, abs(pos.size))
            qty = order.filled + remaining
        if price == order.price and qty == order.qty:
            raise EngineError(RejectCode.AMEND_NO_CHANGE, "the amendment changes nothing")
        opposite = market.book.asks if order.side > 0 else market.book.bids
        if order.tif is TimeInForce.POST_ONLY and price != order.price:
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
            old_value = order.price * order.remaining
            buy = (pos.buy_qty, pos.buy_value)
            sell = (pos.sell_qty, pos.sell_value)
            if order.side > 0:
                buy = (buy[0] - order.remaining + remaining, buy[1] - old_value + price * remaining)
            else:
                sell = (
                    sell[0] - order.remaining + remaining,
                    sell[1] - old_value + price * remaining,
                )
            self._check_exposure_and_margin(
                account, market, pos, buy, sell, pos.leverage, pos.max_exposure
            )

        now = self.clock.now_ms()
        events: list[Event] = []
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

    def _deposit(self, cmd: Deposit) -> list[Event]:
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
        self.total_deposits += amount
        self._accounts_seq += 1
        return [
            Deposited(
                ts=self.clock.now_ms(),
                stream=ACCOUNTS_STREAM,
                seq=self._accounts_seq,
                account=account.id,
                amount=amount,
                collateral=account.collateral,
            )
        ]

    def _withdraw(self, cmd: Withdraw) -> list[Event]:
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
        self.total_withdrawals += amount
        self._accounts_seq += 1
        return [
            Withdrawn(
                ts=self.clock.now_ms(),
                stream=ACCOUNTS_STREAM,
                seq=self._accounts_seq,
                account=account.id,
                amount=amount,
                collateral=account.collateral,
            )
        ]

    def _set_leverage(self, cmd: SetLeverage) -> list[Event]:
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
            (pos.buy_qty, pos.buy_value),
            (pos.sell_qty, pos.sell_value),
            leverage,
            max_exposure,
            released_margin=old_position_margin - new_position_margin,
        )
        account.positions.setdefault(market.symbol, pos)
        pos.leverage = leverage
        pos.max_exposure = max_exposure
        self._set_reserve(account, pos, market.factor)
        market.seq += 1
        return [
            LeverageChanged(
                ts=self.clock.now_ms(),
                stream=market.symbol,
                seq=market.seq,
                account=account.id,
                leverage=leverage,
            )
        ]

    def _set_mark(self, cmd: SetMarkPrice) -> list[Event]:
        market = self._market(cmd.market)
        if not _is_int(cmd.price) or cmd.price <= 0:
            raise EngineError(RejectCode.INVALID_PRICE, f"mark {cmd.price!r} must be ticks > 0")
        market.mark = cmd.price
        market.seq += 1
        return [
            MarkPriceSet(
                ts=self.clock.now_ms(), stream=market.symbol, seq=market.seq, price=cmd.price
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
                        unrealized_pnl=upnl,
                        realized_pnl=pos.realized_pnl,
                        initial_margin=im,
                        maintenance_margin=mm,
                        order_margin=pos.reserve,
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
            positions=tuple(views),
        )

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
            return account.client_ids.get(client_id)
        if order_id is None:
            return None
        order = self._open.get(order_id) or account.recent.get(order_id)
        return order if order is not None and order.account == account.id else None


def _apply_fill(pos: Position, side: int, price: int, qty: int, factor: int) -> int:
    """Move ``qty`` lots at ``price`` into the position; return the PnL realized (money units).

    The closing part releases cost pro rata (rounded toward zero, all of it on a full close);
    any remainder opens a position on the other side at ``price``.
    """
    size = pos.size
    if size == 0 or (size > 0) == (side > 0):
        pos.cost += side * price * qty * factor
        pos.size = size + side * qty
        return 0
    held = size if size > 0 else -size
    closing = qty if qty < held else held
    cost = pos.cost
    if closing == held:
        released = cost
    elif cost >= 0:
        released = cost * closing // held
    else:
        released = -((-cost) * closing // held)
    pnl = -side * price * closing * factor - released
    pos.cost = cost - released
    pos.size = size + side * closing
    opening = qty - closing
    if opening:
        pos.cost += side * price * opening * factor
        pos.size += side * opening
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

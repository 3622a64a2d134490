"""Fixtures and helpers for the hand-computed engine unit tests.

Units reminder (BTC-PERP defaults): a price is ``int`` ticks of 0.1 USDT (60000 USDT = 600_000
ticks), a quantity ``int`` lots of 0.001 BTC (1 BTC = 1_000 lots), money ``int`` units of 1e-8
USDT (1 USDT = 100_000_000 units). The notional of ``ticks`` x ``lots`` is
``ticks * lots * 10_000`` units (0.1 * 0.001 * 1e8 = 10_000), so at 60000 USDT one BTC is
``600_000 * 1_000 * 10_000 = 6e12`` units = 60_000 USDT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import pytest

from perpbot.risk.margin import MONEY_SCALE
from sandbox.engine import (
    Command,
    Deposit,
    Event,
    Exchange,
    ExchangeConfig,
    Instrument,
    ManualClock,
    OrderAccepted,
    OrderType,
    PlaceOrder,
    PositionView,
    RejectCode,
    Rejected,
    SequencedEvent,
    Side,
    TimeInForce,
    default_instruments,
)

E = TypeVar("E", bound=Event)

START_MS = 1_700_000_000_000
BTC = "BTC-PERP"
ETH = "ETH-PERP"
SOL = "SOL-PERP"
BUY = Side.BUY
SELL = Side.SELL
BTC_MARK = 600_000  # 60000.0 USDT in ticks
BTC_FACTOR = 10_000  # money units per (tick x lot) on BTC-PERP
ONE_BTC = 1_000  # lots
USDT = MONEY_SCALE  # money units per USDT
FUNDING_USDT = 1_000_000  # what each fixture account starts with
ACCOUNTS = ("alice", "bob", "carol")
INSURANCE_SEED = 100_000_000_000_000  # LiquidationConfig.insurance_seed default: 1,000,000 USDT


def usdt(amount: int) -> int:
    """Whole USDT -> money units."""
    return amount * USDT


def btc_notional(ticks: int, lots: int) -> int:
    """BTC-PERP notional in money units."""
    return ticks * lots * BTC_FACTOR


def make_exchange(
    instruments: Iterable[Instrument] | None = None,
    *,
    config: ExchangeConfig | None = None,
    accounts: Sequence[str] = ACCOUNTS,
    funding_usdt: int = FUNDING_USDT,
    clock: ManualClock | None = None,
) -> Exchange:
    """An exchange on a ManualClock with ``accounts`` each funded with ``funding_usdt``."""
    ex = Exchange(
        default_instruments() if instruments is None else instruments,
        clock=clock or ManualClock(START_MS),
        config=config,
    )
    for account in accounts:
        ok(ex.submit(Deposit(account, usdt(funding_usdt))))
    return ex


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def ex(clock: ManualClock) -> Exchange:
    """Default instruments; alice, bob and carol hold 1,000,000 USDT each."""
    return make_exchange(clock=clock)


def fee_instrument(maker_fee: str = "-0.0001", taker_fee: str = "0.0005") -> Instrument:
    """FEE-PERP: tick 0.01, lot 0.001 -> 1_000 money units per (tick x lot), so fees are not
    whole units and their rounding shows. Initial price 3000.00 = 300_000 ticks."""
    return Instrument.create(
        "FEE-PERP",
        tick_size="0.01",
        lot_size="0.001",
        min_qty="0.001",
        max_qty="1000",
        market_max_qty="100",
        min_notional="5",
        initial_price="3000",
        maker_fee=maker_fee,
        taker_fee=taker_fee,
    )


def minq_instrument() -> Instrument:
    """MINQ-PERP: like BTC-PERP but min_qty 0.01 (10 lots), max 2 (2_000 lots), market max 1
    (1_000 lots) and min notional 100 USDT."""
    return Instrument.create(
        "MINQ-PERP",
        tick_size="0.1",
        lot_size="0.001",
        min_qty="0.01",
        max_qty="2",
        market_max_qty="1",
        min_notional="100",
        initial_price="60000",
    )


# -- submitting ---------------------------------------------------------------------------------
def ok(events: list[Event]) -> list[Event]:
    """Assert the command was accepted (no Rejected) and return its events."""
    rejected = [e for e in events if isinstance(e, Rejected)]
    assert not rejected, rejected
    return events


def place(
    ex: Exchange,
    account: str,
    side: Side,
    qty: int,
    price: int | None = None,
    market: str = BTC,
    **kwargs: Any,
) -> list[Event]:
    """Submit a PlaceOrder (LIMIT if ``price`` is given, else MARKET); returns the events."""
    order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
    return ex.submit(
        PlaceOrder(
            account=account,
            market=market,
            side=side,
            qty=qty,
            price=price,
            order_type=order_type,
            **kwargs,
        )
    )


def rest(
    ex: Exchange,
    account: str,
    side: Side,
    qty: int,
    price: int,
    market: str = BTC,
    **kwargs: Any,
) -> int:
    """Place a limit order that must be accepted; return its order id."""
    events = ok(place(ex, account, side, qty, price, market, **kwargs))
    return accepted_id(events)


def accepted_id(events: list[Event]) -> int:
    (acc,) = of_type(events, OrderAccepted)
    return acc.order_id


def of_type(events: Iterable[Event], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


def kinds(events: Iterable[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def open_position(
    ex: Exchange,
    account: str,
    side: Side,
    qty: int,
    price: int = BTC_MARK,
    *,
    counterparty: str = "carol",
    market: str = BTC,
) -> list[Event]:
    """``counterparty`` rests the opposite limit order, ``account`` takes it with an IOC."""
    rest(ex, counterparty, Side(-side), qty, price, market)
    return ok(place(ex, account, side, qty, price, market, tif=TimeInForce.IOC))


# -- state snapshots and rejections ---------------------------------------------------------------
def _order_state(order: Any) -> tuple[Any, ...]:
    return (
        order.id,
        order.account,
        order.market,
        int(order.side),
        order.price,
        order.qty,
        order.remaining,
        order.filled,
        str(order.status),
        order.live,
        order.reduce_only,
        order.client_id,
        order.ts,
    )


def _attributes(cls: type) -> tuple[str, ...]:
    """The instance attributes of a slotted class, interpreted or compiled by mypyc (which
    keeps them in a C struct and lists them in ``__mypyc_attrs__`` instead of ``__slots__``)."""
    slots: tuple[str, ...] | None = getattr(cls, "__slots__", None)
    return slots or cls.__mypyc_attrs__  # type: ignore[attr-defined]


def snapshot(ex: Exchange) -> dict[str, Any]:
    """Everything a command could change, as plain comparable data."""
    accounts: dict[str, Any] = {}
    for account_id, account in ex.accounts.items():
        positions = {
            symbol: {slot: getattr(pos, slot) for slot in _attributes(type(pos))}
            for symbol, pos in account.positions.items()
        }
        view = ex.account_view(account_id)
        accounts[account_id] = {
            "collateral": account.collateral,
            "reserve": account.reserve,
            "positions": positions,
            "open_orders": [_order_state(o) for o in account.open_orders.values()],
            "recent": [_order_state(o) for o in account.recent.values()],
            "client_ids": {cid: o.id for cid, o in account.client_ids.items()},
            "view": view,
        }
    markets = {}
    for symbol, market in ex.markets.items():
        book = ex.book_snapshot(symbol, depth=1_000_000)
        markets[symbol] = {
            "seq": market.seq,
            "mark": market.mark,
            "last": market.last,
            "trade_id": market.trade_id,
            "bids": book.bids,
            "asks": book.asks,
        }
    return {
        "accounts": accounts,
        "markets": markets,
        "fees_collected": ex.fees_collected,
        "total_deposits": ex.total_deposits,
        "total_withdrawals": ex.total_withdrawals,
        "next_order_id": ex._next_order_id,
        "accounts_seq": ex._accounts_seq,
    }


def assert_rejected(ex: Exchange, command: Command | Any, code: RejectCode) -> Rejected:
    """Submit ``command``; assert exactly one Rejected with ``code`` and no state change."""
    before = snapshot(ex)
    events = ex.submit(command)
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, Rejected), event
    assert event.code is code, (event.code, event.message)
    assert event.ts == ex.clock.now_ms()
    assert not isinstance(event, SequencedEvent)
    assert snapshot(ex) == before
    return event


def cash_total(ex: Exchange) -> int:
    """sum(collateral - position cost) + fees_collected: must equal deposits - withdrawals."""
    total = ex.fees_collected
    for account in ex.accounts.values():
        total += account.collateral - sum(p.cost for p in account.positions.values())
    return total


def assert_cash_conserved(ex: Exchange) -> None:
    """Conservation over *all* accounts, the insurance funds included."""
    assert cash_total(ex) == ex.total_deposits - ex.total_withdrawals


def insurance_fund(symbol: str = BTC) -> str:
    """The account id of a market's insurance fund."""
    return f"insurance:{symbol}"


def insurance_seeds(ex: Exchange) -> int:
    """What the exchange put into the insurance funds at start (counted in total_deposits)."""
    return sum(m.instrument.mechanics.liquidation.insurance_seed for m in ex.markets.values())


def user_cash_total(ex: Exchange) -> int:
    """``cash_total`` without the insurance funds: users' collateral - cost, plus fees."""
    total = ex.fees_collected
    for account_id, account in ex.accounts.items():
        if account_id not in ex.insurance_funds:
            total += account.collateral - sum(p.cost for p in account.positions.values())
    return total


def position(ex: Exchange, account: str, market: str = BTC) -> PositionView | None:
    """The account's PositionView in ``market`` (None when the view omits it: flat, no orders,
    no realized PnL)."""
    for view in ex.account_view(account).positions:
        if view.market == market:
            return view
    return None


def size_of(ex: Exchange, account: str, market: str = BTC) -> int:
    view = position(ex, account, market)
    return 0 if view is None else view.size

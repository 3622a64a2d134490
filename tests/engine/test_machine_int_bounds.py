"""Prices and quantities are bounded (MAX_TICKS, MAX_LOTS) so that the compiled engine can keep
them as 64-bit machine integers; money built from them stays exact beyond 64 bits.

These run on both builds: interpreted, a machine integer is a plain ``int``; compiled, a wrong
bound or a product summed in 64 bits would fail them (a wrapped sum, or an OverflowError where
an order's price is stored)."""

from __future__ import annotations

import pytest

from sandbox.engine import (
    MAX_LOTS,
    MAX_TICKS,
    CancelOrder,
    Deposit,
    Exchange,
    Instrument,
    LiquidationFill,
    ManualClock,
    OrderAccepted,
    OrderCanceled,
    OrderType,
    PlaceOrder,
    RejectCode,
    SetMarkPrice,
    Side,
    Trade,
)

from .conftest import (
    BTC,
    BTC_MARK,
    BUY,
    SELL,
    START_MS,
    assert_cash_conserved,
    assert_rejected,
    kinds,
    make_exchange,
    of_type,
    ok,
    open_position,
    place,
    rest,
    size_of,
)


def limit_buy(price: int, qty: int = 1) -> PlaceOrder:
    return PlaceOrder("alice", BTC, Side.BUY, qty, price)


def big_instrument(initial_price: str = str(MAX_TICKS), max_qty: str = "21.47483647") -> Instrument:
    """BIG-PERP: tick 1, lot 1e-8, so one tick x lot is one money unit; max qty MAX_LOTS lots;
    a bracket wide enough for orders of (2**31 - 1)**2 units each."""
    return Instrument.create(
        "BIG-PERP",
        tick_size="1",
        lot_size="0.00000001",
        min_qty="0.00000001",
        max_qty=max_qty,
        market_max_qty=max_qty,
        min_notional="0",
        initial_price=initial_price,
        brackets=(("1000000000000", 100, "0.005"),),
        default_leverage=100,
    )


def test_the_bounds_leave_a_product_below_2_to_62() -> None:
    assert MAX_TICKS * MAX_LOTS < 2**62


def test_an_instrument_beyond_the_bounds_is_refused() -> None:
    assert big_instrument().max_qty == MAX_LOTS
    with pytest.raises(ValueError, match="max_qty"):
        big_instrument(max_qty="21.47483648")  # MAX_LOTS + 1 lots
    with pytest.raises(ValueError, match="initial price"):
        big_instrument(initial_price=str(MAX_TICKS + 1))


def test_no_limit_price_above_max_ticks_even_where_the_band_allows_it() -> None:
    ex = make_exchange()
    ok(ex.submit(SetMarkPrice(BTC, MAX_TICKS)))
    assert ex.markets[BTC].max_price == MAX_TICKS  # mark + 5% held at the bound
    refused = assert_rejected(ex, limit_buy(MAX_TICKS + 1), RejectCode.PRICE_OUT_OF_BAND)
    assert refused.details["max_price"] == MAX_TICKS
    ok(ex.submit(SetMarkPrice(BTC, 10**30)))  # a mark that high refuses every limit order
    assert_rejected(ex, limit_buy(10**30), RejectCode.PRICE_OUT_OF_BAND)
    assert_rejected(ex, limit_buy(MAX_TICKS), RejectCode.PRICE_OUT_OF_BAND)


def test_a_market_order_under_a_huge_mark_is_limited_at_max_ticks() -> None:
    ex = make_exchange(funding_usdt=10**9)  # carol's short survives the mark below
    open_position(ex, "alice", BUY, 5)  # alice long 5 lots from carol
    rest(ex, "bob", BUY, 5, BTC_MARK - 10)
    ok(ex.submit(SetMarkPrice(BTC, 3 * 10**9)))  # mark - 5% is above MAX_TICKS
    events = ok(place(ex, "alice", SELL, 5, None, reduce_only=True))
    # The protection limit (mark - 5%, far above any bid) is held at MAX_TICKS: still above
    # bob's bid, so nothing fills, as without the bound.
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert of_type(events, OrderAccepted)[0].price == MAX_TICKS
    assert of_type(events, OrderCanceled)[0].reason == "expired"
    assert size_of(ex, "alice") == 5


def test_a_liquidation_beyond_max_ticks_fills_in_the_book_as_before() -> None:
    # bob (1,000,000 USDT) is short 2 lots (0.002 BTC): his bankruptcy price is ~5e9 ticks.
    ex = make_exchange(accounts=("bob", "carol"))
    open_position(ex, "bob", SELL, 2, counterparty="carol")
    rest(ex, "carol", SELL, 2, BTC_MARK + 5)
    # Equity falls below the maintenance margin, but not below 2/3 of it: a book order, which
    # closes one lot (enough to restore the account).
    events = ok(ex.submit(SetMarkPrice(BTC, 4_978_000_000)))
    (fill,) = of_type(events, LiquidationFill)
    assert fill.bankruptcy_price > MAX_TICKS
    (order,) = of_type(events, OrderAccepted)
    assert order.order_type is OrderType.LIQUIDATION
    assert order.price == MAX_TICKS  # the bankruptcy price, held at the bound
    (trade,) = of_type(events, Trade)
    assert (trade.price, trade.qty, trade.taker_account) == (BTC_MARK + 5, 1, "bob")
    assert fill.book_qty == 1
    assert size_of(ex, "bob") == -1
    assert_cash_conserved(ex)


def test_order_values_sum_exactly_beyond_64_bits() -> None:
    ex = Exchange([big_instrument()], clock=ManualClock(START_MS))
    ok(ex.submit(Deposit("alice", 10**18)))
    value = MAX_TICKS * MAX_LOTS  # one order's price x qty, just below 2**62
    ids = [rest(ex, "alice", BUY, MAX_LOTS, MAX_TICKS, market="BIG-PERP") for _ in range(3)]
    pos = ex.accounts["alice"].positions["BIG-PERP"]
    assert pos.buy_qty == 3 * MAX_LOTS
    assert pos.buy_value == 3 * value > 2**63  # a 64-bit sum would have wrapped
    assert pos.reserve == -(-3 * value // 100)  # ceil(value / leverage), factor 1
    ok(ex.submit(CancelOrder("alice", "BIG-PERP", order_id=ids[0])))
    assert (pos.buy_qty, pos.buy_value) == (2 * MAX_LOTS, 2 * value)
    assert pos.reserve == -(-2 * value // 100)

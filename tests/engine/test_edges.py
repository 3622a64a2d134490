"""Edges the scenario tests do not reach: user-sent liquidation orders, the prices query,
reduce-only orders of an account whose position is taken over, and order lookups."""

from __future__ import annotations

from sandbox.engine import (
    Deposit,
    Exchange,
    OrderType,
    PlaceOrder,
    PositionTransferred,
    RejectCode,
    SetMarkPrice,
    Tick,
    UpdateIndexSource,
)

from .conftest import (
    BTC,
    BTC_MARK,
    BUY,
    INSURANCE_SEED,
    ONE_BTC,
    SELL,
    assert_cash_conserved,
    assert_rejected,
    of_type,
    ok,
    open_position,
    rest,
)


def test_clients_cannot_send_liquidation_orders(ex: Exchange) -> None:
    cmd = PlaceOrder("alice", BTC, BUY, ONE_BTC, price=BTC_MARK, order_type=OrderType.LIQUIDATION)
    assert_rejected(ex, cmd, RejectCode.INVALID_ORDER)


def test_prices_query_publishes_last_index_and_mark_separately(ex: Exchange) -> None:
    prices = ex.prices(BTC)
    assert (prices.last, prices.index, prices.mark) == (None, BTC_MARK, BTC_MARK)
    assert prices.insurance_fund == INSURANCE_SEED
    assert prices.predicted_funding_rate == 10_000  # no premium samples yet: the interest rate
    open_position(ex, "alice", BUY, ONE_BTC, price=BTC_MARK + 10)
    for source in ("spot-a", "spot-b", "spot-c"):
        ok(ex.submit(UpdateIndexSource(BTC, source, BTC_MARK - 20)))
    ok(ex.submit(Tick()))
    prices = ex.prices(BTC)
    assert prices.last == BTC_MARK + 10 and prices.index == BTC_MARK - 20
    assert prices.mark != prices.last and not prices.index_degraded
    assert prices.next_funding_ts > ex.clock.now_ms()


def test_a_gap_cancels_orders_and_the_fund_takes_the_position(ex: Exchange) -> None:
    ok(ex.submit(Deposit("dave", 4_000 * 10**8)))  # 1 BTC at 20x on 4,000 USDT
    open_position(ex, "dave", BUY, ONE_BTC, price=BTC_MARK)
    take_profit = rest(ex, "dave", SELL, ONE_BTC, BTC_MARK + 5_000, reduce_only=True)
    # A gap far below the bankruptcy price with an empty bid side: the liquidation cancels the
    # take-profit first, then the account is deep and the fund takes the whole position.
    events = ok(ex.submit(SetMarkPrice(BTC, BTC_MARK - 40_000)))
    transfers = of_type(events, PositionTransferred)
    assert [(t.reason, t.qty) for t in transfers] == [("takeover", ONE_BTC)]
    assert ex.get_order("dave", order_id=take_profit).status != "NEW"  # type: ignore[union-attr]
    assert ex.open_orders("dave") == []
    assert ex.get_order("dave") is None
    assert_cash_conserved(ex)

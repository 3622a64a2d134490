"""Order types and order behaviour, checked against hand-computed numbers.

BTC-PERP: 1 BTC = 1_000 lots, 60000.0 USDT = 600_000 ticks, notional = ticks * lots * 10_000
money units; maker fee 0.02% = ticks * lots * 2 units, taker fee 0.05% = ticks * lots * 5 units.
Every fixture account starts with 1,000,000 USDT = 1e14 units.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Deposit,
    Exchange,
    ExchangeConfig,
    ManualClock,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderType,
    PlaceOrder,
    RejectCode,
    SelfTradePrevention,
    SequencedEvent,
    SetLeverage,
    SetMarkPrice,
    TimeInForce,
    Trade,
    Withdraw,
)

from .conftest import (
    BTC,
    BTC_MARK,
    BUY,
    ETH,
    ONE_BTC,
    SELL,
    START_MS,
    accepted_id,
    assert_cash_conserved,
    assert_rejected,
    btc_notional,
    fee_instrument,
    kinds,
    make_exchange,
    of_type,
    ok,
    open_position,
    place,
    rest,
    size_of,
    usdt,
)

CT = SelfTradePrevention.CANCEL_TAKER
CM = SelfTradePrevention.CANCEL_MAKER
CB = SelfTradePrevention.CANCEL_BOTH


def book(ex: Exchange, market: str = BTC) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    snap = ex.book_snapshot(market)
    return snap.bids, snap.asks


# -- limit GTC, priority -------------------------------------------------------------------------
def test_limit_gtc_rests_with_exact_order_margin(ex: Exchange) -> None:
    events = ok(place(ex, "alice", BUY, ONE_BTC, 590_000))
    assert kinds(events) == ["OrderAccepted"]
    (acc,) = events
    assert isinstance(acc, OrderAccepted)
    assert (acc.stream, acc.seq, acc.order_id, acc.ts) == (BTC, 1, 1, START_MS)
    assert (acc.side, acc.price, acc.qty) == (1, 590_000, ONE_BTC)
    assert (acc.order_type, acc.tif, acc.reduce_only, acc.client_id) == (
        "LIMIT",
        "GTC",
        False,
        None,
    )
    assert book(ex) == ([(590_000, ONE_BTC)], [])
    assert [o.id for o in ex.open_orders("alice")] == [1]
    # order margin = ceil(590000 * 1000 * 10000 / 20) = 5.9e12 / 20 = 295_000_000_000 (2950 USDT)
    view = ex.account_view("alice")
    assert view.order_margin == 295_000_000_000
    assert view.available == usdt(1_000_000) - 295_000_000_000


def test_same_price_fills_oldest_first(ex: Exchange) -> None:
    bob_id = rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
    carol_id = rest(ex, "carol", SELL, ONE_BTC, BTC_MARK)
    (t1,) = of_type(ok(place(ex, "alice", BUY, ONE_BTC, BTC_MARK)), Trade)
    assert (t1.maker_order_id, t1.maker_account) == (bob_id, "bob")
    (t2,) = of_type(ok(place(ex, "alice", BUY, ONE_BTC, BTC_MARK)), Trade)
    assert (t2.maker_order_id, t2.maker_account) == (carol_id, "carol")
    assert book(ex) == ([], [])


def test_better_price_fills_first_even_if_younger(ex: Exchange) -> None:
    rest(ex, "carol", SELL, ONE_BTC, 600_100)  # older, worse ask
    bob_id = rest(ex, "bob", SELL, ONE_BTC, 600_000)  # younger, better ask
    (trade,) = of_type(ok(place(ex, "alice", BUY, ONE_BTC, 600_100)), Trade)
    assert (trade.maker_order_id, trade.price) == (bob_id, 600_000)
    # bids: the higher bid is better
    rest(ex, "carol", BUY, ONE_BTC, 599_000)
    bob_bid = rest(ex, "bob", BUY, ONE_BTC, 599_500)
    (trade,) = of_type(ok(place(ex, "alice", SELL, ONE_BTC, 599_000)), Trade)
    assert (trade.maker_order_id, trade.price) == (bob_bid, 599_500)


def test_limit_sweeps_levels_and_rests_nothing_when_filled(ex: Exchange) -> None:
    a = rest(ex, "bob", SELL, ONE_BTC, 600_000)
    b = rest(ex, "carol", SELL, ONE_BTC, 600_050)
    c = rest(ex, "bob", SELL, ONE_BTC, 600_100)
    events = ok(place(ex, "alice", BUY, 2_500, 600_100))
    trades = of_type(events, Trade)
    # 1000 @ 600000, 1000 @ 600050, then 500 of the 600100 ask (500 left on it)
    assert [(t.maker_order_id, t.price, t.qty) for t in trades] == [
        (a, 600_000, 1_000),
        (b, 600_050, 1_000),
        (c, 600_100, 500),
    ]
    assert [t.taker_remaining for t in trades] == [1_500, 500, 0]
    assert [t.maker_remaining for t in trades] == [0, 0, 500]
    assert book(ex) == ([], [(600_100, 500)])
    assert ex.open_orders("alice") == []
    # cost = (600000*1000 + 600050*1000 + 600100*500) * 10000
    #      = (600_000_000 + 600_050_000 + 300_050_000) * 10000 = 15_001_000_000_000
    (pos,) = ex.account_view("alice").positions
    assert (pos.size, pos.cost) == (2_500, 15_001_000_000_000)


def test_trade_is_at_the_makers_price_for_a_sell_taker(ex: Exchange) -> None:
    rest(ex, "bob", BUY, ONE_BTC, 600_500)
    (trade,) = of_type(ok(place(ex, "alice", SELL, ONE_BTC, 599_000)), Trade)
    assert (trade.price, trade.qty, trade.taker_side) == (600_500, ONE_BTC, -1)
    # maker fee 600500*1000*2 = 1_201_000_000; taker fee 600500*1000*5 = 3_002_500_000
    assert (trade.maker_fee, trade.taker_fee) == (1_201_000_000, 3_002_500_000)
    assert ex.account_view("bob").collateral == usdt(1_000_000) - 1_201_000_000
    assert ex.account_view("alice").collateral == usdt(1_000_000) - 3_002_500_000
    assert ex.fees_collected == 4_203_500_000
    assert ex.markets[BTC].last == 600_500


# -- IOC / FOK / POST_ONLY -----------------------------------------------------------------------
def test_ioc_partial_fill_then_rest_expires(ex: Exchange) -> None:
    rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)  # seq 1
    events = ok(place(ex, "alice", BUY, 3 * ONE_BTC, BTC_MARK, tif=TimeInForce.IOC))
    assert kinds(events) == ["OrderAccepted", "Trade", "OrderCanceled"]
    acc, trade, cancel = events
    assert isinstance(acc, OrderAccepted) and acc.tif == "IOC"
    assert isinstance(trade, Trade) and (trade.qty, trade.taker_remaining) == (1_000, 2_000)
    assert isinstance(cancel, OrderCanceled)
    assert (cancel.order_id, cancel.remaining, cancel.reason) == (acc.order_id, 2_000, "expired")
    assert [e.seq for e in events if isinstance(e, SequencedEvent)] == [2, 3, 4]
    assert book(ex) == ([], [])
    assert ex.open_orders("alice") == []
    order = ex.get_order("alice", order_id=acc.order_id)
    assert order is not None and (order.status, order.filled) == ("EXPIRED", 1_000)


def test_ioc_with_nothing_to_match_expires_whole(ex: Exchange) -> None:
    events = ok(place(ex, "alice", BUY, ONE_BTC, 599_000, tif=TimeInForce.IOC))
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert (events[1].remaining, events[1].reason) == (ONE_BTC, "expired")  # type: ignore[attr-defined]
    assert book(ex) == ([], [])
    assert ex.account_view("alice").order_margin == 0


def test_fok_fills_fully_across_levels(ex: Exchange) -> None:
    rest(ex, "bob", SELL, ONE_BTC, 600_000)
    rest(ex, "carol", SELL, ONE_BTC, 600_100)
    events = ok(place(ex, "alice", BUY, 2 * ONE_BTC, 600_100, tif=TimeInForce.FOK))
    assert kinds(events) == ["OrderAccepted", "Trade", "Trade"]
    assert [(t.price, t.qty) for t in of_type(events, Trade)] == [
        (600_000, 1_000),
        (600_100, 1_000),
    ]
    assert book(ex) == ([], [])


@pytest.mark.parametrize(
    ("qty", "limit", "fillable"),
    [
        (2_001, 600_100, 2_000),  # one lot more than the whole book
        (1_500, 600_000, 1_000),  # the second level is beyond the limit
        (2, 599_900, 0),  # nothing at or below the limit
    ],
)
def test_fok_not_fillable_is_rejected_without_state_change(
    ex: Exchange, qty: int, limit: int, fillable: int
) -> None:
    rest(ex, "bob", SELL, ONE_BTC, 600_000)
    rest(ex, "carol", SELL, ONE_BTC, 600_100)
    cmd = PlaceOrder("alice", BTC, BUY, qty, limit, tif=TimeInForce.FOK)
    rej = assert_rejected(ex, cmd, RejectCode.FOK_NOT_FILLABLE)
    assert rej.details["fillable"] == fillable


def test_market_fok_fills_or_rejects(ex: Exchange) -> None:
    rest(ex, "bob", SELL, ONE_BTC, 600_000)
    cmd = PlaceOrder("alice", BTC, BUY, 1_001, order_type=OrderType.MARKET, tif=TimeInForce.FOK)
    assert assert_rejected(ex, cmd, RejectCode.FOK_NOT_FILLABLE).details["fillable"] == 1_000
    events = ok(place(ex, "alice", BUY, 1_000, tif=TimeInForce.FOK))
    assert kinds(events) == ["OrderAccepted", "Trade"]


def test_fok_never_partially_fills_when_a_makers_reduce_only_order_vanishes(ex: Exchange) -> None:
    # Regression (fails on e11b3bf): the FOK pre-check counted reduce-only makers at face value.
    # bob is long 1 BTC and offers it twice at 600000: a normal sell and a reduce-only sell.
    open_position(ex, "bob", BUY, ONE_BTC)
    rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
    rest(ex, "bob", SELL, ONE_BTC, BTC_MARK, reduce_only=True)
    assert book(ex) == ([], [(BTC_MARK, 2_000)])
    # The FOK pre-check sees 2000 lots, but once the normal sell fills bob is flat and his
    # reduce-only sell is canceled: only 1000 can fill. A FOK must then be rejected outright.
    events = place(ex, "alice", BUY, 2 * ONE_BTC, BTC_MARK, tif=TimeInForce.FOK)
    assert kinds(events) == ["Rejected"]
    assert events[0].code is RejectCode.FOK_NOT_FILLABLE  # type: ignore[attr-defined]


def test_post_only_rests_when_it_does_not_cross(ex: Exchange) -> None:
    rest(ex, "bob", SELL, ONE_BTC, 600_000)
    events = ok(place(ex, "alice", BUY, ONE_BTC, 599_900, tif=TimeInForce.POST_ONLY))
    assert kinds(events) == ["OrderAccepted"]
    assert events[0].tif == "POST_ONLY"  # type: ignore[attr-defined]
    assert book(ex) == ([(599_900, ONE_BTC)], [(600_000, ONE_BTC)])


@pytest.mark.parametrize(
    ("side", "price"),
    [(BUY, 600_000), (BUY, 600_100), (SELL, 599_000), (SELL, 598_000)],
)
def test_post_only_that_would_take_is_rejected(ex: Exchange, side: int, price: int) -> None:
    rest(ex, "bob", SELL, ONE_BTC, 600_000)
    rest(ex, "bob", BUY, ONE_BTC, 599_000)
    cmd = PlaceOrder("alice", BTC, side, ONE_BTC, price, tif=TimeInForce.POST_ONLY)  # type: ignore[arg-type]
    rej = assert_rejected(ex, cmd, RejectCode.POST_ONLY_WOULD_TAKE)
    assert rej.details["best_price"] == (600_000 if side == BUY else 599_000)


# -- market orders -------------------------------------------------------------------------------
def test_market_buy_sweeps_levels_and_stops_at_the_band(ex: Exchange) -> None:
    a = rest(ex, "bob", SELL, ONE_BTC, 600_000)
    b = rest(ex, "carol", SELL, ONE_BTC, 605_000)
    rest(ex, "bob", SELL, ONE_BTC, 615_000)
    ok(ex.submit(SetMarkPrice(BTC, 580_000)))
    # protection limit = floor(580000 * 1.05) = 609_000: the 615000 ask is beyond it
    events = ok(place(ex, "alice", BUY, 5 * ONE_BTC))
    assert kinds(events) == ["OrderAccepted", "Trade", "Trade", "OrderCanceled"]
    acc = events[0]
    assert isinstance(acc, OrderAccepted)
    assert (acc.order_type, acc.tif, acc.price) == ("MARKET", "IOC", 609_000)
    trades = of_type(events, Trade)
    assert [(t.maker_order_id, t.price, t.qty) for t in trades] == [
        (a, 600_000, 1_000),
        (b, 605_000, 1_000),
    ]
    (cancel,) = of_type(events, OrderCanceled)
    assert (cancel.remaining, cancel.reason) == (3_000, "expired")
    assert book(ex) == ([], [(615_000, ONE_BTC)])
    # taker fees: (600000 + 605000) * 1000 * 5 = 6_025_000_000
    assert sum(t.taker_fee for t in trades) == 6_025_000_000
    assert ex.account_view("alice").collateral == usdt(1_000_000) - 6_025_000_000


def test_market_sell_sweeps_levels_and_stops_at_the_band(ex: Exchange) -> None:
    rest(ex, "bob", BUY, ONE_BTC, 600_000)
    rest(ex, "carol", BUY, ONE_BTC, 595_000)
    rest(ex, "bob", BUY, ONE_BTC, 585_000)
    ok(ex.submit(SetMarkPrice(BTC, 620_000)))
    # protection limit = ceil(620000 * 0.95) = 589_000: the 585000 bid is beyond it
    events = ok(place(ex, "alice", SELL, 5 * ONE_BTC))
    assert events[0].price == 589_000  # type: ignore[attr-defined]
    assert [(t.price, t.qty) for t in of_type(events, Trade)] == [
        (600_000, 1_000),
        (595_000, 1_000),
    ]
    (cancel,) = of_type(events, OrderCanceled)
    assert (cancel.remaining, cancel.reason) == (3_000, "expired")
    assert book(ex) == ([(585_000, ONE_BTC)], [])
    (pos,) = ex.account_view("alice").positions
    # short 2 BTC, cost = -(600000 + 595000) * 1000 * 10000 = -11_950_000_000_000
    assert (pos.size, pos.cost) == (-2_000, -11_950_000_000_000)


def test_market_protection_limit_rounds_inward(ex: Exchange) -> None:
    ok(ex.submit(SetMarkPrice(BTC, 600_001)))
    # buy: floor(600001 * 1.05) = floor(630001.05) = 630001
    assert ok(place(ex, "alice", BUY, ONE_BTC))[0].price == 630_001  # type: ignore[attr-defined]
    # sell: ceil(600001 * 0.95) = ceil(570000.95) = 570001
    assert ok(place(ex, "alice", SELL, ONE_BTC))[0].price == 570_001  # type: ignore[attr-defined]


def test_market_order_into_an_empty_book_expires(ex: Exchange) -> None:
    events = ok(place(ex, "alice", BUY, ONE_BTC))
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    cancel = events[1]
    assert isinstance(cancel, OrderCanceled)
    assert (cancel.remaining, cancel.reason) == (ONE_BTC, "expired")
    view = ex.account_view("alice")
    assert (view.collateral, view.order_margin, view.positions) == (usdt(1_000_000), 0, ())
    assert book(ex) == ([], [])
    assert ex.fees_collected == 0


# -- reduce-only ---------------------------------------------------------------------------------
def test_reduce_only_without_position_is_rejected(ex: Exchange) -> None:
    cmd = PlaceOrder("alice", BTC, SELL, ONE_BTC, BTC_MARK, reduce_only=True)
    rej = assert_rejected(ex, cmd, RejectCode.REDUCE_ONLY_WOULD_INCREASE)
    assert rej.details["position"] == 0


def test_reduce_only_that_would_increase_is_rejected(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC)
    cmd = PlaceOrder("alice", BTC, BUY, ONE_BTC, 590_000, reduce_only=True)
    rej = assert_rejected(ex, cmd, RejectCode.REDUCE_ONLY_WOULD_INCREASE)
    assert rej.details["position"] == 1_000
    open_position(ex, "bob", SELL, ONE_BTC)
    cmd = PlaceOrder("bob", BTC, SELL, ONE_BTC, 610_000, reduce_only=True)
    assert assert_rejected(ex, cmd, RejectCode.REDUCE_ONLY_WOULD_INCREASE).details["position"] == (
        -1_000
    )


def test_reduce_only_is_clipped_to_the_position(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC)
    events = ok(place(ex, "alice", SELL, 3 * ONE_BTC, 610_000, reduce_only=True))
    (acc,) = events
    assert isinstance(acc, OrderAccepted) and (acc.qty, acc.reduce_only) == (1_000, True)
    assert book(ex) == ([], [(610_000, 1_000)])
    # reduce-only orders hold no margin
    assert ex.account_view("alice").order_margin == 0


def test_reduce_only_market_order_clipped_and_closes(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC)
    rest(ex, "bob", BUY, 5 * ONE_BTC, 600_000)
    events = ok(place(ex, "alice", SELL, 3 * ONE_BTC, reduce_only=True))
    assert kinds(events) == ["OrderAccepted", "Trade"]
    assert (events[0].qty, events[1].qty) == (1_000, 1_000)  # type: ignore[attr-defined]
    assert size_of(ex, "alice") == 0
    assert book(ex) == ([(600_000, 4_000)], [])


def test_reduce_only_is_exempt_from_min_notional(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC)
    # 1 lot at 61000 = 61 USDT < 100 USDT minimum, allowed because it only reduces
    ok(place(ex, "alice", SELL, 1, 610_000, reduce_only=True))
    assert book(ex) == ([], [(610_000, 1)])


def test_resting_reduce_only_shrinks_then_cancels_as_position_shrinks(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, 2 * ONE_BTC)
    ro = rest(ex, "alice", SELL, 2 * ONE_BTC, 610_000, reduce_only=True)
    # alice sells 1 BTC (normal order) into bob's bid: long 2 -> long 1, the reduce-only order
    # is shrunk from 2000 to 1000 lots, keeping its priority
    rest(ex, "bob", BUY, ONE_BTC, 599_000)
    events = ok(place(ex, "alice", SELL, ONE_BTC, 599_000, tif=TimeInForce.IOC))
    assert kinds(events) == ["OrderAccepted", "Trade", "OrderAmended"]
    amended = events[2]
    assert isinstance(amended, OrderAmended)
    assert (amended.order_id, amended.price, amended.qty, amended.remaining) == (
        ro,
        610_000,
        1_000,
        1_000,
    )
    assert amended.priority_kept is True
    assert book(ex) == ([], [(610_000, 1_000)])
    # alice sells the last BTC: flat -> the reduce-only order is canceled
    rest(ex, "bob", BUY, ONE_BTC, 599_000)
    events = ok(place(ex, "alice", SELL, ONE_BTC, 599_000, tif=TimeInForce.IOC))
    assert kinds(events) == ["OrderAccepted", "Trade", "OrderCanceled"]
    cancel = events[2]
    assert isinstance(cancel, OrderCanceled)
    assert (cancel.order_id, cancel.remaining, cancel.reason) == (ro, 1_000, "reduce_only")
    assert book(ex) == ([], [])
    assert ex.open_orders("alice") == []
    assert_cash_conserved(ex)


def test_resting_reduce_only_canceled_when_position_flips(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC)
    ro = rest(ex, "alice", SELL, ONE_BTC, 610_000, reduce_only=True)
    rest(ex, "bob", BUY, 2 * ONE_BTC, 599_000)
    events = ok(place(ex, "alice", SELL, 2 * ONE_BTC, 599_000, tif=TimeInForce.IOC))
    # long 1 -> short 1: a sell no longer reduces
    (cancel,) = of_type(events, OrderCanceled)
    assert (cancel.order_id, cancel.reason) == (ro, "reduce_only")
    assert size_of(ex, "alice") == -1_000


def test_reduce_only_maker_fill_shrinks_sibling_reduce_only(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, 2 * ONE_BTC)
    a = rest(ex, "alice", SELL, 1_500, 601_000, reduce_only=True)
    b = rest(ex, "alice", SELL, 2 * ONE_BTC, 602_000, reduce_only=True)
    events = ok(place(ex, "bob", BUY, 1_500, 601_000))
    # a fills: alice long 2000 -> 500, so b (2000 lots) shrinks to 500
    assert kinds(events) == ["OrderAccepted", "Trade", "OrderAmended"]
    trade, amended = events[1], events[2]
    assert isinstance(trade, Trade) and (trade.maker_order_id, trade.qty) == (a, 1_500)
    assert isinstance(amended, OrderAmended) and (amended.order_id, amended.qty) == (b, 500)
    assert book(ex) == ([], [(602_000, 500)])


# -- cancel --------------------------------------------------------------------------------------
def test_cancel_by_order_id_releases_margin(ex: Exchange) -> None:
    oid = rest(ex, "alice", BUY, ONE_BTC, 590_000)
    assert ex.account_view("alice").order_margin == 295_000_000_000
    events = ok(ex.submit(CancelOrder("alice", BTC, order_id=oid)))
    (cancel,) = events
    assert isinstance(cancel, OrderCanceled)
    assert (cancel.order_id, cancel.remaining, cancel.reason, cancel.seq) == (
        oid,
        ONE_BTC,
        "canceled",
        2,
    )
    assert book(ex) == ([], [])
    assert ex.account_view("alice").order_margin == 0
    order = ex.get_order("alice", order_id=oid)
    assert order is not None and order.status == "CANCELED"


def test_get_order_finds_open_and_finished_orders_of_that_account_only(ex: Exchange) -> None:
    kept = rest(ex, "alice", BUY, ONE_BTC, 590_000)
    done = [rest(ex, "alice", BUY, ONE_BTC, 589_000 - i) for i in range(3)]
    for oid in done:
        ok(ex.submit(CancelOrder("alice", BTC, order_id=oid)))
    found = [ex.get_order("alice", order_id=oid) for oid in (kept, *done)]
    assert [(o.id, o.status) for o in found if o is not None] == [
        (kept, "NEW"),
        *[(oid, "CANCELED") for oid in done],
    ]
    assert [ex.get_order("bob", order_id=oid) for oid in (kept, *done)] == [None] * 4
    assert ex.get_order("alice", order_id=10**9) is None
    assert list(ex.accounts["alice"].recent) == done  # by id, oldest first


def test_cancel_by_client_id(ex: Exchange) -> None:
    rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id="mine-1")
    other = rest(ex, "alice", BUY, ONE_BTC, 589_000, client_id="mine-2")
    (cancel,) = ok(ex.submit(CancelOrder("alice", BTC, client_id="mine-1")))
    assert isinstance(cancel, OrderCanceled) and cancel.client_id == "mine-1"
    assert [o.id for o in ex.open_orders("alice")] == [other]
    assert book(ex) == ([(589_000, ONE_BTC)], [])


def test_cancel_partially_filled_reports_remaining(ex: Exchange) -> None:
    oid = rest(ex, "alice", BUY, 2 * ONE_BTC, 600_000)
    ok(place(ex, "bob", SELL, 500, 600_000))
    (cancel,) = ok(ex.submit(CancelOrder("alice", BTC, order_id=oid)))
    assert cancel.remaining == 1_500  # type: ignore[attr-defined]
    assert size_of(ex, "alice") == 500


def test_cancel_all_per_market_then_everywhere(ex: Exchange) -> None:
    a1 = rest(ex, "alice", BUY, ONE_BTC, 590_000)
    a2 = rest(ex, "alice", SELL, ONE_BTC, 610_000)
    # ETH: 0.01 ETH (10 lots) at 2900.00 (290_000 ticks) = 29 USDT >= 20 USDT minimum
    e1 = rest(ex, "alice", BUY, 10, 290_000, market=ETH)
    b1 = rest(ex, "bob", BUY, ONE_BTC, 590_000)
    events = ok(ex.submit(CancelAll("alice", BTC)))
    assert [(e.order_id, e.stream, e.reason) for e in of_type(events, OrderCanceled)] == [
        (a1, BTC, "canceled"),
        (a2, BTC, "canceled"),
    ]
    assert len(events) == 2
    assert [o.id for o in ex.open_orders("alice")] == [e1]
    assert [o.id for o in ex.open_orders("bob")] == [b1]
    events = ok(ex.submit(CancelAll("alice")))
    assert [(e.order_id, e.stream) for e in of_type(events, OrderCanceled)] == [(e1, ETH)]
    assert ex.open_orders("alice") == []
    assert ex.account_view("alice").order_margin == 0
    assert ok(ex.submit(CancelAll("alice"))) == []  # nothing left: no events, no rejection


# -- amend ---------------------------------------------------------------------------------------
def _first_maker_for_a_one_btc_sell(ex: Exchange, price: int) -> str:
    (trade,) = of_type(ok(place(ex, "carol", SELL, ONE_BTC, price, tif=TimeInForce.IOC)), Trade)
    return trade.maker_account


def test_amend_price_loses_priority(ex: Exchange) -> None:
    a = rest(ex, "alice", BUY, ONE_BTC, 590_100)
    rest(ex, "bob", BUY, ONE_BTC, 590_000)
    (amended,) = ok(ex.submit(AmendOrder("alice", BTC, order_id=a, price=590_000)))
    assert isinstance(amended, OrderAmended)
    assert (amended.price, amended.qty, amended.remaining) == (590_000, 1_000, 1_000)
    assert amended.priority_kept is False
    assert book(ex) == ([(590_000, 2_000)], [])
    assert _first_maker_for_a_one_btc_sell(ex, 590_000) == "bob"
    assert _first_maker_for_a_one_btc_sell(ex, 590_000) == "alice"


def test_amend_price_away_and_back_loses_priority(ex: Exchange) -> None:
    # Regression (fails on e11b3bf): the amended order came back to life in its old queue slot.
    a = rest(ex, "alice", BUY, ONE_BTC, 590_000)
    rest(ex, "bob", BUY, ONE_BTC, 590_000)
    ok(ex.submit(AmendOrder("alice", BTC, order_id=a, price=589_900)))
    (back,) = ok(ex.submit(AmendOrder("alice", BTC, order_id=a, price=590_000)))
    assert isinstance(back, OrderAmended) and back.priority_kept is False
    assert book(ex) == ([(590_000, 2_000)], [])
    assert _first_maker_for_a_one_btc_sell(ex, 590_000) == "bob"
    assert _first_maker_for_a_one_btc_sell(ex, 590_000) == "alice"
    assert book(ex) == ([], [])


def test_amend_by_client_id_then_cancel_by_client_id(ex: Exchange) -> None:
    a = rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id="cl-7")
    rest(ex, "bob", BUY, ONE_BTC, 590_000)
    ok(ex.submit(AmendOrder("alice", BTC, client_id="cl-7", qty=1_500)))  # loses priority
    ok(ex.submit(AmendOrder("alice", BTC, client_id="cl-7", price=589_000)))
    found = ex.get_order("alice", client_id="cl-7")
    assert found is not None and (found.id, found.price, found.qty, found.live) == (
        a,
        589_000,
        1_500,
        True,
    )
    cmd = PlaceOrder("alice", BTC, BUY, ONE_BTC, 580_000, client_id="cl-7")
    assert_rejected(ex, cmd, RejectCode.DUPLICATE_CLIENT_ORDER_ID)
    (cancel,) = ok(ex.submit(CancelOrder("alice", BTC, client_id="cl-7")))
    assert isinstance(cancel, OrderCanceled) and (cancel.order_id, cancel.remaining) == (a, 1_500)
    assert book(ex) == ([(590_000, ONE_BTC)], [])
    assert ex.open_orders("alice") == []


def test_amend_reduce_only_clipped_to_no_change_is_rejected(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC)
    ro = rest(ex, "alice", SELL, ONE_BTC, 610_000, reduce_only=True)
    # asking for 2 BTC on a 1 BTC position is clipped back to 1 BTC: nothing changes
    cmd = AmendOrder("alice", BTC, order_id=ro, qty=2 * ONE_BTC)
    assert_rejected(ex, cmd, RejectCode.AMEND_NO_CHANGE)


def test_amend_size_increase_loses_priority(ex: Exchange) -> None:
    a = rest(ex, "alice", BUY, ONE_BTC, 590_000)
    rest(ex, "bob", BUY, ONE_BTC, 590_000)
    (amended,) = ok(ex.submit(AmendOrder("alice", BTC, order_id=a, qty=2_000)))
    assert isinstance(amended, OrderAmended)
    assert (amended.qty, amended.remaining, amended.priority_kept) == (2_000, 2_000, False)
    assert _first_maker_for_a_one_btc_sell(ex, 590_000) == "bob"


def test_amend_size_decrease_keeps_priority_and_releases_margin(ex: Exchange) -> None:
    a = rest(ex, "alice", BUY, 2 * ONE_BTC, 590_000)
    rest(ex, "bob", BUY, ONE_BTC, 590_000)
    # 2 BTC margin: 590000 * 2000 * 10000 / 20 = 590_000_000_000
    assert ex.account_view("alice").order_margin == 590_000_000_000
    (amended,) = ok(ex.submit(AmendOrder("alice", BTC, order_id=a, qty=1_000)))
    assert isinstance(amended, OrderAmended)
    assert (amended.qty, amended.remaining, amended.priority_kept) == (1_000, 1_000, True)
    assert ex.account_view("alice").order_margin == 295_000_000_000
    assert book(ex) == ([(590_000, 2_000)], [])
    assert _first_maker_for_a_one_btc_sell(ex, 590_000) == "alice"


def test_amend_qty_is_total_including_filled(ex: Exchange) -> None:
    a = rest(ex, "alice", BUY, 3 * ONE_BTC, 590_000)
    ok(place(ex, "carol", SELL, ONE_BTC, 590_000))  # alice: filled 1000, remaining 2000
    (amended,) = ok(ex.submit(AmendOrder("alice", BTC, order_id=a, qty=2_000)))
    assert isinstance(amended, OrderAmended)
    assert (amended.qty, amended.remaining, amended.priority_kept) == (2_000, 1_000, True)
    assert book(ex) == ([(590_000, 1_000)], [])


def test_amend_that_crosses_executes_at_the_makers_price(ex: Exchange, clock: ManualClock) -> None:
    bob = rest(ex, "bob", SELL, ONE_BTC, 600_000)
    a = rest(ex, "alice", BUY, ONE_BTC, 599_000, client_id="a-1")
    clock.advance(5)
    events = ok(ex.submit(AmendOrder("alice", BTC, client_id="a-1", price=600_500)))
    assert kinds(events) == ["OrderAmended", "Trade"]
    trade = events[1]
    assert isinstance(trade, Trade)
    assert (trade.maker_order_id, trade.taker_order_id, trade.price, trade.qty) == (
        bob,
        a,
        600_000,
        1_000,
    )
    assert trade.ts == START_MS + 5
    # the amended order is the taker: taker fee 600000 * 1000 * 5 = 3_000_000_000
    assert (trade.maker_fee, trade.taker_fee) == (1_200_000_000, 3_000_000_000)
    assert book(ex) == ([], [])
    order = ex.get_order("alice", order_id=a)
    assert order is not None and order.status == "FILLED"


# -- self-trade prevention -----------------------------------------------------------------------
def test_stp_cancel_taker(ex: Exchange) -> None:
    maker = rest(ex, "alice", SELL, ONE_BTC, BTC_MARK)
    events = ok(place(ex, "alice", BUY, ONE_BTC, BTC_MARK, stp=CT))
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    taker = events[0].order_id  # type: ignore[attr-defined]
    cancel = events[1]
    assert isinstance(cancel, OrderCanceled)
    assert (cancel.order_id, cancel.remaining, cancel.reason) == (taker, 1_000, "self_trade")
    assert [o.id for o in ex.open_orders("alice")] == [maker]
    assert book(ex) == ([], [(BTC_MARK, ONE_BTC)])


def test_stp_cancel_taker_after_filling_better_orders(ex: Exchange) -> None:
    bob = rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
    maker = rest(ex, "alice", SELL, ONE_BTC, BTC_MARK)
    events = ok(place(ex, "alice", BUY, 2 * ONE_BTC, BTC_MARK, stp=CT))
    assert kinds(events) == ["OrderAccepted", "Trade", "OrderCanceled"]
    assert events[1].maker_order_id == bob  # type: ignore[attr-defined]
    assert (events[2].remaining, events[2].reason) == (1_000, "self_trade")  # type: ignore[attr-defined]
    assert [o.id for o in ex.open_orders("alice")] == [maker]


def test_stp_cancel_maker_then_keeps_matching(ex: Exchange) -> None:
    maker = rest(ex, "alice", SELL, ONE_BTC, BTC_MARK)
    bob = rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
    events = ok(place(ex, "alice", BUY, ONE_BTC, BTC_MARK, stp=CM))
    assert kinds(events) == ["OrderAccepted", "OrderCanceled", "Trade"]
    cancel, trade = events[1], events[2]
    assert isinstance(cancel, OrderCanceled)
    assert (cancel.order_id, cancel.remaining, cancel.reason) == (maker, 1_000, "self_trade")
    assert isinstance(trade, Trade) and trade.maker_order_id == bob
    assert book(ex) == ([], [])


def test_stp_cancel_maker_rests_the_remainder(ex: Exchange) -> None:
    maker = rest(ex, "alice", SELL, ONE_BTC, BTC_MARK)
    events = ok(place(ex, "alice", BUY, ONE_BTC, BTC_MARK, stp=CM))
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert events[1].order_id == maker  # type: ignore[attr-defined]
    assert book(ex) == ([(BTC_MARK, ONE_BTC)], [])


def test_stp_cancel_both(ex: Exchange) -> None:
    maker = rest(ex, "alice", SELL, ONE_BTC, BTC_MARK)
    rest(ex, "bob", SELL, ONE_BTC, 600_100)
    events = ok(place(ex, "alice", BUY, 2 * ONE_BTC, 600_100, stp=CB))
    assert kinds(events) == ["OrderAccepted", "OrderCanceled", "OrderCanceled"]
    taker = events[0].order_id  # type: ignore[attr-defined]
    assert [(e.order_id, e.remaining, e.reason) for e in of_type(events, OrderCanceled)] == [
        (maker, 1_000, "self_trade"),
        (taker, 2_000, "self_trade"),
    ]
    assert ex.open_orders("alice") == []
    assert book(ex) == ([], [(600_100, ONE_BTC)])  # bob's ask untouched


def test_stp_default_comes_from_config() -> None:
    ex = make_exchange(config=ExchangeConfig(default_stp=CM))
    maker = rest(ex, "alice", SELL, ONE_BTC, BTC_MARK)
    events = ok(place(ex, "alice", BUY, ONE_BTC, BTC_MARK))
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert events[1].order_id == maker  # type: ignore[attr-defined]
    # the fixture's default is CANCEL_TAKER
    ex2 = make_exchange()
    rest(ex2, "alice", SELL, ONE_BTC, BTC_MARK)
    events = ok(place(ex2, "alice", BUY, ONE_BTC, BTC_MARK))
    assert events[1].order_id == events[0].order_id  # type: ignore[attr-defined]


def test_fok_counts_liquidity_as_stp_would(ex: Exchange) -> None:
    rest(ex, "alice", SELL, ONE_BTC, BTC_MARK)
    bob = rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
    # CANCEL_TAKER stops at alice's own order, in front of bob's: nothing fillable
    cmd = PlaceOrder("alice", BTC, BUY, ONE_BTC, BTC_MARK, tif=TimeInForce.FOK, stp=CT)
    assert assert_rejected(ex, cmd, RejectCode.FOK_NOT_FILLABLE).details["fillable"] == 0
    # CANCEL_MAKER skips (and cancels) her own order and fills bob's
    events = ok(place(ex, "alice", BUY, ONE_BTC, BTC_MARK, tif=TimeInForce.FOK, stp=CM))
    assert kinds(events) == ["OrderAccepted", "OrderCanceled", "Trade"]
    assert events[2].maker_order_id == bob  # type: ignore[attr-defined]


# -- client order ids ----------------------------------------------------------------------------
def test_duplicate_client_id_among_open_orders(ex: Exchange) -> None:
    oid = rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id="c1")
    cmd = PlaceOrder("alice", BTC, SELL, ONE_BTC, 610_000, client_id="c1")
    rej = assert_rejected(ex, cmd, RejectCode.DUPLICATE_CLIENT_ORDER_ID)
    assert rej.details["existing_order"] == {
        "order_id": oid,
        "client_id": "c1",
        "account": "alice",
        "market": BTC,
        "side": 1,
        "order_type": "LIMIT",
        "tif": "GTC",
        "price": 590_000,
        "qty": 1_000,
        "filled": 0,
        "remaining": 1_000,
        "reduce_only": False,
        "status": "NEW",
        "ts": START_MS,
    }
    # the id is per account: bob may use it
    ok(place(ex, "bob", SELL, ONE_BTC, 610_000, client_id="c1"))


def test_duplicate_client_id_among_recent_orders(ex: Exchange) -> None:
    rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
    filled = ok(place(ex, "alice", BUY, ONE_BTC, BTC_MARK, client_id="f1"))
    assert kinds(filled) == ["OrderAccepted", "Trade"]
    rej = assert_rejected(
        ex,
        PlaceOrder("alice", BTC, BUY, ONE_BTC, 590_000, client_id="f1"),
        RejectCode.DUPLICATE_CLIENT_ORDER_ID,
    )
    existing = rej.details["existing_order"]
    assert (existing["order_id"], existing["status"], existing["filled"]) == (
        filled[0].order_id,  # type: ignore[attr-defined]
        "FILLED",
        1_000,
    )
    oid = rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id="x1")
    ok(ex.submit(CancelOrder("alice", BTC, order_id=oid)))
    rej = assert_rejected(
        ex,
        PlaceOrder("alice", BTC, BUY, ONE_BTC, 590_000, client_id="x1"),
        RejectCode.DUPLICATE_CLIENT_ORDER_ID,
    )
    assert (rej.details["existing_order"]["order_id"], rej.details["existing_order"]["status"]) == (
        oid,
        "CANCELED",
    )


def test_client_id_reusable_after_the_recent_ttl() -> None:
    clock = ManualClock(START_MS)
    ex = make_exchange(config=ExchangeConfig(recent_order_ttl_ms=60_000), clock=clock)
    oid = rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id="c1")
    ok(ex.submit(CancelOrder("alice", BTC, order_id=oid)))  # done at START_MS
    again = PlaceOrder("alice", BTC, BUY, ONE_BTC, 590_000, client_id="c1")
    clock.advance(60_000)  # done_ts == now - ttl: still inside the window
    assert_rejected(ex, again, RejectCode.DUPLICATE_CLIENT_ORDER_ID)
    clock.advance(1)  # now outside
    new_id = accepted_id(ok(ex.submit(again)))
    assert new_id != oid
    # The first order is still in the history, past the window: the new one took its id over.
    alice = ex.accounts["alice"]
    assert [(o.id, o.superseded) for o in alice.finished] == [(oid, True)]
    found = ex.get_order("alice", client_id="c1")
    assert found is not None and found.id == new_id
    (cancel,) = ok(ex.submit(CancelOrder("alice", BTC, client_id="c1")))
    assert cancel.order_id == new_id  # type: ignore[attr-defined]
    # Finishing it forgot the first order (expired): the id stays with the new one.
    assert [o.id for o in alice.finished] == [new_id]
    assert alice.client_ids["c1"].id == new_id
    assert_rejected(ex, again, RejectCode.DUPLICATE_CLIENT_ORDER_ID)


def test_open_order_client_id_never_expires() -> None:
    clock = ManualClock(START_MS)
    ex = make_exchange(config=ExchangeConfig(recent_order_ttl_ms=1_000), clock=clock)
    rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id="c1")
    clock.advance(10_000)
    cmd = PlaceOrder("alice", BTC, BUY, ONE_BTC, 590_000, client_id="c1")
    assert_rejected(ex, cmd, RejectCode.DUPLICATE_CLIENT_ORDER_ID)


def test_client_id_reusable_after_the_recent_count_window() -> None:
    ex = make_exchange(config=ExchangeConfig(recent_orders=2))
    for cid in ("c1", "c2", "c3"):
        oid = rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id=cid)
        ok(ex.submit(CancelOrder("alice", BTC, order_id=oid)))
    # three finished orders, two remembered: c1 fell out, c2 and c3 are still recent
    ok(place(ex, "alice", BUY, ONE_BTC, 590_000, client_id="c1"))
    for cid in ("c2", "c3"):
        cmd = PlaceOrder("alice", BTC, BUY, ONE_BTC, 590_000, client_id=cid)
        assert_rejected(ex, cmd, RejectCode.DUPLICATE_CLIENT_ORDER_ID)


def _cancelled(ex: Exchange, client_id: str) -> int:
    oid = rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id=client_id)
    ok(ex.submit(CancelOrder("alice", BTC, order_id=oid)))
    return oid


def test_the_history_is_a_ring_that_replaces_its_oldest_order() -> None:
    ex = make_exchange(config=ExchangeConfig(recent_orders=3))
    ids = [_cancelled(ex, f"c{i}") for i in range(8)]
    alice = ex.accounts["alice"]
    assert [o.id for o in alice.finished] == ids[-3:]  # oldest first
    # the five forgotten ones wait in the ring, fewer than a batch, to be let go
    assert [o.id for o in alice.forgotten] == ids[:5]
    assert len(alice.done) == 8 and alice.forgotten_count == 5
    assert set(alice.client_ids) == {f"c{i}" for i in range(8)}
    assert ex.get_order("alice", order_id=ids[4]) is None
    assert ex.get_order("alice", client_id="c4") is None  # not remembered
    found = ex.get_order("alice", order_id=ids[5])
    assert found is not None and found.client_id == "c5"


def test_forgotten_orders_are_let_go_a_batch_at_a_time() -> None:
    ex = make_exchange(config=ExchangeConfig(recent_orders=2, forget_batch=3))
    ids = [_cancelled(ex, f"c{i}") for i in range(7)]
    alice = ex.accounts["alice"]
    assert [o.id for o in alice.finished] == ids[-2:]
    # c0..c4 forgotten: the first three let go together, c3 and c4 not yet
    assert [o.id for o in alice.forgotten] == ids[3:5]
    # the ring stopped growing at the limit plus a batch less one: two remembered, two forgotten
    assert len(alice.done) == 4 and sum(o is None for o in alice.done) == 0
    assert set(alice.client_ids) == {"c3", "c4", "c5", "c6"}
    # a forgotten order's id is free to reuse, released or not
    c0 = accepted_id(ok(place(ex, "alice", BUY, ONE_BTC, 590_000, client_id="c0")))
    c3 = accepted_id(ok(place(ex, "alice", BUY, ONE_BTC, 590_000, client_id="c3")))
    assert alice.forgotten[0].superseded  # the new c3 took the id over
    for cid in ("c5", "c6"):  # still remembered
        cmd = PlaceOrder("alice", BTC, BUY, ONE_BTC, 590_000, client_id=cid)
        assert_rejected(ex, cmd, RejectCode.DUPLICATE_CLIENT_ORDER_ID)
    _cancelled(ex, "c7")  # forgets c5: a batch of three (c3, c4, c5) is released
    assert alice.forgotten == []
    assert set(alice.client_ids) == {"c0", "c3", "c6", "c7"}
    assert ex.get_order("alice", client_id="c3").id == c3  # type: ignore[union-attr]
    assert alice.client_ids["c0"].id == c0


def test_forget_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="forget_batch"):
        make_exchange(config=ExchangeConfig(forget_batch=0))


def test_the_history_ring_lets_expired_orders_go_and_keeps_its_order() -> None:
    clock = ManualClock(START_MS)
    ex = make_exchange(
        # (a batch of one: a forgotten order is let go at once)
        config=ExchangeConfig(recent_orders=4, recent_order_ttl_ms=1_000, forget_batch=1),
        clock=clock,
    )
    alice = ex.accounts["alice"]
    a = _cancelled(ex, "a")
    clock.advance(500)
    b = _cancelled(ex, "b")
    clock.advance(700)  # a expired, b not
    c = _cancelled(ex, "c")  # takes a's slot at the front of the list
    assert alice.done[0] is not None and alice.done[0].id == c
    d = _cancelled(ex, "d")  # the ring is full below the limit: it grows in the middle
    assert [o.id for o in alice.finished] == [b, c, d]
    assert ex.get_order("alice", order_id=a) is None and "a" not in alice.client_ids
    e = _cancelled(ex, "e")
    f = _cancelled(ex, "f")  # at the limit: replaces b
    assert [o.id for o in alice.finished] == [c, d, e, f] and len(alice.done) == 4
    clock.advance(5_000)  # all four expire; the next finish forgets them and stays alone
    g = _cancelled(ex, "g")
    assert [o.id for o in alice.finished] == [g]
    assert sum(o is not None for o in alice.done) == 1
    assert set(alice.client_ids) == {"g"}


def test_nothing_is_remembered_with_a_zero_history() -> None:
    ex = make_exchange(config=ExchangeConfig(recent_orders=0))
    oid = _cancelled(ex, "c1")
    alice = ex.accounts["alice"]
    assert alice.finished == [] and alice.client_ids == {}
    assert ex.get_order("alice", order_id=oid) is None
    _cancelled(ex, "c1")  # reusable at once


def test_rejected_order_does_not_consume_its_client_id(ex: Exchange) -> None:
    bad = PlaceOrder("alice", BTC, BUY, ONE_BTC, 700_000, client_id="c9")
    assert_rejected(ex, bad, RejectCode.PRICE_OUT_OF_BAND)
    ok(place(ex, "alice", BUY, ONE_BTC, 590_000, client_id="c9"))


# -- sequence numbers ----------------------------------------------------------------------------
def test_sequence_numbers_are_gapless_per_stream(clock: ManualClock) -> None:
    ex = make_exchange(accounts=(), clock=clock)
    events = []
    for account in ("alice", "bob", "carol"):
        events += ex.submit(Deposit(account, usdt(100_000)))
    commands = [
        PlaceOrder("bob", BTC, SELL, ONE_BTC, 600_000),
        PlaceOrder("bob", BTC, SELL, ONE_BTC, 600_100),
        PlaceOrder("carol", ETH, BUY, 100, 299_000),
        PlaceOrder("alice", BTC, BUY, 1_500, 600_100),  # two trades
        PlaceOrder("alice", BTC, BUY, ONE_BTC, 700_000),  # rejected: out of band
        PlaceOrder("alice", ETH, SELL, 50, 299_000),  # trade on ETH
        Withdraw("alice", usdt(10)),
        AmendOrder("bob", BTC, order_id=2, qty=600),
        SetMarkPrice(BTC, 601_000),
        SetLeverage("carol", ETH, 10),
        # market buy: protection limit floor(601000 * 1.05) = 631050, fills bob's last 100 lots
        PlaceOrder("alice", BTC, BUY, ONE_BTC, order_type=OrderType.MARKET),
        CancelAll("carol"),
        Withdraw("carol", usdt(10**9)),  # rejected
        Deposit("carol", usdt(5)),
    ]
    for command in commands:
        clock.advance(1)
        events += ex.submit(command)
    assert kinds(events).count("Rejected") == 2
    assert events[-1].ts == START_MS + len(commands)  # events carry the injected clock's time
    assert kinds(events).count("Trade") == 4  # 2 by the BTC limit, 1 on ETH, 1 by the market order
    by_stream: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if isinstance(event, SequencedEvent):
            by_stream[event.stream].append(event.seq)
    assert set(by_stream) == {"accounts", BTC, ETH}
    for stream, seqs in by_stream.items():
        assert seqs == list(range(1, len(seqs) + 1)), stream
    assert len(by_stream["accounts"]) == 5  # 3 deposits, 1 withdrawal, 1 deposit
    assert ex.book_snapshot(BTC).seq == by_stream[BTC][-1]
    assert ex.book_snapshot(ETH).seq == by_stream[ETH][-1]
    assert_cash_conserved(ex)


# -- fees ----------------------------------------------------------------------------------------
def test_btc_fees_are_exact(ex: Exchange) -> None:
    rest(ex, "bob", SELL, 1_234, 612_345)
    (trade,) = of_type(ok(place(ex, "alice", BUY, 1_234, 612_345)), Trade)
    # notional = 612345 * 1234 * 10000 = 7_556_337_300_000 units (75563.373 USDT)
    assert btc_notional(612_345, 1_234) == 7_556_337_300_000
    # maker 0.02% = 1_511_267_460; taker 0.05% = 3_778_168_650
    assert (trade.maker_fee, trade.taker_fee) == (1_511_267_460, 3_778_168_650)
    assert ex.fees_collected == 1_511_267_460 + 3_778_168_650
    assert_cash_conserved(ex)


def test_negative_maker_fee_is_a_rebate_rounded_in_the_venues_favour() -> None:
    ex = make_exchange([fee_instrument(maker_fee="-0.0001", taker_fee="0.0005")])
    rest(ex, "bob", SELL, 7, 300_001, market="FEE-PERP")
    (trade,) = of_type(ok(place(ex, "alice", BUY, 7, 300_001, market="FEE-PERP")), Trade)
    # notional = 300001 ticks * 7 lots * 1000 = 2_100_007_000 units (21.00007 USDT)
    # maker: 2_100_007_000 * -0.0001 = -210_000.7 -> rebate rounded toward zero: -210_000
    # taker: 2_100_007_000 *  0.0005 = 1_050_003.5 -> charge rounded up: 1_050_004
    assert (trade.maker_fee, trade.taker_fee) == (-210_000, 1_050_004)
    assert ex.account_view("bob").collateral == usdt(1_000_000) + 210_000
    assert ex.account_view("alice").collateral == usdt(1_000_000) - 1_050_004
    assert ex.fees_collected == 1_050_004 - 210_000
    assert_cash_conserved(ex)


def test_positive_fee_charges_round_up() -> None:
    ex = make_exchange([fee_instrument(maker_fee="0.0002", taker_fee="0.0007")])
    rest(ex, "bob", BUY, 7, 300_001, market="FEE-PERP")
    (trade,) = of_type(ok(place(ex, "alice", SELL, 7, 300_001, market="FEE-PERP")), Trade)
    # maker: 2_100_007_000 * 0.0002 = 420_001.4 -> 420_002
    # taker: 2_100_007_000 * 0.0007 = 1_470_004.9 -> 1_470_005
    assert (trade.maker_fee, trade.taker_fee) == (420_002, 1_470_005)
    assert ex.fees_collected == 1_890_007
    assert_cash_conserved(ex)


# -- order-type guarantees under a seeded random session --------------------------------------
def test_order_type_guarantees_in_a_seeded_random_session() -> None:
    """600 pseudo-random commands (deterministic seed) with many reduce-only orders and
    crowded price levels; after each accepted order: a FOK filled completely, a POST_ONLY
    never took, IOC/market orders never rest, every trade is at the maker's resting price and
    within the taker's limit, and no resting reduce-only order exceeds its position."""
    ex = make_exchange(accounts=("a", "b", "c", "d"), funding_usdt=300_000)
    rng = random.Random(7)
    checked = {tif: 0 for tif in TimeInForce}
    for _ in range(600):
        who = rng.choice("abcd")
        if rng.random() < 0.15 and ex.open_orders(who, BTC):
            order = rng.choice(ex.open_orders(who, BTC))
            ex.submit(
                AmendOrder(
                    who,
                    BTC,
                    order_id=order.id,
                    price=order.price + rng.choice([-10, 0, 10]),
                    qty=order.qty + rng.choice([-1, 0, 1]) * 100,
                )
            )
            continue
        side = rng.choice([BUY, SELL])
        price = BTC_MARK + rng.randint(-5, 5) * 10  # few levels, many orders per level
        qty = rng.choice([200, 500, 1_000, 1_500])
        tif = rng.choice(list(TimeInForce))
        reduce_only = rng.random() < 0.3
        is_market = rng.random() < 0.1 and tif in (TimeInForce.IOC, TimeInForce.FOK)
        makers = {
            o.id: (o.price, o.account) for a in ex.accounts.values() for o in a.open_orders.values()
        }
        cmd = PlaceOrder(
            who,
            BTC,
            side,
            qty,
            None if is_market else price,
            order_type=OrderType.MARKET if is_market else OrderType.LIMIT,
            tif=tif,
            reduce_only=reduce_only,
        )
        events = ex.submit(cmd)
        if kinds(events)[0] == "Rejected":
            continue
        acc = events[0]
        assert isinstance(acc, OrderAccepted)
        trades = [t for t in of_type(events, Trade) if t.taker_order_id == acc.order_id]
        filled = sum(t.qty for t in trades)
        for t in trades:
            assert t.price == makers[t.maker_order_id][0]
            assert side * t.price <= side * acc.price
        if tif is TimeInForce.FOK:
            assert filled == acc.qty, events
        if tif is TimeInForce.POST_ONLY:
            assert trades == []
        if tif in (TimeInForce.IOC, TimeInForce.FOK):
            assert acc.order_id not in {o.id for o in ex.open_orders(who)}
        checked[tif] += 1
        for account in ex.accounts.values():
            pos = account.positions.get(BTC)
            for o in account.open_orders.values():
                if o.reduce_only:
                    assert pos is not None and pos.size * o.side < 0
                    assert o.remaining <= abs(pos.size)
    assert min(checked.values()) > 10, checked
    assert_cash_conserved(ex)

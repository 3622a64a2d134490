"""Collateral, positions, PnL and margin of accounts, with hand-computed numbers.

BTC-PERP: notional = ticks * lots * 10_000 units; 1 BTC at 60000 = 6e12 units (60000 USDT);
maker fee = ticks * lots * 2, taker fee = ticks * lots * 5 units. Fixture accounts start with
1,000,000 USDT = 1e14 units. ``open_position(ex, who, side, qty, price)`` has carol rest the
opposite order and ``who`` take it (``who`` pays the taker fee, carol the maker fee).
"""

from __future__ import annotations

import random
from fractions import Fraction

from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Deposit,
    Deposited,
    Exchange,
    LeverageChanged,
    OrderType,
    PlaceOrder,
    RejectCode,
    SetLeverage,
    SetMarkPrice,
    TimeInForce,
    Trade,
    Withdraw,
    Withdrawn,
    default_instruments,
)

from .conftest import (
    BTC,
    BTC_MARK,
    BUY,
    ETH,
    INSURANCE_SEED,
    ONE_BTC,
    SELL,
    assert_cash_conserved,
    assert_rejected,
    cash_total,
    fee_instrument,
    insurance_fund,
    insurance_seeds,
    make_exchange,
    of_type,
    ok,
    open_position,
    place,
    position,
    rest,
    usdt,
    user_cash_total,
)

START = usdt(1_000_000)  # 100_000_000_000_000
SEEDS = 3 * INSURANCE_SEED  # BTC, ETH and SOL insurance funds, 1,000,000 USDT each


# -- deposits and withdrawals --------------------------------------------------------------------
def test_deposit_creates_and_credits_the_account() -> None:
    ex = make_exchange(accounts=())
    (dep,) = ok(ex.submit(Deposit("dave", usdt(1_500))))
    assert isinstance(dep, Deposited)
    assert (dep.stream, dep.seq, dep.account, dep.amount, dep.collateral) == (
        "accounts",
        1,
        "dave",
        150_000_000_000,
        150_000_000_000,
    )
    (dep,) = ok(ex.submit(Deposit("dave", 1)))  # one unit = 1e-8 USDT
    assert isinstance(dep, Deposited) and (dep.seq, dep.collateral) == (2, 150_000_000_001)
    view = ex.account_view("dave")
    assert (view.collateral, view.equity, view.available) == (150_000_000_001,) * 3
    # total_deposits also counts the three insurance-fund seeds (they are not Deposit events)
    assert insurance_seeds(ex) == SEEDS
    assert ex.total_deposits == SEEDS + 150_000_000_001
    assert_cash_conserved(ex)


def test_withdraw_debits_down_to_zero() -> None:
    ex = make_exchange(accounts=())
    ok(ex.submit(Deposit("dave", usdt(100))))
    (wd,) = ok(ex.submit(Withdraw("dave", usdt(40))))
    assert isinstance(wd, Withdrawn)
    assert (wd.stream, wd.seq, wd.amount, wd.collateral) == ("accounts", 2, usdt(40), usdt(60))
    ok(ex.submit(Withdraw("dave", usdt(60))))
    assert ex.account_view("dave").collateral == 0
    assert_rejected(ex, Withdraw("dave", 1), RejectCode.WITHDRAWAL_EXCEEDS_AVAILABLE)
    assert (ex.total_deposits - SEEDS, ex.total_withdrawals) == (usdt(100), usdt(100))
    assert user_cash_total(ex) == 0  # dave is flat and empty; only the funds' seeds remain
    assert_cash_conserved(ex)


def test_withdrawal_limited_by_order_margin(ex: Exchange) -> None:
    rest(ex, "alice", BUY, ONE_BTC, 590_000)  # holds 590000*1000*10000/20 = 2.95e11
    limit = START - 295_000_000_000
    assert_rejected(ex, Withdraw("alice", limit + 1), RejectCode.WITHDRAWAL_EXCEEDS_AVAILABLE)
    ok(ex.submit(Withdraw("alice", limit)))
    assert ex.account_view("alice").available == 0


# -- realized PnL ----------------------------------------------------------------------------------
def test_realized_pnl_on_closing_a_long(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC, 600_000)  # taker fee 3e9
    rest(ex, "bob", BUY, ONE_BTC, 610_000)
    events = ok(place(ex, "alice", SELL, ONE_BTC, 610_000, tif=TimeInForce.IOC))
    (trade,) = of_type(events, Trade)
    # realized = exit - entry = 610000*1000*10000 - 6e12 = 6.1e12 - 6e12 = 1e11 (1000 USDT)
    assert (trade.taker_realized, trade.maker_realized) == (100_000_000_000, 0)
    # taker fee on the exit: 610000 * 1000 * 5 = 3_050_000_000
    assert trade.taker_fee == 3_050_000_000
    view = ex.account_view("alice")
    # 1e14 - 3e9 - 3.05e9 + 1e11 = 100_093_950_000_000
    assert view.collateral == 100_093_950_000_000
    (pos,) = view.positions  # shown: it has realized PnL
    assert (pos.size, pos.cost, pos.realized_pnl, pos.unrealized_pnl) == (0, 0, 10**11, 0)
    assert (pos.initial_margin, pos.maintenance_margin) == (0, 0)
    assert_cash_conserved(ex)


def test_realized_pnl_on_closing_a_short_gain_and_loss(ex: Exchange) -> None:
    open_position(ex, "alice", SELL, ONE_BTC, 600_000)
    # buy back half at 59000: released = 6e12 * 500 // 1000 = 3e12 (cost is -6e12)
    # realized = 3e12 - 590000*500*10000 = 3e12 - 2.95e12 = 5e10
    rest(ex, "bob", SELL, 500, 590_000)
    (t1,) = of_type(ok(place(ex, "alice", BUY, 500, 590_000)), Trade)
    assert t1.taker_realized == 50_000_000_000
    # the other half at 60500: 3e12 - 605000*500*10000 = 3e12 - 3.025e12 = -2.5e10
    rest(ex, "bob", SELL, 500, 605_000)
    (t2,) = of_type(ok(place(ex, "alice", BUY, 500, 605_000)), Trade)
    assert t2.taker_realized == -25_000_000_000
    pos = position(ex, "alice")
    assert pos is not None and (pos.size, pos.cost, pos.realized_pnl) == (0, 0, 25_000_000_000)
    # fees: 600000*1000*5 + 590000*500*5 + 605000*500*5 = 3e9 + 1.475e9 + 1.5125e9
    assert ex.account_view("alice").collateral == START + 25_000_000_000 - 5_987_500_000
    assert_cash_conserved(ex)


def test_flip_long_to_short_in_one_fill(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC, 600_000)
    rest(ex, "bob", BUY, 3 * ONE_BTC, 610_000)
    (trade,) = of_type(ok(place(ex, "alice", SELL, 3 * ONE_BTC, 610_000)), Trade)
    assert trade.qty == 3_000
    # realized only on the 1000 lots that close: 610000*1000*10000 - 6e12 = 1e11
    assert trade.taker_realized == 100_000_000_000
    # the other 2000 lots open a short at 61000: cost = -610000*2000*10000 = -1.22e13
    pos = position(ex, "alice")
    assert pos is not None
    assert (pos.size, pos.cost, pos.realized_pnl) == (-2_000, -12_200_000_000_000, 10**11)
    # fees 3e9 (open) + 610000*3000*5 = 9.15e9 (flip)
    assert ex.account_view("alice").collateral == START + 10**11 - 3_000_000_000 - 9_150_000_000
    # unrealized at mark 600000: -2000 * 600000 * 10000 - (-1.22e13) = -1.2e13 + 1.22e13 = 2e11
    assert pos.unrealized_pnl == 200_000_000_000
    assert_cash_conserved(ex)


def test_flip_short_to_long_in_one_fill(ex: Exchange) -> None:
    open_position(ex, "alice", SELL, 2 * ONE_BTC, 600_000)  # cost -1.2e13
    rest(ex, "bob", SELL, 3 * ONE_BTC, 595_000)
    (trade,) = of_type(ok(place(ex, "alice", BUY, 3 * ONE_BTC, 595_000)), Trade)
    # close 2000: 1.2e13 - 595000*2000*10000 = 1.2e13 - 1.19e13 = 1e11; open long 1000 @ 59500
    assert trade.taker_realized == 100_000_000_000
    pos = position(ex, "alice")
    assert pos is not None and (pos.size, pos.cost) == (1_000, 5_950_000_000_000)
    assert_cash_conserved(ex)


def test_maker_side_realizes_too(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC, 600_000)  # carol is short 1 @ 60000 (maker)
    rest(ex, "carol", BUY, ONE_BTC, 599_000)
    (trade,) = of_type(ok(place(ex, "bob", SELL, ONE_BTC, 599_000)), Trade)
    # carol buys back as maker: 6e12 - 599000*1000*10000 = 6e12 - 5.99e12 = 1e10
    assert (trade.maker_account, trade.maker_realized, trade.taker_realized) == ("carol", 10**10, 0)
    # carol paid two maker fees: 600000*1000*2 + 599000*1000*2 = 1.2e9 + 1.198e9
    assert ex.account_view("carol").collateral == START + 10**10 - 2_398_000_000


# -- average entry ---------------------------------------------------------------------------------
def test_average_entry_over_several_fills_and_pro_rata_release(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, 1_000, 600_000)
    open_position(ex, "alice", BUY, 2_000, 600_001)
    # cost = 600000*1000*10000 + 600001*2000*10000 = 6e12 + 12_000_020_000_000
    pos = position(ex, "alice")
    assert pos is not None and (pos.size, pos.cost) == (3_000, 18_000_020_000_000)
    # average entry = cost / (size * 10000) = 18_000_020_000_000 / 30_000_000
    #               = 1_800_002 / 3 = 600000.666... ticks (60000.0666... USDT)
    assert Fraction(pos.cost, pos.size * 10_000) == Fraction(1_800_002, 3)
    # close 1000 at 600010: released = 18_000_020_000_000 * 1000 // 3000 = 6_000_006_666_666
    # (6_000_006_666_666.67 rounded toward zero); realized = 6_000_100_000_000 - released
    rest(ex, "bob", BUY, 3_000, 600_010)
    (t1,) = of_type(ok(place(ex, "alice", SELL, 1_000, 600_010)), Trade)
    assert t1.taker_realized == 93_333_334
    pos = position(ex, "alice")
    assert pos is not None and (pos.size, pos.cost) == (2_000, 12_000_013_333_334)
    # close the rest: the whole remaining cost is released
    # realized = 600010*2000*10000 - 12_000_013_333_334 = 12_000_200_000_000 - ... = 186_666_666
    (t2,) = of_type(ok(place(ex, "alice", SELL, 2_000, 600_010)), Trade)
    assert t2.taker_realized == 186_666_666
    # in total exactly proceeds - cost = 18_000_300_000_000 - 18_000_020_000_000 = 280_000_000
    pos = position(ex, "alice")
    assert pos is not None and (pos.size, pos.cost, pos.realized_pnl) == (0, 0, 280_000_000)
    assert_cash_conserved(ex)


def test_average_entry_short_releases_toward_zero(ex: Exchange) -> None:
    open_position(ex, "alice", SELL, 1_000, 600_000)
    open_position(ex, "alice", SELL, 2_000, 600_001)
    pos = position(ex, "alice")
    assert pos is not None and (pos.size, pos.cost) == (-3_000, -18_000_020_000_000)
    # buy back 1000 at 599990: released = -(18_000_020_000_000 * 1000 // 3000) = -6_000_006_666_666
    # realized = 6_000_006_666_666 - 599990*1000*10000 = 6_000_006_666_666 - 5_999_900_000_000
    rest(ex, "bob", SELL, 1_000, 599_990)
    (trade,) = of_type(ok(place(ex, "alice", BUY, 1_000, 599_990)), Trade)
    assert trade.taker_realized == 106_666_666
    pos = position(ex, "alice")
    assert pos is not None and (pos.size, pos.cost) == (-2_000, -12_000_013_333_334)
    assert_cash_conserved(ex)


# -- unrealized PnL, margin and available balance ----------------------------------------------
def test_unrealized_pnl_and_available_after_mark_moves(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC, 600_000)  # carol short 1 as maker
    ok(ex.submit(SetMarkPrice(BTC, 612_345)))
    view = ex.account_view("alice")
    # collateral = 1e14 - 3e9 (taker fee) = 99_997_000_000_000
    assert view.collateral == 99_997_000_000_000
    # upnl = 612345*1000*10000 - 6e12 = 6_123_450_000_000 - 6e12 = 123_450_000_000
    assert view.unrealized_pnl == 123_450_000_000
    assert view.equity == 100_120_450_000_000
    # position margin = ceil(6_123_450_000_000 / 20) = 306_172_500_000
    assert view.position_margin == 306_172_500_000
    assert view.available == 100_120_450_000_000 - 306_172_500_000
    # maintenance: 61234.5 USDT is in bracket 2 (<= 600000 USDT, mmr 0.5%, maint_amount 50):
    # ceil(6_123_450_000_000 * 0.005) - 50 USDT = 30_617_250_000 - 5_000_000_000
    assert view.maintenance_margin == 25_617_250_000
    # carol, short 1 at 60000 (maker fee 1.2e9): the mirror image
    carol = ex.account_view("carol")
    assert carol.unrealized_pnl == -123_450_000_000
    assert carol.available == START - 1_200_000_000 - 123_450_000_000 - 306_172_500_000
    # a mark below entry: 59000 -> upnl -1e11 for alice, margin 5.9e12 / 20 = 2.95e11
    ok(ex.submit(SetMarkPrice(BTC, 590_000)))
    view = ex.account_view("alice")
    assert (view.unrealized_pnl, view.position_margin) == (-100_000_000_000, 295_000_000_000)
    assert view.available == 99_997_000_000_000 - 100_000_000_000 - 295_000_000_000


def test_position_margin_rounds_up(ex: Exchange) -> None:
    ok(ex.submit(SetLeverage("alice", BTC, 7)))
    open_position(ex, "alice", BUY, ONE_BTC, 600_000)
    ok(ex.submit(SetMarkPrice(BTC, 612_345)))
    # 6_123_450_000_000 / 7 = 874_778_571_428.57... -> 874_778_571_429
    pos = position(ex, "alice")
    assert pos is not None and (pos.leverage, pos.initial_margin) == (7, 874_778_571_429)


def test_account_view_sums_markets(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC, 600_000)
    # ETH: 1 ETH = 1000 lots, 3000.00 = 300_000 ticks, factor 0.01*0.001*1e8 = 1000:
    # notional = 300000 * 1000 * 1000 = 3e11 (3000 USDT); taker fee 3e11 * 0.0005 = 1.5e8
    open_position(ex, "alice", SELL, 1_000, 300_000, market=ETH)
    ok(ex.submit(SetMarkPrice(ETH, 290_000)))  # short gains 290000*1000*1000 -> 1e10
    view = ex.account_view("alice")
    assert [p.market for p in view.positions] == [BTC, ETH]
    assert view.unrealized_pnl == 0 + 10_000_000_000
    # margins: 6e12 / 20 = 3e11 and 2.9e11 / 20 = 1.45e10
    assert view.position_margin == 300_000_000_000 + 14_500_000_000
    assert view.collateral == START - 3_000_000_000 - 150_000_000


# -- leverage --------------------------------------------------------------------------------------
def test_leverage_change_rescales_position_and_order_margin(ex: Exchange) -> None:
    open_position(ex, "alice", BUY, ONE_BTC, 600_000)
    rest(ex, "alice", BUY, ONE_BTC, 590_000)
    before = ex.account_view("alice")
    # 20x: position 6e12/20 = 3e11, order 5.9e12/20 = 2.95e11
    assert (before.position_margin, before.order_margin) == (300_000_000_000, 295_000_000_000)
    events = ok(ex.submit(SetLeverage("alice", BTC, 10)))
    (changed,) = events
    assert isinstance(changed, LeverageChanged)
    assert (changed.stream, changed.account, changed.leverage) == (BTC, "alice", 10)
    after = ex.account_view("alice")
    # 10x: position 6e11, order 5.9e11; available drops by 3e11 + 2.95e11 = 5.95e11
    assert (after.position_margin, after.order_margin) == (600_000_000_000, 590_000_000_000)
    assert before.available - after.available == 595_000_000_000
    # new orders are margined at the new leverage: 1 BTC at 58000 -> 5.8e12 / 10 = 5.8e11
    rest(ex, "alice", BUY, ONE_BTC, 580_000)
    # both bids: value 590000*1000 + 580000*1000, margin ceil(1.17e13 / 10) = 1.17e12
    assert ex.account_view("alice").order_margin == 1_170_000_000_000


def test_leverage_change_rejected_when_margin_is_insufficient() -> None:
    ex = make_exchange()
    ok(ex.submit(Deposit("dave", usdt(4_000))))
    open_position(ex, "dave", BUY, ONE_BTC, 600_000)
    # collateral 4000 - 30 = 3970 USDT; margin at 20x 3000 USDT; available 970 USDT
    assert ex.account_view("dave").available == 97_000_000_000
    # 10x: margin 6000 USDT, 3000 more than now
    rej = assert_rejected(ex, SetLeverage("dave", BTC, 10), RejectCode.INSUFFICIENT_MARGIN)
    assert rej.details == {"required": 300_000_000_000, "available": 97_000_000_000}
    # 15x: 6e12 / 15 = 4e11, 1e11 more > 9.7e10
    rej = assert_rejected(ex, SetLeverage("dave", BTC, 15), RejectCode.INSUFFICIENT_MARGIN)
    assert rej.details == {"required": 100_000_000_000, "available": 97_000_000_000}
    # 16x: 6e12 / 16 = 3.75e11, 7.5e10 more <= 9.7e10 -> accepted, 2.2e10 left
    ok(ex.submit(SetLeverage("dave", BTC, 16)))
    assert ex.account_view("dave").available == 22_000_000_000
    # raising leverage frees margin: 25x -> 2.4e11, available = 3.97e11 - 2.4e11
    ok(ex.submit(SetLeverage("dave", BTC, 25)))
    assert ex.account_view("dave").available == 157_000_000_000


def test_leverage_set_before_trading_applies_to_the_first_order(ex: Exchange) -> None:
    ok(ex.submit(SetLeverage("alice", BTC, 50)))
    rest(ex, "alice", BUY, ONE_BTC, 600_000)
    # 6e12 / 50 = 1.2e11
    assert ex.account_view("alice").order_margin == 120_000_000_000
    assert ex.accounts["alice"].positions[BTC].leverage == 50


# -- cash conservation ---------------------------------------------------------------------------
def test_cash_is_conserved_through_a_scripted_session(ex: Exchange) -> None:
    assert user_cash_total(ex) == 3 * START
    assert cash_total(ex) == 3 * START + SEEDS
    open_position(ex, "alice", BUY, 2 * ONE_BTC, 600_000)
    assert_cash_conserved(ex)
    rest(ex, "bob", BUY, 3 * ONE_BTC, 601_234)
    ok(place(ex, "alice", SELL, 3 * ONE_BTC, 601_000))  # flip to short 1
    assert_cash_conserved(ex)
    ok(ex.submit(SetMarkPrice(BTC, 620_000)))
    ok(ex.submit(Withdraw("carol", usdt(12_345))))
    ok(ex.submit(Deposit("dave", usdt(777))))
    assert_cash_conserved(ex)
    rest(ex, "carol", SELL, 1_777, 615_555)
    ok(place(ex, "alice", BUY, 1_777, 615_555))  # close 1000, open 777
    assert_cash_conserved(ex)
    # the identity, written out over every account (the insurance funds included)
    total = ex.fees_collected + sum(
        a.collateral - sum(p.cost for p in a.positions.values()) for a in ex.accounts.values()
    )
    assert total == SEEDS + 3 * START + usdt(777) - usdt(12_345)
    # nobody was liquidated and no funding settled: the funds still hold exactly their seeds,
    # so the users' side of the identity balances on its own
    assert user_cash_total(ex) == 3 * START + usdt(777) - usdt(12_345)


def test_cash_is_conserved_in_a_seeded_random_session() -> None:
    """400 deterministic pseudo-random commands over BTC, ETH and a rebate market."""
    ex = make_exchange(
        (*default_instruments(), fee_instrument(maker_fee="-0.0001")),
        accounts=("a", "b", "c", "d"),
        funding_usdt=200_000,
    )
    rng = random.Random(20240601)
    markets = {BTC: (600_000, 1_000), ETH: (300_000, 100), "FEE-PERP": (300_000, 100)}
    accounts = ["a", "b", "c", "d"]
    trades = 0
    for _ in range(400):
        who = rng.choice(accounts)
        market = rng.choice(list(markets))
        mid, unit = markets[market]
        mark = ex.markets[market].mark
        roll = rng.random()
        if roll < 0.55:
            side = rng.choice([BUY, SELL])
            qty = unit * rng.randint(1, 4) + rng.randint(0, unit)
            price = mark + rng.randint(-mark // 100, mark // 100)
            kind = rng.random()
            if kind < 0.15:
                cmd = PlaceOrder(who, market, side, qty, order_type=OrderType.MARKET)
            else:
                tif = rng.choice(list(TimeInForce))
                ro = rng.random() < 0.15
                cmd = PlaceOrder(who, market, side, qty, price, tif=tif, reduce_only=ro)
        elif roll < 0.70:
            orders = ex.open_orders(who, market)
            if not orders:
                continue
            order = rng.choice(orders)
            if rng.random() < 0.5:
                cmd = CancelOrder(who, market, order_id=order.id)
            else:
                cmd = AmendOrder(
                    who, market, order_id=order.id, price=order.price + rng.randint(-50, 50)
                )
        elif roll < 0.80:
            cmd = SetMarkPrice(market, mid + rng.randint(-mid // 50, mid // 50))
        elif roll < 0.85:
            cmd = SetLeverage(who, market, rng.choice([5, 10, 20, 25, 50]))
        elif roll < 0.92:
            cmd = Withdraw(who, usdt(rng.randint(1, 5_000)))
        elif roll < 0.96:
            cmd = Deposit(who, usdt(rng.randint(1, 5_000)))
        else:
            cmd = CancelAll(who, rng.choice([None, market]))
        events = ex.submit(cmd)
        trades += len(of_type(events, Trade))
        assert_cash_conserved(ex)
        for symbol in markets:
            net = sum(
                a.positions[symbol].size for a in ex.accounts.values() if symbol in a.positions
            )
            assert net == 0, symbol
    assert trades > 30  # the session really traded (46 with this seed)
    assert ex.markets["FEE-PERP"].trade_id > 0  # the rebate market traded too


def test_fixture_starts_balanced(ex: Exchange) -> None:
    assert ex.total_deposits == 3 * START + SEEDS and ex.fees_collected == 0
    assert cash_total(ex) == 3 * START + SEEDS
    assert user_cash_total(ex) == 3 * START
    assert ex.markets[BTC].mark == BTC_MARK
    # one insurance fund per market, holding its seed, flat, listed in insurance_funds
    for symbol in ex.markets:
        fund = ex.accounts[insurance_fund(symbol)]
        assert (fund.collateral, fund.positions) == (INSURANCE_SEED, {})
        assert ex.insurance_funds[fund.id] == symbol

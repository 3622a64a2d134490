"""Liquidation, hand-computed: every mode, the insurance fund, ADL, triggers and margin calls.

Units (BTC-PERP): price in ticks of 0.1 USDT, quantity in lots of 0.001 BTC, money in 1e-8 USDT;
notional = ticks * lots * 10_000 units, so 1 BTC at 60000 is 6e12 units (60,000 USDT).
ETH-PERP: ticks of 0.01, lots of 0.001 ETH, notional = ticks * lots * 1_000 units.
Maintenance margin (BTC/ETH brackets): notional <= 50,000 USDT: ceil(0.4%); <= 600,000 USDT:
ceil(0.5%) - 50 USDT. Taker fee 0.05% (ticks * lots * 5 on BTC), maker fee 0.02%.
Liquidation defaults: fee 0.30%, target and margin call 80%, backstop (deep) below 2/3 MM,
incremental steps of 20% for positions above 100,000 USDT with a 30 s cooldown.

Most scenarios drive the mark with ``SetMarkPrice`` on markets whose scheduled mark update is
pushed out of reach (``mark_interval_ms=NEVER``) after one initial ``Tick``, so that a ``Tick``
only runs due liquidation steps and fund unwinds and never overwrites the hand-set mark. The
last-price and unwind scenarios use the real pipeline (``UpdateIndexSource`` + ``Tick``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TypeVar

import pytest

from sandbox.engine import (
    CancelAll,
    Deposit,
    Event,
    Exchange,
    FundingConfig,
    Instrument,
    InsuranceFundUsed,
    LiquidationConfig,
    LiquidationFill,
    LiquidationFinished,
    LiquidationMode,
    LiquidationStarted,
    ManualClock,
    MarginCall,
    MarketMechanics,
    OrderAccepted,
    OrderCanceled,
    OrderType,
    PlaceOrder,
    PositionTransferred,
    PricesUpdated,
    RegisterBackstop,
    RejectCode,
    SetLeverage,
    SetMarkPrice,
    Tick,
    TimeInForce,
    Trade,
    UpdateIndexSource,
    default_instruments,
)
from sandbox.engine.liquidation import adl_score

from .conftest import (
    BTC,
    BUY,
    ETH,
    INSURANCE_SEED,
    ONE_BTC,
    SELL,
    START_MS,
    assert_cash_conserved,
    assert_rejected,
    insurance_fund,
    kinds,
    of_type,
    ok,
    open_position,
    place,
    rest,
    usdt,
)

E = TypeVar("E", bound=Event)
NEVER = 10**12  # mark_interval_ms: after the first Tick, no scheduled mark update in the test
INCREMENTAL = LiquidationMode.INCREMENTAL
MARKET = LiquidationMode.MARKET
AUCTION = LiquidationMode.AUCTION
BTC_FUND = insurance_fund(BTC)
ETH_FUND = insurance_fund(ETH)
SOURCES = ("spot-a", "spot-b", "spot-c")


def btc_perp(
    mode: LiquidationMode = INCREMENTAL,
    *,
    mark_interval_ms: int = NEVER,
    market_max_qty: str = "120",
    funding: FundingConfig | None = None,
    **liquidation: int,
) -> Instrument:
    """BTC-PERP with the default filters, brackets and fees, and the given mechanics."""
    return Instrument.create(
        BTC,
        tick_size="0.1",
        lot_size="0.001",
        min_qty="0.001",
        max_qty="1000",
        market_max_qty=market_max_qty,
        min_notional="100",
        initial_price="60000",
        mechanics=MarketMechanics(
            liquidation=LiquidationConfig(mode=mode, **liquidation),
            funding=funding or FundingConfig(),
            mark_interval_ms=mark_interval_ms,
        ),
    )


def eth_perp(mode: LiquidationMode = INCREMENTAL) -> Instrument:
    return Instrument.create(
        ETH,
        tick_size="0.01",
        lot_size="0.001",
        min_qty="0.001",
        max_qty="10000",
        market_max_qty="2000",
        min_notional="20",
        initial_price="3000",
        mechanics=MarketMechanics(liquidation=LiquidationConfig(mode=mode), mark_interval_ms=NEVER),
    )


def venue(*instruments: Instrument, **deposits: int) -> tuple[Exchange, ManualClock]:
    """An exchange at START_MS whose first scheduled mark update has run (no index sources:
    the index holds the initial price, the book is empty, no trade yet, so the mark stays at
    the initial price), with ``deposits`` in whole USDT."""
    clock = ManualClock(START_MS)
    ex = Exchange(instruments, clock=clock)
    prices = of_type(ok(ex.submit(Tick())), PricesUpdated)
    assert [p.mark for p in prices] == [i.initial_price for i in instruments]
    for account, amount in deposits.items():
        ok(ex.submit(Deposit(account, usdt(amount))))
    return ex, clock


def mark(ex: Exchange, price: int, market: str = BTC) -> list[Event]:
    return ok(ex.submit(SetMarkPrice(market, price)))


def fund(ex: Exchange, symbol: str = BTC) -> int:
    """The insurance fund's collateral."""
    return ex.accounts[insurance_fund(symbol)].collateral


def size(ex: Exchange, account: str, market: str = BTC) -> int:
    pos = ex.accounts[account].positions.get(market)
    return 0 if pos is None else pos.size


def one(events: list[Event], cls: type[E]) -> E:
    """The single event of type ``cls``."""
    (event,) = of_type(events, cls)
    return event


def fills(events: list[Event]) -> list[tuple[int, ...]]:
    """LiquidationFill rows: (qty, book, auction, takeover, adl, bankruptcy price, fee)."""
    return [
        (f.qty, f.book_qty, f.auction_qty, f.takeover_qty, f.adl_qty, f.bankruptcy_price, f.fee)
        for f in of_type(events, LiquidationFill)
    ]


def transfers(events: list[Event]) -> list[tuple[str, str, int, int, int, str]]:
    return [
        (t.from_account, t.to_account, t.side, t.qty, t.price, t.reason)
        for t in of_type(events, PositionTransferred)
    ]


# =============================================================================================
# (a) INCREMENTAL: 20% steps, the cooldown, and the step that restores exactly enough
# =============================================================================================
def incremental_start() -> tuple[Exchange, ManualClock, list[Event]]:
    """dave (40,000 USDT, 20x) buys 10 BTC = 10,000 lots from carol at 60000.0.

    taker fee 600000 * 10000 * 5 = 30_000_000_000 (300 USDT): collateral 3_970_000_000_000.
    At mark 56800 he rests an ask (1 BTC at 56900, not reduce-only) and bob bids 1 BTC at
    56290.0 and 1 BTC at 56250.0. Then the mark drops to 56300.0 (563_000 ticks):

      value   563000 * 10000 * 10000 = 56_300_000_000_000; cost 60_000_000_000_000
      equity  3_970_000_000_000 - 3_700_000_000_000       = 270_000_000_000  (2,700 USDT)
      MM      ceil(56.3e12 * 0.5%) - 50 USDT = 281.5e9 - 5e9 = 276_500_000_000 (2,765 USDT)
    equity <= MM: liquidation. Not deep: 2.7e11 >= 2/3 * 2.765e11 = 1.843e11.
    """
    ex, clock = venue(btc_perp(INCREMENTAL), bob=1_000_000, carol=1_000_000, dave=40_000)
    open_position(ex, "dave", BUY, 10 * ONE_BTC, 600_000)
    assert ex.accounts["dave"].collateral == 3_970_000_000_000
    mark(ex, 568_000)
    rest(ex, "dave", SELL, ONE_BTC, 569_000)
    rest(ex, "bob", BUY, ONE_BTC, 562_900)
    rest(ex, "bob", BUY, ONE_BTC, 562_500)
    # liquidation price: 3.97e12 + 1e8*M - 6e13 <= 5e5*M - 5e9  <=>  M <= 563065.3 ticks
    assert ex.liquidation_price("dave", BTC) == 563_065
    events = mark(ex, 563_000)
    return ex, clock, events


def test_incremental_steps_20pct_then_exactly_enough_respecting_the_cooldown() -> None:
    ex, clock, events = incremental_start()
    assert kinds(events) == [
        "MarkPriceSet",
        "OrderCanceled",  # dave's resting ask, reason "liquidation"
        "LiquidationStarted",
        "OrderAccepted",  # the LIQUIDATION order: IOC, reduce-only, limited to P_bk
        "Trade",
        "Trade",
        "LiquidationFill",
    ]
    assert one(events, OrderCanceled).reason == "liquidation"
    started = one(events, LiquidationStarted)
    assert (started.equity, started.maintenance_margin, started.orders_cancelled) == (
        270_000_000_000,
        276_500_000_000,
        1,
    )
    # Step 1. P_bk = 563000 - 270e9 // (10000 * 10000) = 563000 - 2700 = 560300.
    # qty = min(ceil(20% * 10000) = 2000, fewest lots restoring MM <= 80% equity):
    #   closing L lots at the mark: MM(L) = 28_150_000 * (10000 - L) - 5e9,
    #   fee(L) = 0.3% * 5_630_000_000 * L = 16_890_000 * L;
    #   2.765e11 - 28_150_000 L <= 0.8 (2.7e11 - 16_890_000 L)  <=>  L >= 4133.06 -> 4134,
    # so the 20% cap binds: 2000 lots.
    order = one(events, OrderAccepted)
    assert (order.order_type, order.tif, order.reduce_only) == ("LIQUIDATION", "IOC", True)
    assert (order.side, order.price, order.qty) == (SELL, 560_300, 2_000)
    # fills 1000 @ 562900 and 1000 @ 562500, no taker fee:
    #   realized 5.629e12 - 6e12 = -371e9 and 5.625e12 - 6e12 = -375e9 (cost 6e12 per 1000 lots)
    trades = of_type(events, Trade)
    assert [(t.price, t.qty, t.taker_fee, t.taker_realized) for t in trades] == [
        (562_900, 1_000, 0, -371_000_000_000),
        (562_500, 1_000, 0, -375_000_000_000),
    ]
    # fee = ceil(0.3% * (5.629e12 + 5.625e12)) = 33_762_000_000 (337.62 USDT), below the
    # 2,640 USDT of equity left, so charged in full to the insurance fund
    assert fills(events) == [(2_000, 2_000, 0, 0, 0, 560_300, 33_762_000_000)]
    fill = one(events, LiquidationFill)
    assert (fill.mode, fill.side, fill.mark, fill.equity, fill.maintenance_margin) == (
        "INCREMENTAL",
        SELL,
        563_000,
        270_000_000_000,
        276_500_000_000,
    )
    # collateral 3.97e12 - 746e9 - 33.762e9 = 3_190_238_000_000; 8000 lots left (cost 4.8e13)
    # equity 3_190_238_000_000 + (4.504e13 - 4.8e13) = 230_238_000_000
    # MM 4.504e13 * 0.5% - 5e9 = 220_200_000_000: 95.6% of equity, still above 80%
    view = ex.account_view("dave")
    assert (view.collateral, view.equity, view.maintenance_margin) == (
        3_190_238_000_000,
        230_238_000_000,
        220_200_000_000,
    )
    assert view.in_liquidation and size(ex, "dave") == 8_000
    # margin ratio = ceil(220_200_000_000 * 1e8 / 230_238_000_000) = 95_640_164 (95.64%)
    assert view.margin_ratio == 95_640_164
    assert fund(ex) == INSURANCE_SEED + 33_762_000_000

    # The cooldown: nothing happens 29.999 s later; bob adds 5 BTC of bids at the mark.
    clock.advance(29_999)
    assert ok(ex.submit(Tick())) == []
    rest(ex, "bob", BUY, 5 * ONE_BTC, 563_000)
    assert size(ex, "dave") == 8_000

    # Step 2 at +30 s. P_bk = 563000 - 230_238_000_000 // 80_000_000 = 563000 - 2877 = 560123.
    # 20%: ceil(1600) = 1600; restoring needs 2.202e11 - 28.15e6 L <= 0.8 (2.30238e11 -
    # 16.89e6 L) <=> L >= 2460.01 -> 2461, so 1600. Fill 1600 @ 563000: realized
    # 9.008e12 - 9.6e12 = -592e9; fee ceil(0.3% * 9.008e12) = 27_024_000_000.
    clock.advance(1)
    events = ok(ex.submit(Tick()))
    assert kinds(events) == ["OrderAccepted", "Trade", "LiquidationFill"]
    assert fills(events) == [(1_600, 1_600, 0, 0, 0, 560_123, 27_024_000_000)]
    # collateral 3_190_238_000_000 - 592e9 - 27.024e9 = 2_571_214_000_000; 6400 lots
    # equity 2_571_214_000_000 + (3.6032e13 - 3.84e13) = 203_214_000_000
    # MM 3.6032e13 * 0.5% - 5e9 = 175_160_000_000 (86.2% of equity)
    view = ex.account_view("dave")
    assert (view.collateral, view.equity, view.maintenance_margin) == (
        2_571_214_000_000,
        203_214_000_000,
        175_160_000_000,
    )
    assert view.in_liquidation

    # Step 3 at +60 s. P_bk = 563000 - 203_214_000_000 // 64_000_000 = 563000 - 3175 = 559825.
    # 20% = 1280; restoring: 1.7516e11 - 28.15e6 L <= 0.8 (2.03214e11 - 16.89e6 L)
    #   <=> 12_588_800_000 <= 14_638_000 L <=> L >= 860.007 -> 861 (860 lots leave
    #   MM 150_951_000_000 > 0.8 * (203_214_000_000 - 14_525_400_000) = 150_950_880_000).
    #   So 861 < 1280: exactly enough.
    # Fill 861 @ 563000: realized 4.84743e12 - 5.166e12 = -318_570_000_000;
    # fee 16_890_000 * 861 = 14_542_290_000.
    clock.advance(30_000)
    events = ok(ex.submit(Tick()))
    assert kinds(events) == ["OrderAccepted", "Trade", "LiquidationFill", "LiquidationFinished"]
    assert fills(events) == [(861, 861, 0, 0, 0, 559_825, 14_542_290_000)]
    # equity 203_214_000_000 - 14_542_290_000 = 188_671_710_000
    # MM 28_150_000 * 5539 - 5e9 = 150_922_850_000 <= 0.8 * equity = 150_937_368_000: done
    finished = one(events, LiquidationFinished)
    assert (finished.equity, finished.maintenance_margin) == (188_671_710_000, 150_922_850_000)
    view = ex.account_view("dave")
    assert (view.collateral, view.equity, size(ex, "dave")) == (
        2_238_101_710_000,
        188_671_710_000,
        5_539,
    )
    assert not view.in_liquidation
    # the fund got the three fees: 33.762e9 + 27.024e9 + 14.54229e9
    assert fund(ex) == INSURANCE_SEED + 75_328_290_000
    # and nothing more happens later
    clock.advance(60_000)
    assert of_type(ok(ex.submit(Tick())), LiquidationFill) == []
    assert_cash_conserved(ex)


def test_incremental_account_turning_deep_in_the_cooldown_is_backstopped_at_once() -> None:
    ex, clock, _ = incremental_start()
    clock.advance(10_000)  # inside the 30 s cooldown
    # mark 56190.0: value 561900 * 8000 * 10000 = 4.4952e13; cost 4.8e13
    #   equity 3_190_238_000_000 - 3.048e12 = 142_238_000_000
    #   MM 4.4952e13 * 0.5% - 5e9 = 219_760_000_000; 2/3 of it = 1.46507e11 > equity: deep
    # Deep: the whole 8000 lots skip the book and go to the fund at
    #   P_bk = 561900 - 142_238_000_000 // 80_000_000 = 561900 - 1777 = 560123,
    # fund PnL at mark (561900 - 560123) * 8000 * 10000 = 142_160_000_000 >= 0: takeover.
    events = mark(ex, 561_900)
    assert kinds(events) == [
        "MarkPriceSet",
        "PositionTransferred",
        "LiquidationFill",
        "LiquidationFinished",
    ]
    assert transfers(events) == [("dave", BTC_FUND, 1, 8_000, 560_123, "takeover")]
    fill = one(events, LiquidationFill)
    assert fill.mode == "BACKSTOP"
    assert fills(events) == [(8_000, 0, 0, 8_000, 0, 560_123, 0)]
    # dave: realized 560123 * 8000 * 10000 - 4.8e13 = -3_190_160_000_000; what is left:
    # 3_190_238_000_000 - 3_190_160_000_000 = 78_000_000 (0.78 USDT, the rounding of P_bk)
    assert one(events, LiquidationFinished).equity == 78_000_000
    assert (ex.accounts["dave"].collateral, size(ex, "dave")) == (78_000_000, 0)
    assert size(ex, BTC_FUND) == 8_000
    assert ex.accounts[BTC_FUND].positions[BTC].cost == 560_123 * 8_000 * 10_000
    assert_cash_conserved(ex)


# =============================================================================================
# (h) ACCOUNT_IN_LIQUIDATION while the account waits for its next step
# =============================================================================================
def test_account_in_liquidation_may_only_reduce() -> None:
    ex, _, _ = incremental_start()
    assert ex.account_view("dave").in_liquidation
    for command in (
        PlaceOrder("dave", BTC, BUY, ONE_BTC, 563_000),
        PlaceOrder("dave", BTC, SELL, ONE_BTC, 563_000),  # reduces, but is not flagged so
        PlaceOrder("dave", BTC, SELL, ONE_BTC, order_type=OrderType.MARKET),
    ):
        rejected = assert_rejected(ex, command, RejectCode.ACCOUNT_IN_LIQUIDATION)
        assert "reduce-only" in rejected.message
    # a reduce-only order is accepted (it rests: no bid at 56400), and can be cancelled
    events = ok(place(ex, "dave", SELL, ONE_BTC, 564_000, reduce_only=True))
    assert one(events, OrderAccepted).reduce_only
    assert kinds(ok(ex.submit(CancelAll("dave")))) == ["OrderCanceled"]
    # still in liquidation: the next step comes with the cooldown, not with these commands
    assert ex.account_view("dave").in_liquidation and size(ex, "dave") == 8_000


# =============================================================================================
# (a) MARKET: the whole position into the book at once, and on to the next market at once
# =============================================================================================
def test_market_mode_closes_the_whole_position_in_the_book() -> None:
    ex, _ = venue(btc_perp(MARKET), bob=1_000_000, carol=1_000_000, dave=2_000)
    # dave buys 0.5 BTC at 60000: taker fee 600000 * 500 * 5 = 1.5e9 -> collateral 1.985e11
    open_position(ex, "dave", BUY, 500, 600_000)
    mark(ex, 570_000)
    rest(ex, "bob", BUY, 200, 562_400)
    rest(ex, "bob", BUY, 300, 562_000)
    rest(ex, "bob", BUY, 500, 560_000)  # below the bankruptcy price: never reached
    # equity(M) = 1.985e11 + 5e6 M - 3e12; MM = 0.4% * 5e6 M = 2e4 M (tier 1)
    # liquidatable <=> 4.98e6 M <= 2.8015e12 <=> M <= 562550.2
    assert ex.liquidation_price("dave", BTC) == 562_550
    # mark 56250.0: equity 2.8125e12 - 2.8015e12 = 1.1e10 (110 USDT) <= MM 1.125e10 (112.5)
    events = mark(ex, 562_500)
    assert kinds(events) == [
        "MarkPriceSet",
        "LiquidationStarted",
        "OrderAccepted",
        "Trade",
        "Trade",
        "LiquidationFill",
        "LiquidationFinished",
    ]
    # P_bk = 562500 - 1.1e10 // (500 * 10000) = 562500 - 2200 = 560300; MARKET: all 500 lots
    # fills 200 @ 562400 (realized 1.1248e12 - 1.2e12 = -75.2e9) and 300 @ 562000
    # (1.686e12 - 1.8e12 = -114e9); collateral 1.985e11 - 1.892e11 = 9.3e9
    # fee = min(ceil(0.3% * 2.8108e12) = 8_432_400_000, equity 9.3e9) = 8_432_400_000
    assert [(t.price, t.qty) for t in of_type(events, Trade)] == [(562_400, 200), (562_000, 300)]
    assert fills(events) == [(500, 500, 0, 0, 0, 560_300, 8_432_400_000)]
    assert one(events, LiquidationFill).mode == "MARKET"
    # 9.3e9 - 8_432_400_000 = 867_600_000 (8.676 USDT) left, flat
    assert one(events, LiquidationFinished).equity == 867_600_000
    assert (ex.accounts["dave"].collateral, size(ex, "dave")) == (867_600_000, 0)
    assert fund(ex) == INSURANCE_SEED + 8_432_400_000
    assert ex.book_snapshot(BTC).bids == [(560_000, 500)]
    assert_cash_conserved(ex)


def test_market_mode_continues_with_the_next_position_in_the_same_command() -> None:
    ex, _ = venue(btc_perp(MARKET), eth_perp(MARKET), bob=1_000_000, carol=1_000_000)
    ok(ex.submit(Deposit("dave", 279_750_000_000)))  # 2,797.5 USDT
    # BTC: long 500 lots @ 60000, fee 1.5e9. ETH: long 5000 lots @ 3000.00 = 1.5e12 notional,
    # fee 300000 * 5000 * 1000 * 0.05% = 7.5e8. Collateral 2,797.5 - 15 - 7.5 = 2,775 USDT.
    open_position(ex, "dave", BUY, 500, 600_000)
    open_position(ex, "dave", BUY, 5_000, 300_000, market=ETH)
    assert ex.accounts["dave"].collateral == 277_500_000_000
    mark(ex, 570_000)
    mark(ex, 285_000, ETH)
    rest(ex, "bob", BUY, 500, 562_500)
    rest(ex, "bob", BUY, 5_000, 285_000, ETH)
    # BTC mark 56250.0: uPnL BTC 2.8125e12 - 3e12 = -1.875e11, ETH 1.425e12 - 1.5e12 = -7.5e10
    # equity 2.775e11 - 2.625e11 = 1.5e10; MM BTC 1.125e10 + ETH 5.7e9 = 1.695e10: liquidation
    events = mark(ex, 562_500)
    assert kinds(events) == [
        "MarkPriceSet",
        "LiquidationStarted",
        "OrderAccepted",
        "Trade",
        "LiquidationFill",  # BTC (the larger MM) first
        "OrderAccepted",
        "Trade",
        "LiquidationFill",  # then ETH, in the same command
        "LiquidationFinished",
    ]
    btc_fill, eth_fill = of_type(events, LiquidationFill)
    # BTC: P_bk = 562500 - 1.5e10 // 5e6 = 559500; 500 @ 562500 (at the mark, realized
    # -1.875e11); fee 0.3% * 2.8125e12 = 8_437_500_000. Equity 1.5e10 - 8.4375e9 = 6.5625e9;
    # MM 5.7e9 > 80% * 6.5625e9 = 5.25e9, not deep (>= 3.8e9): go on with ETH at once.
    assert (btc_fill.stream, btc_fill.qty, btc_fill.bankruptcy_price, btc_fill.fee) == (
        BTC,
        500,
        559_500,
        8_437_500_000,
    )
    # ETH: P_bk = 285000 - 6_562_500_000 // (5000 * 1000) = 285000 - 1312 = 283688;
    # 5000 @ 285000, fee 0.3% * 1.425e12 = 4_275_000_000 (< 6.5625e9 of equity)
    assert (eth_fill.stream, eth_fill.mode, eth_fill.qty, eth_fill.book_qty) == (
        ETH,
        "MARKET",
        5_000,
        5_000,
    )
    assert (eth_fill.bankruptcy_price, eth_fill.fee, eth_fill.equity) == (
        283_688,
        4_275_000_000,
        6_562_500_000,
    )
    # 6_562_500_000 - 4_275_000_000 = 2_287_500_000 (22.875 USDT) left; each fund got its fee
    assert one(events, LiquidationFinished).equity == 2_287_500_000
    assert fund(ex, BTC) == INSURANCE_SEED + 8_437_500_000
    assert fund(ex, ETH) == INSURANCE_SEED + 4_275_000_000
    assert_cash_conserved(ex)


# =============================================================================================
# (a) AUCTION: backstops at a discount, then the book, then the fund for the rest
# =============================================================================================
def test_auction_mode_backstops_then_book_then_takeover() -> None:
    ex, _ = venue(
        btc_perp(AUCTION),
        bob=1_000_000,
        carol=1_000_000,
        dave=2_000,
        erin=10_000,
        frank=200,
        gina=10_000,
    )
    # registration order: gina (1% discount, up to 1000), erin (0.1%, 200), frank (0.2%, 100)
    ok(ex.submit(RegisterBackstop("gina", BTC, 1_000, 1_000_000)))
    ok(ex.submit(RegisterBackstop("erin", BTC, 200, 100_000)))
    ok(ex.submit(RegisterBackstop("frank", BTC, 100, 200_000)))
    open_position(ex, "dave", BUY, 500, 600_000)  # collateral 1.985e11, as in MARKET mode
    mark(ex, 570_000)
    rest(ex, "bob", BUY, 200, 562_400)
    rest(ex, "bob", BUY, 500, 560_000)  # below P_bk
    # mark 56250.0: equity 1.1e10, MM 1.125e10, P_bk 560300 (see the MARKET test)
    events = mark(ex, 562_500)
    # Auction prices p_k = 562500 + (560300 - 562500) * k // 5 = 562500 - 440 k, k = 0..5:
    #   562500, 562060, 561620, 561180, 560740, 560300.
    # gina needs p <= 562500 * 0.99 = 556875: never. erin needs p <= 561937.5: from k = 2.
    # frank needs p <= 561375: from k = 3. Margin per lot: ceil(562500 * 10000 / 20) = 2.8125e8.
    #   k=2: erin takes min(500 left, 200 max, 1e12 // 2.8125e8 = 3555) = 200 @ 561620
    #   k=3: frank can afford 2e10 // 2.8125e8 = 71 lots: 71 @ 561180
    #   k=4: frank's 71 lots show (562500 - 561180) * 71 * 10000 = 9.372e8 of profit; available
    #        2e10 + 9.372e8 - ceil(562500 * 71 * 10000 / 20) = 968_450_000 -> 3 more @ 560740
    #   k=5: available 2.099e10 - 2.08125e10 = 1.775e8 < 2.8125e8: none
    assert transfers(events) == [
        ("dave", "erin", 1, 200, 561_620, "auction"),
        ("dave", "frank", 1, 71, 561_180, "auction"),
        ("dave", "frank", 1, 3, 560_740, "auction"),
        ("dave", BTC_FUND, 1, 26, 544_517, "takeover"),
    ]
    # 226 left go to the book limited to 560300: 200 @ 562400, the 560000 bid is out of reach
    order = one(events, OrderAccepted)
    assert (order.price, order.qty) == (560_300, 226)
    assert [(t.price, t.qty) for t in of_type(events, Trade)] == [(562_400, 200)]
    assert one(events, OrderCanceled).remaining == 26
    # dave's realized: 200 @ 561620: 1.12324e12 - 1.2e12 = -7.676e10 (cost 6e9 per lot)
    #   71 @ 561180: 3.984378e11 - 4.26e11 = -2.75622e10; 3 @ 560740: 1.68222e10 - 1.8e10
    #   = -1.1778e9; 200 @ 562400: 1.1248e12 - 1.2e12 = -7.52e10. Collateral 1.985e11 - 1.807e11
    #   = 1.78e10; 26 lots left (cost 1.56e11, value 1.4625e11): equity 8.05e9.
    # fee on the book part only: ceil(0.3% * 1.1248e12) = 3_374_400_000 -> equity 4_675_600_000
    # takeover of 26 at P_bk = 562500 - 4_675_600_000 // 260_000 = 562500 - 17983 = 544517;
    # fund PnL at mark 17983 * 260_000 = 4_675_580_000 >= 0.
    assert fills(events) == [(500, 200, 274, 26, 0, 560_300, 3_374_400_000)]
    assert one(events, LiquidationFill).mode == "AUCTION"
    # dave: 1.78e10 - 3.3744e9 + (544517 * 260_000 - 1.56e11) = 20_000 units left
    assert one(events, LiquidationFinished).equity == 20_000
    assert (ex.accounts["dave"].collateral, size(ex, "dave")) == (20_000, 0)
    assert (size(ex, "erin"), size(ex, "frank"), size(ex, "gina")) == (200, 74, 0)
    # the backstops bought below the mark: erin's uPnL (562500 - 561620) * 200 * 10000
    assert ex.account_view("erin").unrealized_pnl == 1_760_000_000
    assert ex.account_view("frank").unrealized_pnl == 937_200_000 + 52_800_000
    assert fund(ex) == INSURANCE_SEED + 3_374_400_000
    assert size(ex, BTC_FUND) == 26
    assert not of_type(events, InsuranceFundUsed)
    assert_cash_conserved(ex)


def test_auction_for_a_short_sells_to_backstops_above_the_mark() -> None:
    ex, _ = venue(btc_perp(AUCTION), carol=1_000_000, dave=2_000, erin=10_000)
    ok(ex.submit(RegisterBackstop("erin", BTC, 1_000, 100_000)))
    # dave sells 0.5 BTC at 60000: collateral 1.985e11; equity(M) = 3.1985e12 - 5e6 M,
    # MM = 2e4 M: liquidatable <=> 3.1985e12 <= 5.02e6 M <=> M >= 637151.4 -> 637152
    open_position(ex, "dave", SELL, 500, 600_000)
    assert ex.liquidation_price("dave", BTC) == 637_152
    # mark 63720.0: equity 3.1985e12 - 3.186e12 = 1.25e10; MM 1.2744e10: liquidation
    # P_bk = 637200 + 1.25e10 // 5e6 = 639700; p_k = 637200 + 2500 * k // 5 = 637200 + 500 k
    # erin sells to dave at p >= 637200 * 1.001 = 637837.2: k = 2, 638200, all 500 lots
    events = mark(ex, 637_200)
    assert transfers(events) == [("dave", "erin", -1, 500, 638_200, "auction")]
    assert fills(events) == [(500, 0, 500, 0, 0, 639_700, 0)]  # no book part: no fee
    # dave: 3e12 - 638200 * 500 * 10000 = -1.91e11; 1.985e11 - 1.91e11 = 7.5e9 left
    assert one(events, LiquidationFinished).equity == 7_500_000_000
    assert size(ex, "erin") == -500
    assert fund(ex) == INSURANCE_SEED
    assert_cash_conserved(ex)


# =============================================================================================
# (b) takeover when the book is too thin, then the fund unwinds on Tick (real mark pipeline)
# =============================================================================================
def index_tick(ex: Exchange, clock: ManualClock, price: int, at_ms: int) -> list[Event]:
    """Move the clock to START_MS + at_ms, quote ``price`` from all three sources, Tick."""
    clock.set(START_MS + at_ms)
    for source in SOURCES:
        ok(ex.submit(UpdateIndexSource(BTC, source, price)))
    return ok(ex.submit(Tick()))


def test_takeover_when_the_book_is_thin_and_the_fund_unwinds_on_tick() -> None:
    # Real Tick pipeline: mark_interval 1 s; interest 0 and no premium samples make the
    # predicted rate 0, so P1 = index; with no two-sided book there is no basis sample, so
    # P2 = index; mark = median(index, index, last) = index whatever the last trade.
    # market_max_qty 0.1 BTC: the fund unwinds at most 100 lots per mark interval.
    inst = btc_perp(
        MARKET, mark_interval_ms=1_000, market_max_qty="0.1", funding=FundingConfig(interest_rate=0)
    )
    ex, clock = venue(inst, bob=1_000_000, carol=1_000_000, dave=2_000)
    open_position(ex, "dave", BUY, 500, 600_000)  # collateral 1.985e11, last = 600000
    (prices,) = of_type(index_tick(ex, clock, 570_000, 1_000), PricesUpdated)
    assert (prices.index, prices.mark, prices.last, prices.funding_rate) == (
        570_000,
        570_000,
        600_000,
        0,
    )
    rest(ex, "bob", BUY, 200, 562_400)  # the only bid above P_bk
    events = index_tick(ex, clock, 562_500, 2_000)
    assert one(events, PricesUpdated).mark == 562_500
    # equity 1.1e10 <= MM 1.125e10, P_bk 560300: 200 lots fill @ 562400 (realized -7.52e10),
    # collateral 1.233e11; 300 lots left (cost 1.8e12, value 1.6875e12): equity 1.08e10.
    # fee ceil(0.3% * 1.1248e12) = 3_374_400_000 -> equity 7_425_600_000.
    # takeover of 300 at 562500 - 7_425_600_000 // 3_000_000 = 562500 - 2475 = 560025;
    # fund PnL at mark 2475 * 3e6 = 7.425e9 >= 0: no InsuranceFundUsed.
    assert fills(events) == [(500, 200, 0, 300, 0, 560_300, 3_374_400_000)]
    assert transfers(events) == [("dave", BTC_FUND, 1, 300, 560_025, "takeover")]
    assert not of_type(events, InsuranceFundUsed)
    # dave: 1.233e11 - 3.3744e9 + (1.680075e12 - 1.8e12) = 600_000 units left
    assert one(events, LiquidationFinished).equity == 600_000
    # the same Tick then lets the fund unwind: a reduce-only market sell of 100 lots, but no
    # bid is left, so it expires (and uses up this interval's unwind)
    unwind = of_type(events, OrderAccepted)[-1]
    assert (unwind.account, unwind.order_type, unwind.reduce_only, unwind.qty) == (
        BTC_FUND,
        "MARKET",
        True,
        100,
    )
    assert of_type(events, OrderCanceled)[-1].reason == "expired"
    assert size(ex, BTC_FUND) == 300
    assert fund(ex) == INSURANCE_SEED + 3_374_400_000

    rest(ex, "bob", BUY, 300, 562_000)
    # each unwind: 100 @ 562000, realized 5.62e11 - 5.60025e11 = 1.975e9, taker fee
    # 562000 * 100 * 5 = 2.81e8; at most once per mark interval (1 s)
    for at_ms, fund_size in ((3_000, 200), (3_500, 200), (4_000, 100), (5_000, 0)):
        events = index_tick(ex, clock, 562_500, at_ms)
        sold = [t for t in of_type(events, Trade) if t.taker_account == BTC_FUND]
        assert [(t.price, t.qty, t.taker_fee, t.taker_realized) for t in sold] == (
            [(562_000, 100, 281_000_000, 1_975_000_000)] if at_ms != 3_500 else []
        )
        assert size(ex, BTC_FUND) == fund_size
        # the mark is recomputed on the same 1 s schedule (not at +3.5 s)
        marks = [p.mark for p in of_type(events, PricesUpdated)]
        assert marks == ([562_500] if at_ms % 1_000 == 0 else [])
    # fund: seed + fee 3.3744e9 + 3 * (1.975e9 - 2.81e8) = seed + 8_456_400_000
    assert fund(ex) == INSURANCE_SEED + 8_456_400_000
    assert ex.accounts[BTC_FUND].positions[BTC].cost == 0
    # flat: nothing more to unwind
    assert of_type(index_tick(ex, clock, 562_500, 6_000), OrderAccepted) == []
    assert_cash_conserved(ex)


# =============================================================================================
# (c) ADL when the fund cannot take the position; the fund's own ADL
# =============================================================================================
def adl_venue(seed: int) -> Exchange:
    """dave (2,000 USDT) buys 0.5 BTC at 60000: 300 lots from frank (10,000 USDT), then 200
    from erin (100,000 USDT); carol buys erin's other 200. Positions: dave +500, carol +200,
    frank -300, erin -400. Maker fees 600000 * lots * 2: frank 3.6e8, erin 4.8e8."""
    ex, _ = venue(
        btc_perp(MARKET, insurance_seed=seed),
        carol=1_000_000,
        dave=2_000,
        erin=100_000,
        frank=10_000,
    )
    rest(ex, "frank", SELL, 300, 600_000)
    rest(ex, "erin", SELL, 400, 600_000)
    ok(place(ex, "dave", BUY, 500, 600_000, tif=TimeInForce.IOC))
    ok(place(ex, "carol", BUY, 200, 600_000, tif=TimeInForce.IOC))
    assert [size(ex, a) for a in ("dave", "carol", "frank", "erin")] == [500, 200, -300, -400]
    assert ex.accounts["frank"].collateral == 999_640_000_000
    assert ex.accounts["erin"].collateral == 9_999_520_000_000
    return ex


def test_adl_ranks_opposing_positions_by_score_at_the_bankruptcy_price() -> None:
    ex = adl_venue(seed=usdt(100))
    # Gap to 55000.0: dave's equity 1.985e11 + (2.75e12 - 3e12) = -5.15e10: deep.
    # P_bk = 550000 - (-5.15e10 // 5e6) = 550000 + 10300 = 560300.
    # fund: 1e10 + (550000 - 560300) * 500 * 10000 = 1e10 - 5.15e10 < 0 -> ADL.
    # Scores at mark 550000 (pnl% * notional / equity, both in profit):
    #   frank: uPnL 1.8e12 - 1.65e12 = 1.5e11, pnl% 1/12, equity 9.9964e11 + 1.5e11
    #          = 1.14964e12 -> 1/12 * 1.65e12 / 1.14964e12 = 0.1196
    #   erin:  uPnL 2e11, pnl% 1/12, equity 9.99952e12 + 2e11 = 1.019952e13
    #          -> 1/12 * 2.2e12 / 1.019952e13 = 0.0180
    # frank (higher leverage) goes first although "erin" sorts first and holds more.
    assert adl_score(150_000_000_000, -1_800_000_000_000, 1_650_000_000_000, 1_149_640_000_000) == (
        Fraction(1, 12) * Fraction(1_650_000_000_000, 1_149_640_000_000)
    )
    events = mark(ex, 550_000)
    assert kinds(events) == [
        "MarkPriceSet",
        "LiquidationStarted",
        "PositionTransferred",
        "PositionTransferred",
        "LiquidationFill",
        "LiquidationFinished",
    ]
    assert transfers(events) == [
        ("dave", "frank", 1, 300, 560_300, "adl"),
        ("dave", "erin", 1, 200, 560_300, "adl"),
    ]
    fill = one(events, LiquidationFill)
    assert fill.mode == "BACKSTOP"
    assert (fill.equity, fill.maintenance_margin) == (-51_500_000_000, 11_000_000_000)
    assert fills(events) == [(500, 0, 0, 0, 500, 560_300, 0)]
    # dave: 560300 * 500 * 10000 - 3e12 = -1.985e11: exactly his collateral, 0 left
    assert one(events, LiquidationFinished).equity == 0
    assert ex.accounts["dave"].collateral == 0
    # frank closes 300 at 560300: realized 1.8e12 - 1.6809e12 = 1.191e11
    # erin closes 200 of 400: released 1.2e12, realized 1.2e12 - 1.1206e12 = 7.94e10
    assert (size(ex, "frank"), ex.accounts["frank"].collateral) == (0, 1_118_740_000_000)
    assert (size(ex, "erin"), ex.accounts["erin"].collateral) == (-200, 10_078_920_000_000)
    assert (fund(ex), size(ex, BTC_FUND)) == (usdt(100), 0)  # untouched
    assert not of_type(events, InsuranceFundUsed)
    assert_cash_conserved(ex)


@pytest.mark.parametrize(
    ("seed", "takeover"),
    [(51_500_000_000, True), (51_499_999_999, False)],
    ids=["fund-exactly-enough", "one-unit-short"],
)
def test_takeover_versus_adl_at_the_funds_boundary(seed: int, takeover: bool) -> None:
    """The fund takes over iff seed + (mark - P_bk) * 500 * 10000 = seed - 5.15e10 >= 0."""
    ex = adl_venue(seed)
    events = mark(ex, 550_000)
    if takeover:
        assert transfers(events) == [("dave", BTC_FUND, 1, 500, 560_300, "takeover")]
        used = one(events, InsuranceFundUsed)
        # the fund paid 5.15e10 above mark value; its collateral is untouched (uPnL)
        assert (used.amount, used.balance, used.reason) == (51_500_000_000, seed, "takeover")
        assert ex.account_view(BTC_FUND).equity == 0
        assert size(ex, "frank") == -300
    else:
        assert [t[5] for t in transfers(events)] == ["adl", "adl"]
        assert not of_type(events, InsuranceFundUsed)
        assert (size(ex, BTC_FUND), size(ex, "frank")) == (0, 0)
    assert ex.accounts["dave"].collateral == 0
    assert_cash_conserved(ex)


def test_insurance_fund_below_zero_is_closed_by_adl_at_its_bankruptcy_price() -> None:
    ex = adl_venue(seed=usdt(600))
    mark(ex, 550_000)  # takeover: fund long 500 @ 560300, equity 6e10 - 5.15e10 = 8.5e9
    assert size(ex, BTC_FUND) == 500
    # 54900.0: fund equity 6e10 + (549000 - 560300) * 5e6 = 3.5e9 >= 0: it keeps the position
    assert transfers(mark(ex, 549_000)) == []
    # 54800.0: 6e10 - 6.15e10 = -1.5e9 < 0: ADL at 548000 - (-1.5e9 // 5e6) = 548300
    # (frank again first: 1/12... his score still beats erin's)
    events = mark(ex, 548_000)
    assert transfers(events) == [
        (BTC_FUND, "frank", 1, 300, 548_300, "adl"),
        (BTC_FUND, "erin", 1, 200, 548_300, "adl"),
    ]
    assert not of_type(events, LiquidationFill)  # a fund is not "liquidated"
    # fund: 548300 * 500 * 10000 - 560300 * 500 * 10000 = -6e10: collateral 6e10 -> 0
    assert (fund(ex), size(ex, BTC_FUND)) == (0, 0)
    assert_cash_conserved(ex)


# =============================================================================================
# (d) the last price never liquidates; the mark (median of P1, P2, last) does
# =============================================================================================
def test_last_price_spike_liquidates_nobody_but_a_mark_move_does() -> None:
    btc = default_instruments()[0]  # the default mechanics: 1 s mark updates, interest 0.01%
    clock = ManualClock(START_MS)
    ex = Exchange([btc], clock=clock)
    for account, amount in (("bob", 1_000_000), ("carol", 1_000_000), ("dave", 1_285)):
        ok(ex.submit(Deposit(account, usdt(amount))))
    ok(ex.submit(SetLeverage("dave", BTC, 50)))
    # dave sells 1 BTC at 60000 at 50x: fee 3e9, collateral 1.255e11 (1,255 USDT)
    # equity(M) = 1.255e11 + 6e12 - 1e7 M; MM = 5e4 M - 5e9 (tier 2)
    # liquidatable <=> 6.1305e12 <= 1.005e7 M <=> M >= 610000 exactly
    open_position(ex, "dave", SELL, ONE_BTC, 600_000)
    assert ex.liquidation_price("dave", BTC) == 610_000
    for source in SOURCES:
        ok(ex.submit(UpdateIndexSource(BTC, source, 600_000)))
    # mark = median(P1, P2, last): P1 = 600000 * (1 + 0.01% * 6_400_000 / 28_800_000)
    # = 600013.33 -> 600013 (6.4e6 ms to the 08:00 funding); P2 = index (empty book: no basis
    # sample); last 600000 -> mark 600000
    assert one(ok(ex.submit(Tick())), PricesUpdated).mark == 600_000

    # the spike: bob lifts carol's 2 lots at 63000.0, the top of the 5% band
    rest(ex, "carol", SELL, 2, 630_000)
    events = ok(place(ex, "bob", BUY, 2, 630_000, tif=TimeInForce.IOC))
    assert [t.price for t in of_type(events, Trade)] == [630_000]
    assert not of_type(events, LiquidationStarted)
    # next mark update: P1 = 600000 * (1 + 0.01% * 6_399_000 / 28_800_000) = 600013.33 ->
    # 600013; P2 = 600000; last 630000: the median is P1
    clock.advance(1_000)
    for source in SOURCES:
        ok(ex.submit(UpdateIndexSource(BTC, source, 600_000)))
    events = ok(ex.submit(Tick()))
    prices = one(events, PricesUpdated)
    assert (prices.index, prices.mark, prices.last) == (600_000, 600_013, 630_000)
    assert not of_type(events, LiquidationStarted)
    assert not ex.account_view("dave").in_liquidation

    # the index moves to 61000.0: P1 = 610000 * (1 + 0.01% * 6_398_000 / 28_800_000)
    # = 610013.55 -> 610014; P2 = 610000; last 630000 -> mark 610014 >= 610000: liquidated.
    # equity 6.1255e12 - 6.10014e12 = 2.536e10, MM 2.55007e10, not deep; 61,001 USDT is
    # below 100,000: the whole position, but the book is empty, so the fund takes it at
    # P_bk = 610014 + 2.536e10 // 1e7 = 612550.
    clock.advance(1_000)
    for source in SOURCES:
        ok(ex.submit(UpdateIndexSource(BTC, source, 610_000)))
    events = ok(ex.submit(Tick()))
    assert one(events, PricesUpdated).mark == 610_014
    started = one(events, LiquidationStarted)
    assert (started.equity, started.maintenance_margin) == (25_360_000_000, 25_500_700_000)
    assert fills(events) == [(ONE_BTC, 0, 0, ONE_BTC, 0, 612_550, 0)]
    assert transfers(events) == [("dave", BTC_FUND, -1, ONE_BTC, 612_550, "takeover")]
    assert one(events, LiquidationFinished).equity == 0
    assert_cash_conserved(ex)


# =============================================================================================
# (e) cross margin: a loss on ETH liquidates the BTC position through shared collateral
# =============================================================================================
def test_eth_loss_liquidates_the_btc_position() -> None:
    ex, _ = venue(btc_perp(), eth_perp(), bob=1_000_000, carol=1_000_000, dave=4_000)
    # dave: long 1 BTC @ 60000 (fee 3e9), short 5 ETH @ 3000.00 (fee 7.5e8): 3.9625e11
    open_position(ex, "dave", BUY, ONE_BTC, 600_000)
    open_position(ex, "dave", SELL, 5_000, 300_000, market=ETH)
    assert ex.accounts["dave"].collateral == 396_250_000_000
    rest(ex, "bob", BUY, ONE_BTC, 600_000)
    # ETH to 3730.00: ETH uPnL -(373000 - 300000) * 5000 * 1000 = -3.65e11
    # equity 3.9625e11 - 3.65e11 = 3.125e10; MM: BTC 6e12 * 0.5% - 5e9 = 2.5e10,
    # ETH ceil(1.865e12 * 0.4%) = 7.46e9; 3.125e10 <= 3.246e10: liquidation, not deep.
    events = mark(ex, 373_000, ETH)
    assert not of_type(events, MarginCall)
    assert kinds(events) == [
        "MarkPriceSet",
        "LiquidationStarted",
        "OrderAccepted",
        "Trade",
        "LiquidationFill",
        "LiquidationFinished",
    ]
    # the BTC position has the larger MM: it is the one closed (60,000 USDT <= 100,000: all
    # of it), in the BTC book, limited to P_bk = 600000 - 3.125e10 // 1e7 = 596875
    fill = one(events, LiquidationFill)
    assert (fill.stream, fill.account, fill.side) == (BTC, "dave", SELL)
    assert fills(events) == [(ONE_BTC, ONE_BTC, 0, 0, 0, 596_875, 18_000_000_000)]
    # filled at 60000 (realized 0), fee 0.3% * 6e12 = 1.8e10 to the BTC fund.
    # equity 1.325e10; the ETH MM 7.46e9 <= 80% * 1.325e10 = 1.06e10: finished, ETH kept.
    finished = one(events, LiquidationFinished)
    assert (finished.equity, finished.maintenance_margin) == (13_250_000_000, 7_460_000_000)
    assert (size(ex, "dave", BTC), size(ex, "dave", ETH)) == (0, -5_000)
    assert (fund(ex, BTC), fund(ex, ETH)) == (INSURANCE_SEED + 18_000_000_000, INSURANCE_SEED)
    assert_cash_conserved(ex)


# =============================================================================================
# (f) margin call: once per episode, again only after an evaluation saw the account recover
# =============================================================================================
def margin_call_venue() -> Exchange:
    """dave (3,100 USDT, 20x) buys 1 BTC at 60000: collateral 3.07e11.
    equity(M) = 1e7 M - 5.693e12; MM = 5e4 M - 5e9.
    margin call <=> MM >= 80% equity <=> 4.5494e12 >= 7.95e6 M <=> M <= 572251.6
    liquidation <=> equity <= MM      <=> 5.688e12  >= 9.95e6 M <=> M <= 571658.3"""
    ex, _ = venue(btc_perp(), carol=1_000_000, dave=3_100)
    open_position(ex, "dave", BUY, ONE_BTC, 600_000)
    return ex


def test_margin_call_once_per_episode_and_again_after_recovery() -> None:
    ex = margin_call_venue()
    # 572252: equity 2.952e10, 80% = 2.3616e10 >= MM 2.36126e10: no call
    assert not of_type(mark(ex, 572_252), MarginCall)
    # 572251: equity 2.951e10, 80% = 2.3608e10 < MM 2.361255e10: call
    call = one(mark(ex, 572_251), MarginCall)
    assert (call.account, call.equity, call.maintenance_margin) == (
        "dave",
        29_510_000_000,
        23_612_550_000,
    )
    assert call.stream == "accounts"
    # deeper, still above liquidation: no second call
    assert not of_type(mark(ex, 572_000), MarginCall)
    assert not of_type(mark(ex, 571_700), MarginCall)
    # a deposit of 100 USDT: equity at 571700 = 3.17e11 + 5.717e12 - 6e12 = 3.4e10,
    # MM 2.3585e10 <= 80% = 2.72e10: the evaluation finds it recovered (no event)
    assert kinds(ok(ex.submit(Deposit("dave", usdt(100))))) == ["Deposited"]
    # new call zone: 5e4 M - 5e9 >= 0.8 (1e7 M - 5.683e12) <=> M <= 571245.3
    assert not of_type(mark(ex, 571_246), MarginCall)
    call = one(mark(ex, 571_245), MarginCall)
    # equity 3.17e11 + 5.71245e12 - 6e12 = 2.945e10; MM 2.856225e10 - 5e9 = 2.356225e10
    assert (call.equity, call.maintenance_margin) == (29_450_000_000, 23_562_250_000)


def test_margin_call_is_not_rearmed_by_a_mark_recovery_alone() -> None:
    """Pins docs §13: the call is re-armed only by an *evaluation* that finds the account
    below 80%. A favourable mark move evaluates nobody (the risk index only fires on adverse
    moves), so call -> recovery by mark -> relapse gives no second MarginCall."""
    ex = margin_call_venue()
    assert of_type(mark(ex, 572_251), MarginCall)
    assert not of_type(mark(ex, 600_000), MarginCall)  # healthy again, but not evaluated
    assert not of_type(mark(ex, 572_251), MarginCall)  # relapse: no new call
    # the liquidation trigger still works
    assert of_type(mark(ex, 571_658), LiquidationStarted)


def test_no_margin_call_when_the_account_goes_straight_to_liquidation() -> None:
    ex = margin_call_venue()
    events = mark(ex, 571_658)
    assert of_type(events, LiquidationStarted) and not of_type(events, MarginCall)


# =============================================================================================
# (g) liquidation_price agrees with the engine, to the tick
# =============================================================================================
@pytest.mark.parametrize(
    ("side", "liq", "safe"),
    [
        # long: equity 2.358e10 <= MM 2.35829e10 at 571658; 2.359e10 > 2.358295e10 at 571659
        (BUY, 571_658, 571_659),
        # short: equity = 3.07e11 + 6e12 - 1e7 M, MM = 5e4 M - 5e9:
        # liquidatable <=> 6.312e12 <= 1.005e7 M <=> M >= 628059.7 -> 628060
        (SELL, 628_060, 628_059),
    ],
    ids=["long", "short"],
)
def test_liquidation_price_is_exact(side: int, liq: int, safe: int) -> None:
    ex, _ = venue(btc_perp(), carol=1_000_000, dave=3_100)
    open_position(ex, "dave", side, ONE_BTC, 600_000)  # type: ignore[arg-type]
    assert ex.liquidation_price("dave", BTC) == liq
    (view,) = ex.account_view("dave").positions
    assert view.liquidation_price == liq
    # one tick better: not liquidated (a margin call at most)
    events = mark(ex, safe)
    assert not of_type(events, LiquidationStarted)
    assert not ex.account_view("dave").in_liquidation
    # at the liquidation price: liquidated
    events = mark(ex, liq)
    started = one(events, LiquidationStarted)
    assert started.equity <= started.maintenance_margin


@pytest.mark.parametrize("eth_mark", [300_000, 330_000, 345_000])
def test_liquidation_price_accounts_for_the_other_markets(eth_mark: int) -> None:
    """Cross margin: the BTC liquidation price of a BTC long + ETH short moves with ETH's
    mark, and still liquidates exactly there and not one tick above."""

    def build() -> Exchange:
        ex, _ = venue(btc_perp(), eth_perp(), carol=1_000_000, dave=5_000)
        open_position(ex, "dave", BUY, ONE_BTC, 600_000)
        open_position(ex, "dave", SELL, 5_000, 300_000, market=ETH)
        mark(ex, eth_mark, ETH)
        return ex

    ex = build()
    liq = ex.liquidation_price("dave", BTC)
    assert liq is not None
    # by hand: equity(M) = 4.9625e11 + 1e7 M - 6e12 - (eth_mark - 300000) * 5e6
    #          MM(M) = 5e4 M - 5e9 + ceil(eth_mark * 5e6 * 0.4%) = ... + eth_mark * 2e4
    extra = (eth_mark - 300_000) * 5_000_000 + eth_mark * 20_000
    assert liq == (6_000_000_000_000 - 496_250_000_000 - 5_000_000_000 + extra) // 9_950_000
    assert not of_type(mark(ex, liq + 1), LiquidationStarted)
    assert of_type(mark(ex, liq), LiquidationStarted)
    # a fresh account jumping straight to the price is liquidated too
    ex = build()
    assert of_type(mark(ex, liq), LiquidationStarted)


# =============================================================================================
# The last opposing position belongs to the insurance fund: it absorbs the rest by ADL
# =============================================================================================
def test_bankrupt_account_whose_last_counterparty_is_the_insurance_fund_is_closed() -> None:
    ex, _ = venue(
        btc_perp(MARKET, insurance_seed=usdt(100)),
        bob=700,
        carol=1_000_000,
        dave=150,
        erin=100_000,
    )
    ok(ex.submit(SetLeverage("dave", BTC, 50)))
    ok(ex.submit(SetLeverage("bob", BTC, 50)))
    # dave sells 100 lots to carol at 60000 (fee 3e8): collateral 1.47e10. At mark 61400.0
    # his equity is 1.47e10 - 1.4e10 = 7e8 < 2/3 MM (2.456e9): deep, the fund takes the short
    # at 614000 + 7e8 // 1e6 = 614700. Fund: seed 1e10, short 100, equity 1.07e10.
    rest(ex, "carol", BUY, 100, 600_000)
    ok(place(ex, "dave", SELL, 100, 600_000, tif=TimeInForce.IOC))
    events = mark(ex, 614_000)
    assert transfers(events) == [("dave", BTC_FUND, -1, 100, 614_700, "takeover")]
    # bob (700 USDT, 50x) bids 500 lots at the top of the band, 64470.0; carol sells him her
    # 100, then erin 400 (maker fees 1.2894e8 + 5.1576e8): bob's collateral 6.93553e10, uPnL
    # (614000 - 644700) * 500 * 10000 = -1.535e11: equity -8.41447e10, deep.
    rest(ex, "bob", BUY, 500, 644_700)
    ok(place(ex, "carol", SELL, 100, 644_700, tif=TimeInForce.IOC))
    events = ok(place(ex, "erin", SELL, 400, 644_700, tif=TimeInForce.IOC))
    # P_bk = 614000 + (-8.41447e10 // 5e6) = 630829; the fund cannot pay
    # 1.07e10 - (630829 - 614000) * 500 * 10000 < 0 -> ADL: erin's 400 at 630829. The other
    # 100 lots face only the fund's short (-100): bob is left with equity -1.68287e10.
    assert transfers(events)[0] == ("bob", "erin", 1, 400, 630_829, "adl")
    # expected: every lot is closed (against the fund, the only counterparty left, which
    # absorbs the loss), bob ends flat, made whole, and out of liquidation
    assert all(f.qty > 0 for f in of_type(events, LiquidationFill))
    assert sum(f.qty for f in of_type(events, LiquidationFill)) == 500
    assert size(ex, "bob") == 0 and size(ex, BTC_FUND) == 0
    view = ex.account_view("bob")
    assert not view.in_liquidation and view.collateral >= 0
    assert_cash_conserved(ex)


def test_adl_never_leaves_a_counterparty_below_zero() -> None:
    ex, _ = venue(
        btc_perp(MARKET, insurance_seed=usdt(100)),
        bob=700,
        carol=1_000_000,
        erin=1_000_000,
        frank=140,
    )
    ok(ex.submit(SetLeverage("bob", BTC, 50)))
    ok(ex.submit(SetLeverage("frank", BTC, 50)))
    # frank sells 100 lots to carol at 60000 (fee 3e8): collateral 1.37e10. At mark 61000.0:
    # equity 1.37e10 - 1e10 = 3.7e9, MM 2.44e9 (liquidation price 61125.5): thin, not liquidated.
    rest(ex, "carol", BUY, 100, 600_000)
    ok(place(ex, "frank", SELL, 100, 600_000, tif=TimeInForce.IOC))
    mark(ex, 610_000)
    assert ex.liquidation_price("frank", BTC) == 611_255
    # bob (700 USDT, 50x) bids 300 lots at the top of the band, 64050.0; carol sells him her
    # 100 (closing her long), erin 200. bob: maker fees 3.843e8, uPnL (610000 - 640500) * 300
    # * 10000 = -9.15e10: equity 7e10 - 3.843e8 - 9.15e10 = -2.18843e10, deep.
    rest(ex, "bob", BUY, 300, 640_500)
    ok(place(ex, "carol", SELL, 100, 640_500, tif=TimeInForce.IOC))
    events = ok(place(ex, "erin", SELL, 200, 640_500, tif=TimeInForce.IOC))
    # P_bk = 610000 + (-2.18843e10 // 3e6) = 617295; the fund cannot pay 2.1885e10 -> ADL.
    # erin (in profit) ranks first: 200 lots; frank (losing) last: 100 lots at 617295, which
    # realizes 6e11 - 6.17295e11 = -1.7295e10 against his 1.37e10 of collateral.
    assert transfers(events) == [
        ("bob", "erin", 1, 200, 617_295, "adl"),
        ("bob", "frank", 1, 100, 617_295, "adl"),
    ]
    assert ex.accounts["bob"].collateral == 700_000
    assert_cash_conserved(ex)
    # expected: nobody is left owing money (today frank is flat at -3_595_000_000)
    assert size(ex, "frank") == 0
    assert ex.accounts["frank"].collateral >= 0

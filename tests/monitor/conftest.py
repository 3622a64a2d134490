"""A hand-built BTC-PERP exchange for the band and cascade tests.

Five 50x longs of 1 BTC each (bought at 60,010) with collateral chosen so their liquidation
prices sit 150 USDT apart from 58,000 down, one short far away, and a market maker whose bids
thin out below the index. The index sources are pinned at 60,000 for 31 s first, so the mark's
basis window is full and flat.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox.engine import (
    CancelAll,
    Deposit,
    Event,
    Exchange,
    ManualClock,
    OrderType,
    PlaceOrder,
    Rejected,
    SetLeverage,
    Side,
    Tick,
    default_instruments,
)
from sandbox.engine.commands import UpdateIndexSource

BTC = "BTC-PERP"
USDT = 10**8
START = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
SOURCES = ("spot-a", "spot-b", "spot-c")
LONGS = {"t1": 2_280, "t2": 2_430, "t3": 2_580, "t4": 2_780, "t5": 3_080}  # USDT deposits
BIDS = (  # (ticks, lots): thin just below the shocked index, thicker further down
    (579_000, 300),
    (578_000, 400),
    (577_000, 400),
    (576_000, 500),
    (575_000, 600),
    (574_000, 800),
    (572_000, 1_000),
    (570_000, 5_000),
)
ASK = (579_500, 5_000)


def ok(events: list[Event]) -> list[Event]:
    assert not events or type(events[0]) is not Rejected, events
    return events


def pin_index(ex: Exchange, ticks: int, market: str = BTC) -> None:
    for src in SOURCES:
        ok(ex.submit(UpdateIndexSource(market, src, ticks)))


def scenario(
    bids: Sequence[tuple[int, int]] = BIDS, *, whale: bool = False
) -> tuple[Exchange, ManualClock]:
    """The exchange just before the shock. ``whale``: add a 3 BTC long at 30x (over the
    100,000 USDT step size, so it is liquidated incrementally, 20% every 30 s)."""
    clock = ManualClock(START)
    ex = Exchange(default_instruments(), clock=clock)
    ok(ex.submit(Deposit("mm", 10_000_000 * USDT)))
    if whale:
        ok(ex.submit(Deposit("whale", 7_540 * USDT)))
        ok(ex.submit(SetLeverage("whale", BTC, 30)))
        ok(ex.submit(PlaceOrder("mm", BTC, Side.SELL, 3_000, price=600_100)))
        ok(ex.submit(PlaceOrder("whale", BTC, Side.BUY, 3_000, order_type=OrderType.MARKET)))
    for account, usdt in LONGS.items():
        ok(ex.submit(Deposit(account, usdt * USDT)))
        ok(ex.submit(SetLeverage(account, BTC, 50)))
    ok(ex.submit(Deposit("s1", 8_000 * USDT)))
    ok(ex.submit(PlaceOrder("mm", BTC, Side.SELL, 20_000, price=600_100)))
    ok(ex.submit(PlaceOrder("mm", BTC, Side.BUY, 20_000, price=599_900)))
    for account in LONGS:
        ok(ex.submit(PlaceOrder(account, BTC, Side.BUY, 1_000, order_type=OrderType.MARKET)))
    ok(ex.submit(PlaceOrder("s1", BTC, Side.SELL, 1_000, order_type=OrderType.MARKET)))
    for _ in range(31):
        clock.advance(1_000)
        pin_index(ex, 600_000)
        ok(ex.submit(Tick()))
    ok(ex.submit(CancelAll("mm")))
    for price, lots in bids:
        ok(ex.submit(PlaceOrder("mm", BTC, Side.BUY, lots, price=price)))
    ok(ex.submit(PlaceOrder("mm", BTC, Side.SELL, ASK[1], price=ASK[0])))
    return ex, clock

"""Funding as the exchange runs it on ``Tick``: premium samples from its own book every minute,
settlement at interval boundaries at the mark, exact zero-sum payments with the rounding residue
to the insurance fund, shorter intervals, and catch-up after a clock jump.

ETH-PERP (defaults): tick 0.01, lot 0.001, so notional = ticks * lots * 1_000 money units;
impact notional 200 USDT x 125 = 25,000 USDT = 2.5e12 units; 8 h interval, interest 0.01%
(10_000), damper +-0.05% (50_000), cap 0.30% (300_000). Fundings fall on multiples of the
interval since the epoch: F = 1_700_006_400_000 is one (59_028 x 28_800_000).
"""

from __future__ import annotations

from typing import TypeVar

from sandbox.engine import (
    CancelAll,
    Deposit,
    Event,
    Exchange,
    FundingConfig,
    FundingPaid,
    FundingSettled,
    Instrument,
    LiquidationStarted,
    ManualClock,
    MarketMechanics,
    PricesUpdated,
    SequencedEvent,
    SetLeverage,
    SetMarkPrice,
    Tick,
    TimeInForce,
    UpdateIndexSource,
    default_instruments,
)

from .conftest import (
    BUY,
    ETH,
    INSURANCE_SEED,
    SELL,
    assert_cash_conserved,
    insurance_fund,
    kinds,
    of_type,
    ok,
    place,
    rest,
    usdt,
)

E = TypeVar("E", bound=Event)
HOUR = 3_600_000
EIGHT_H = 8 * HOUR
F = 1_700_006_400_000  # an 8 h funding time (and so also an hour and a minute boundary)
T0 = F - 300_000  # five minutes before it, on a minute boundary
ETH_FUND = insurance_fund(ETH)
SOURCES = ("spot-a", "spot-b", "spot-c")


def eth(funding: FundingConfig | None = None, mark_interval_ms: int = 1_000) -> Instrument:
    if funding is None and mark_interval_ms == 1_000:
        return default_instruments()[1]
    return Instrument.create(
        ETH,
        tick_size="0.01",
        lot_size="0.001",
        min_qty="0.001",
        max_qty="10000",
        market_max_qty="2000",
        min_notional="20",
        initial_price="3000",
        mechanics=MarketMechanics(
            funding=funding or FundingConfig(cap=300_000), mark_interval_ms=mark_interval_ms
        ),
    )


def one(events: list[Event], cls: type[E]) -> E:
    (event,) = of_type(events, cls)
    return event


def venue(instrument: Instrument, start: int) -> tuple[Exchange, ManualClock]:
    """alice long 3001 lots at 3000.00; bob short 1001 and carol short 2000 (makers); mm has
    1,000,000 USDT to quote with. Fees: alice 300000 * 3001 * 1000 * 0.05% = 450_150_000."""
    clock = ManualClock(start)
    ex = Exchange([instrument], clock=clock)
    for account in ("alice", "bob", "carol", "mm"):
        ok(ex.submit(Deposit(account, usdt(1_000_000))))
    rest(ex, "bob", SELL, 1_001, 300_000, ETH)
    rest(ex, "carol", SELL, 2_000, 300_000, ETH)
    ok(place(ex, "alice", BUY, 3_001, 300_000, ETH, tif=TimeInForce.IOC))
    return ex, clock


def quote(ex: Exchange, bid: int, ask: int, lots: int = 10_000) -> None:
    """mm replaces its quotes: ``lots`` on each side (10 ETH: >= 30,000 USDT, deeper than the
    25,000 USDT impact notional, so each impact price is the level price exactly)."""
    ok(ex.submit(CancelAll("mm")))
    rest(ex, "mm", BUY, lots, bid, ETH)
    rest(ex, "mm", SELL, lots, ask, ETH)


def tick(ex: Exchange, clock: ManualClock, at: int, index: int = 300_000) -> list[Event]:
    """Move the clock to ``at``, quote ``index`` from the three sources, Tick."""
    clock.set(at)
    for source in SOURCES:
        ok(ex.submit(UpdateIndexSource(ETH, source, index)))
    return ok(ex.submit(Tick()))


def samples(ex: Exchange) -> tuple[int, int]:
    calc = ex.markets[ETH].funding
    return calc.sample_count, calc.average_premium()


def test_samples_each_minute_and_settlement_at_the_mark_with_residue() -> None:
    ex, clock = venue(eth(), T0)
    quote(ex, 300_300, 300_400)  # impact bid 3003.00, impact ask 3004.00
    # T0 is a minute boundary: the first sample is due at T0 + 1 min; no sample now.
    events = tick(ex, clock, T0)
    prices = one(events, PricesUpdated)
    assert (prices.index, prices.next_funding_ts, prices.funding_rate) == (300_000, F, 10_000)
    assert samples(ex) == (0, 0)

    # +1 min: premium = (300300 - 300000) / 300000 = 0.1% = 100_000 (the ask is above index)
    # predicted rate = 100_000 + clamp(10_000 - 100_000, +-50_000) = 50_000
    events = tick(ex, clock, T0 + 60_000)
    assert samples(ex) == (1, 100_000)
    assert one(events, PricesUpdated).funding_rate == 50_000
    # +2 min with no asks: no impact ask, so no sample this minute
    ok(ex.submit(CancelAll("mm")))
    rest(ex, "mm", BUY, 10_000, 300_300, ETH)
    tick(ex, clock, T0 + 120_000)
    assert samples(ex) == (1, 100_000)
    # +3 and +4 min: bids at 3006.00 -> premium 600 / 300000 = 200_000
    quote(ex, 300_600, 300_700)
    tick(ex, clock, T0 + 180_000)
    tick(ex, clock, T0 + 240_000)
    assert samples(ex) == (3, 166_666)  # (100_000 + 2 * 200_000) / 3, toward zero

    # Settlement at F, at the mark in force (an operator mark of 3000.01 = 300_001 ticks).
    # The sample due at F is taken first: 4 samples, P = 700_000 / 4 = 175_000;
    # rate = 175_000 + clamp(10_000 - 175_000, +-50_000) = 125_000 (0.125%, under the cap).
    ok(ex.submit(SetMarkPrice(ETH, 300_001)))
    before = {a: ex.accounts[a].collateral for a in ("alice", "bob", "carol", "mm", ETH_FUND)}
    events = tick(ex, clock, F)
    assert kinds(events)[:4] == ["FundingPaid", "FundingPaid", "FundingPaid", "FundingSettled"]
    # one lot pays 300001 * 1000 * 125_000 / 1e8 = 375_001.25 units; amounts round up:
    #   alice  3001 lots:  1_125_378_751.25 -> pays      1_125_378_752
    #   bob   -1001 lots:   -375_376_251.25 -> receives    375_376_251
    #   carol -2000 lots:   -750_002_500    -> receives    750_002_500
    # residue 1_125_378_752 - 375_376_251 - 750_002_500 = 1 unit, to the insurance fund
    paid = of_type(events, FundingPaid)
    assert [(p.account, p.size, p.amount, p.ts) for p in paid] == [
        ("alice", 3_001, 1_125_378_752, F),
        ("bob", -1_001, -375_376_251, F),
        ("carol", -2_000, -750_002_500, F),
    ]
    settled = one(events, FundingSettled)
    assert (settled.funding_ts, settled.rate, settled.mark) == (F, 125_000, 300_001)
    assert (settled.paid, settled.residue, settled.stream) == (1_125_378_752, 1, ETH)
    after = {a: ex.accounts[a].collateral for a in before}
    assert {a: after[a] - before[a] for a in before} == {
        "alice": -1_125_378_752,
        "bob": 375_376_251,
        "carol": 750_002_500,
        "mm": 0,  # quotes only, no position
        ETH_FUND: 1,
    }
    assert after[ETH_FUND] == INSURANCE_SEED + 1
    # the interval restarts: no samples, next funding 8 h later, predicted rate = interest
    assert samples(ex) == (0, 0)
    prices = one(events, PricesUpdated)
    assert (prices.next_funding_ts, prices.funding_rate) == (F + EIGHT_H, 10_000)
    assert ex.markets[ETH].next_funding_ts == F + EIGHT_H
    # a Tick at the same instant settles nothing twice
    assert not of_type(ok(ex.submit(Tick())), FundingSettled)
    assert_cash_conserved(ex)


def test_a_premium_sample_needs_the_impact_notional_on_both_sides() -> None:
    ex, clock = venue(eth(), T0)
    # 8325 lots at 3003.00 = 300300 * 8325 * 1000 = 2_499_997_500_000 < 2.5e12: too thin
    quote(ex, 300_300, 300_400, lots=8_325)
    tick(ex, clock, T0 + 60_000)
    assert samples(ex) == (0, 0)
    # one more lot: 300300 * 8326 * 1000 = 2_500_297_800_000 >= 2.5e12 on the bid; the ask
    # side 300400 * 8326 * 1000 also covers it: a sample, premium 300 / 300000 = 100_000
    quote(ex, 300_300, 300_400, lots=8_326)
    tick(ex, clock, T0 + 120_000)
    assert samples(ex) == (1, 100_000)
    # index inside [impact bid, impact ask]: premium 0 (bid 2999.00 below, ask 3001.00 above)
    quote(ex, 299_900, 300_100)
    tick(ex, clock, T0 + 180_000)
    assert samples(ex) == (2, 50_000)
    # a Tick between minute boundaries takes no sample
    tick(ex, clock, T0 + 200_000)
    assert samples(ex) == (2, 50_000)


def one_hour() -> FundingConfig:
    """A 1 h interval with interest and cap scaled by 1/8: 0.00125% and 0.0375%."""
    return FundingConfig(interval_ms=HOUR, interest_rate=1_250, cap=37_500)


def test_one_hour_interval_settles_on_every_hour() -> None:
    start = 1_700_000_000_000  # 800_000 ms past the hour 1_699_999_200_000
    hour = 1_700_002_800_000
    ex, clock = venue(eth(one_hour()), start)
    events = tick(ex, clock, start)
    assert one(events, PricesUpdated).next_funding_ts == hour
    ok(ex.submit(SetMarkPrice(ETH, 300_000)))
    assert not of_type(tick(ex, clock, hour - 1), FundingSettled)
    ok(ex.submit(SetMarkPrice(ETH, 300_000)))
    events = tick(ex, clock, hour)
    # empty book, no samples: rate = 0 + clamp(1_250 - 0, +-50_000) = 1_250
    # per lot 300000 * 1000 * 1250 / 1e8 = 3750 units: alice pays 3001 * 3750 = 11_253_750
    settled = one(events, FundingSettled)
    assert (settled.funding_ts, settled.rate, settled.mark, settled.residue) == (
        hour,
        1_250,
        300_000,
        0,
    )
    assert [(p.account, p.amount) for p in of_type(events, FundingPaid)] == [
        ("alice", 11_253_750),
        ("bob", -3_753_750),
        ("carol", -7_500_000),
    ]
    assert one(events, PricesUpdated).next_funding_ts == hour + HOUR
    assert_cash_conserved(ex)


def test_clock_jump_catches_up_every_missed_settlement_in_order() -> None:
    hour = 1_700_002_800_000
    start = hour - 180_000
    ex, clock = venue(eth(one_hour()), start)
    quote(ex, 300_300, 300_400)
    # samples at hour - 2 min and hour - 1 min: premium 100_000 each
    tick(ex, clock, hour - 120_000)
    tick(ex, clock, hour - 60_000)
    assert samples(ex) == (2, 100_000)
    ok(ex.submit(CancelAll("mm")))  # from now on the book is empty: no more samples
    ok(ex.submit(SetMarkPrice(ETH, 300_000)))
    # jump 2 h 30 s past the first funding time: three settlements in one Tick, in time order,
    # all at the mark in force (the mark update comes after them)
    events = tick(ex, clock, hour + 2 * HOUR + 30_000)
    settled = of_type(events, FundingSettled)
    # first: P = 100_000 -> 100_000 + clamp(1_250 - 100_000, +-50_000) = 50_000 -> cap 37_500;
    # then no samples: the interest rate 1_250
    assert [(s.funding_ts, s.rate, s.mark, s.ts) for s in settled] == [
        (hour, 37_500, 300_000, hour),
        (hour + HOUR, 1_250, 300_000, hour + HOUR),
        (hour + 2 * HOUR, 1_250, 300_000, hour + 2 * HOUR),
    ]
    # alice: 3001 * 300000 * 1000 * 37_500 / 1e8 = 3001 * 112_500 = 337_612_500, then
    # 3001 * 3750 = 11_253_750 twice
    alice = [p.amount for p in of_type(events, FundingPaid) if p.account == "alice"]
    assert alice == [337_612_500, 11_253_750, 11_253_750]
    assert kinds(events)[-1] == "PricesUpdated"
    assert one(events, PricesUpdated).next_funding_ts == hour + 3 * HOUR
    seqs = [e.seq for e in of_type(events, SequencedEvent) if e.stream == ETH]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gapless, in order
    assert_cash_conserved(ex)


def test_a_funding_payment_can_trigger_a_liquidation() -> None:
    """alice (30 USDT, 125x) long 1 ETH at 3000.00: fee 1.5e8, collateral 2.85e9.
    equity(M) = 2.85e9 + 1e6 M - 3e11, MM = 0.4% * 1e6 M = 4000 M.
    At mark 298344: equity 1_194_000_000 > MM 1_193_376_000 (624_000 units to spare).
    Funding at 1_250: 298344 * 1000 * 1250 / 1e8 * 1000 lots = 3_729_300 > 624_000."""
    hour = 1_700_002_800_000
    clock = ManualClock(hour - 60_000)
    ex = Exchange([eth(one_hour(), mark_interval_ms=10**12)], clock=clock)
    ok(ex.submit(Tick()))  # the first mark update; later Ticks leave the mark alone
    ok(ex.submit(Deposit("alice", usdt(30))))
    ok(ex.submit(Deposit("bob", usdt(1_000_000))))
    ok(ex.submit(SetLeverage("alice", ETH, 125)))
    rest(ex, "bob", SELL, 1_000, 300_000, ETH)
    ok(place(ex, "alice", BUY, 1_000, 300_000, ETH, tif=TimeInForce.IOC))
    events = ok(ex.submit(SetMarkPrice(ETH, 298_344)))
    assert not of_type(events, LiquidationStarted)
    assert ex.liquidation_price("alice", ETH) == 298_343
    clock.set(hour)
    events = ok(ex.submit(Tick()))
    assert kinds(events)[:4] == [
        "FundingPaid",
        "FundingPaid",
        "FundingSettled",
        "LiquidationStarted",
    ]
    paid = of_type(events, FundingPaid)
    assert [(p.account, p.amount) for p in paid] == [("alice", 3_729_300), ("bob", -3_729_300)]
    started = one(events, LiquidationStarted)
    assert (started.equity, started.maintenance_margin) == (1_190_270_700, 1_193_376_000)
    assert_cash_conserved(ex)

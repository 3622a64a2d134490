"""The cascade simulator against the real engine, and its promise never to touch live state."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from perpbot.risk.margin import RATE_SCALE
from sandbox.engine import (
    Deposit,
    Exchange,
    LiquidationFill,
    LiquidationStarted,
    OrderType,
    PlaceOrder,
    SetLeverage,
    Side,
    Tick,
)
from sandbox.monitor.cascade import CascadeResult, shocked, simulate, take_snapshot

from .conftest import BTC, USDT, ok, pin_index, scenario

ETH = "ETH-PERP"
# Documented tolerance (docs/monitor.md): same accounts in the same order, the same quantity
# per step, and the mark within 0.05% of the engine's at every second of the horizon.
MARK_TOLERANCE = Fraction(5, 10_000)


def run_engine(ex: Exchange, clock_advance: object, shock: int, seconds: int) -> dict[str, object]:
    """Apply the shock for real: pin the index sources at the shocked price each second, Tick."""
    target = shocked(ex.markets[BTC].index, shock)
    started: list[str] = []
    steps: list[tuple[int, str, int, int, int]] = []
    path: list[int] = []
    for second in range(seconds):
        clock_advance(1_000)  # type: ignore[operator]
        pin_index(ex, target)
        for ev in ok(ex.submit(Tick())):
            if isinstance(ev, LiquidationStarted):
                started.append(ev.account)
            elif isinstance(ev, LiquidationFill):
                steps.append((second, ev.account, ev.qty, ev.book_qty, ev.takeover_qty))
        path.append(ex.markets[BTC].mark)
    return {
        "started": started,
        "steps": steps,
        "path": path,
        "fund": ex.accounts[ex.markets[BTC].insurance].collateral,
    }


def predicted_steps(result: CascadeResult) -> list[tuple[int, str, int, int, int]]:
    return [(s.round, s.account, s.qty, s.book_qty, s.takeover_qty) for s in result.steps]


@pytest.mark.parametrize(
    ("shock_pct", "chained"), [(Fraction(-35, 10), True), (Fraction(-5), False)]
)
def test_prediction_matches_the_engine(shock_pct: Fraction, chained: bool) -> None:
    shock = int(shock_pct * RATE_SCALE / 100)
    ex, clock = scenario()
    snap = take_snapshot(ex, clock.now_ms())
    predicted = simulate(snap, BTC, shock, seconds=45)
    actual = run_engine(ex, clock.advance, shock, 45)

    assert list(predicted.accounts) == actual["started"]
    assert predicted_steps(predicted) == actual["steps"]
    engine_path = actual["path"]
    assert isinstance(engine_path, list)
    for mine, theirs in zip(predicted.mark_path[BTC], engine_path, strict=True):
        assert abs(Fraction(mine - theirs, theirs)) <= MARK_TOLERANCE
    assert predicted.insurance_after[BTC] == actual["fund"]
    assert len(predicted.accounts) >= 2
    if chained:
        # A real cascade: the first liquidation drags the mark, which reaches the next account
        # seconds later (not at the moment of the shock).
        assert max(s.round for s in predicted.steps) > 0
        assert predicted.mark_after[BTC] < predicted.mark_path[BTC][0]
    else:
        # A gap through every liquidation price: all at once, the fund pays the shortfall.
        assert {s.round for s in predicted.steps} == {0}
        assert predicted.fund_used > 0


def test_incremental_steps_match_the_engine() -> None:
    """A position over the step size is closed 20% at a time, one step per 30 s cooldown."""
    shock = -35 * RATE_SCALE // 1_000
    ex, clock = scenario(whale=True)
    predicted = simulate(take_snapshot(ex, clock.now_ms()), BTC, shock, seconds=95)
    actual = run_engine(ex, clock.advance, shock, 95)
    assert list(predicted.accounts) == actual["started"]
    assert predicted_steps(predicted) == actual["steps"]
    assert predicted.insurance_after[BTC] == actual["fund"]
    whale = [s for s in predicted.steps if s.account == "whale"]
    assert whale[0].qty == 600 and not whale[0].deep  # 20% of 3 BTC
    assert len(whale) >= 2
    for prev, step in itertools.pairwise(whale):
        # The next step waits for the 30 s cooldown, unless the account has turned deep.
        assert step.round - prev.round >= 30 or step.deep


def test_a_small_shock_liquidates_nobody() -> None:
    ex, clock = scenario()
    result = simulate(take_snapshot(ex, clock.now_ms()), BTC, -RATE_SCALE // 100, seconds=20)
    assert result.steps == () and result.accounts == ()
    actual = run_engine(ex, clock.advance, -RATE_SCALE // 100, 20)
    assert actual["started"] == []


def _live_state(ex: Exchange) -> object:
    return (
        {
            a.id: (a.collateral, {s: (p.size, p.cost) for s, p in a.positions.items()})
            for a in ex.accounts.values()
        },
        {
            s: (
                m.mark,
                m.index,
                m.last,
                m.book.bids.depth(1_000),
                m.book.asks.depth(1_000),
                m.mark_calc.basis_samples(),
            )
            for s, m in ex.markets.items()
        },
    )


def test_simulation_never_touches_the_live_exchange() -> None:
    ex, clock = scenario()
    before = _live_state(ex)
    result = simulate(take_snapshot(ex, clock.now_ms()), BTC, -5 * RATE_SCALE // 100)
    assert result.accounts  # it did liquidate, on its copy
    assert _live_state(ex) == before
    # And the live exchange still liquidates exactly like the prediction afterwards.
    again = simulate(take_snapshot(ex, clock.now_ms()), BTC, -5 * RATE_SCALE // 100)
    assert again.accounts == result.accounts


def _with_eth_long(ex: Exchange) -> None:
    ok(ex.submit(Deposit("e1", 900 * USDT)))
    ok(ex.submit(SetLeverage("e1", ETH, 50)))
    ok(ex.submit(PlaceOrder("mm", ETH, Side.SELL, 10_000, price=300_100)))
    ok(ex.submit(PlaceOrder("mm", ETH, Side.BUY, 50_000, price=290_000)))
    ok(ex.submit(PlaceOrder("e1", ETH, Side.BUY, 10_000, order_type=OrderType.MARKET)))


def test_correlated_markets_follow_the_shock() -> None:
    ex, clock = scenario()
    _with_eth_long(ex)
    liq = ex.liquidation_price("e1", ETH)
    assert liq is not None and 290_000 < liq < 300_000  # within -3.3% of the ETH mark
    shock = -10 * RATE_SCALE // 100
    alone = simulate(take_snapshot(ex, clock.now_ms()), BTC, shock, seconds=5)
    assert "e1" not in alone.accounts
    assert abs(alone.mark_after[ETH] - alone.mark_before[ETH]) * 1_000 < alone.mark_before[ETH]
    linked = simulate(
        take_snapshot(ex, clock.now_ms()), BTC, shock, betas={ETH: Fraction(1, 2)}, seconds=5
    )
    assert "e1" in linked.accounts
    eth_steps = [s for s in linked.steps if s.market == ETH]
    # ETH's index falls 5% (half of BTC's 10%): a gap through e1's bankruptcy price, so the
    # whole position goes to the fund, which pays the difference.
    assert [(s.account, s.qty, s.takeover_qty, s.deep) for s in eth_steps] == [
        ("e1", 10_000, 10_000, True)
    ]
    assert eth_steps[0].fund_used > 0
    assert linked.mark_after[ETH] < linked.mark_before[ETH] * 96 // 100


def test_requoting_market_makers_deepen_the_cascade() -> None:
    shock = -35 * RATE_SCALE // 1_000
    ex, clock = scenario()
    still = simulate(take_snapshot(ex, clock.now_ms()), BTC, shock, seconds=45)
    moved = simulate(take_snapshot(ex, clock.now_ms()), BTC, shock, seconds=45, requote=("mm",))
    # The maker's bids follow the index down 3.5%: the fund's unwinding sells lower, the mid
    # and so the mark fall further, and every long is reached, in liquidation-price order.
    assert still.accounts == ("t1", "t2")
    assert moved.accounts == ("t1", "t2", "t3", "t4", "t5")
    assert moved.mark_after[BTC] < still.mark_after[BTC]

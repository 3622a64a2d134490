"""Every numbered tutorial runs (quick mode) and its finding holds, computed, not printed."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from examples.tutorials import (
    t01_mark_index_last,
    t02_liquidation_modes,
    t03_cross_margin_correlation,
    t04_funding_crowded_trade,
    t05_throttling,
    t06_slippage_thin_books,
    t07_pre_trade_guard,
)


def assert_pngs(charts: tuple[Path, ...], out: Path) -> None:
    assert charts
    for path in charts:
        assert path.parent == out and path.suffix == ".png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_t01_liquidated_by_mark_not_last(tmp_path: Path) -> None:
    f = t01_mark_index_last.run(tmp_path, quick=True)
    # run 1: liquidated although last never reached the liquidation price; the mark did
    assert f.slide_liquidated
    assert f.slide_last_low_before > f.liquidation_price
    assert f.slide_mark_at_trigger <= f.liquidation_price
    assert f.slide_steps >= 1 and f.slide_closed > 0
    # run 2: last printed below the liquidation price, the mark stayed above: no liquidation
    assert f.wick_last_low < f.liquidation_price < f.wick_mark_low
    assert not f.wick_liquidated
    assert_pngs(f.charts, tmp_path)


def test_t02_incremental_liquidates_less_than_market(tmp_path: Path) -> None:
    f = t02_liquidation_modes.run(tmp_path, quick=True)
    inc, mkt, auc = f.results["INCREMENTAL"], f.results["MARKET"], f.results["AUCTION"]
    # the same crash: each mode's liquidation started from the same account state
    assert inc.equity_at_trigger == mkt.equity_at_trigger == auc.equity_at_trigger
    assert inc.steps >= 2 and mkt.steps == 1
    assert 0 < inc.closed < mkt.closed == Decimal(10)
    assert inc.remaining > 0 and mkt.remaining == 0
    assert inc.equity_after > mkt.equity_after
    assert inc.fees < mkt.fees
    assert auc.closed == Decimal(10) and auc.fees == 0  # off the book, fee-free transfer
    assert_pngs(f.charts, tmp_path)


def test_t03_the_eth_hedge_caused_the_liquidation(tmp_path: Path) -> None:
    f = t03_cross_margin_correlation.run(tmp_path, quick=True)
    assert f.liquidated == {"btc_only": False, "eth_long_hedge": True, "eth_short_hedge": False}
    # without the ETH leg the same BTC position survives this move (its liquidation is further)
    assert f.liquidation_drop["btc_only"] > t03_cross_margin_correlation.DROP
    assert (
        f.hedge_trigger_drop is not None and f.hedge_trigger_drop < f.liquidation_drop["btc_only"]
    )
    # ... and the position with the most maintenance margin, BTC, is what the engine closed
    assert f.first_step_market == "BTC-PERP" and f.first_step_qty == Decimal("0.4")
    assert f.max_ratio["eth_short_hedge"] < f.max_ratio["btc_only"] < 1
    assert_pngs(f.charts, tmp_path)


def test_t04_crowded_side_pays_and_funding_is_zero_sum(tmp_path: Path) -> None:
    f = t04_funding_crowded_trade.run(tmp_path, quick=True)
    assert f.settlements == 21  # 7 days of 8 h intervals
    assert f.zero_sum_units == 0  # payments minus the residue, to the unit
    assert f.you_paid > 0
    # the crowd holds 4x your size and pays 4x, up to each payment's round-up (< 1 unit)
    assert 0 <= 4 * f.you_paid - f.paid["crowd"] < Decimal(4 * f.settlements) / 10**8
    assert f.paid["short_a"] < 0 and f.paid["short_b"] < 0
    assert f.average_rate > Decimal("0.0001")  # above the interest rate: the crowd pays
    assert f.max_rate <= Decimal("0.003")  # the cap
    assert_pngs(f.charts, tmp_path)


def test_t05_naive_bot_banned_sdk_bot_not(tmp_path: Path) -> None:
    f = t05_throttling.run(tmp_path, quick=True)
    assert f.naive.throttled_429 > 0 and f.naive.banned_418 > 0 and f.naive.bans >= 1
    assert f.sdk.throttled_429 == 0 and f.sdk.banned_418 == 0
    assert f.sdk.placed == f.target and f.sdk.requests == f.target
    assert f.naive.placed < f.target or f.naive.seconds > f.sdk.seconds
    assert_pngs(f.charts, tmp_path)


def test_t06_doubling_size_more_than_doubles_cost(tmp_path: Path) -> None:
    f = t06_slippage_thin_books.run(tmp_path, quick=True)
    assert len(f.thin) == len(t06_slippage_thin_books.SIZES)
    assert all(r > 2 for r in f.thin_cost_ratios)
    for p in (*f.thin, *f.thick):
        assert p.real_avg_price == p.avg_price  # the walk matches a real market order
    for thin, thick in zip(f.thin, f.thick, strict=True):
        assert thin.cost_usdt > thick.cost_usdt
    assert_pngs(f.charts, tmp_path)


def test_t07_guard_survives_unguarded_twin_liquidated(tmp_path: Path) -> None:
    f = t07_pre_trade_guard.run(tmp_path, quick=True)
    assert f.guarded_entry < f.unguarded_entry == Decimal(t07_pre_trade_guard.WANT)
    assert f.unguarded_steps >= 2 and f.unguarded_closed > 0
    assert not f.guarded_liquidated
    assert f.guard_refusals == 3 and f.kill_switch_tripped
    assert f.final_equity["guarded"] > f.final_equity["unguarded"]
    assert_pngs(f.charts, tmp_path)

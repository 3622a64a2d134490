"""Smoke test of bench/bench_liquidation.py: a tiny run of its building blocks, asserting
correctness facts only (who is re-evaluated, liquidations, conservation), never timings."""

from __future__ import annotations

from bench.bench_liquidation import (
    AMPLITUDE_BP,
    P0,
    SYMBOL,
    build_population,
    conservation,
    crash_outcome,
    crash_price,
    mark_path,
    run_crash,
    run_population,
    time_updates,
)
from sandbox.engine import SetMarkPrice


def test_populations_share_the_at_risk_accounts_and_conserve_money() -> None:
    small = build_population(100, at_risk=20)
    large = build_population(1_000, at_risk=20, seed=2)
    for pop in (small, large):
        cash, expected, net = conservation(pop.exchange)
        assert cash == expected and net == 0
        positions = [
            acc.positions[SYMBOL].size
            for acc in pop.exchange.accounts.values()
            if SYMBOL in acc.positions and acc.positions[SYMBOL].size
        ]
        assert len(positions) == pop.accounts
    assert small.at_risk == large.at_risk and len(small.at_risk) == 20
    for account_id in small.at_risk:
        assert small.exchange.account_view(account_id) == large.exchange.account_view(account_id)


def test_mark_updates_reevaluate_only_and_all_of_the_at_risk_accounts() -> None:
    path = mark_path(50, P0 * AMPLITUDE_BP // 10_000)
    assert max(abs(p - P0) for p in path) == P0 * AMPLITUDE_BP // 10_000
    seen = []
    for accounts in (100, 1_000):
        pop = build_population(accounts, at_risk=20)
        ex = pop.exchange
        ex.evaluations.clear()
        result = time_updates(ex, SYMBOL, path)
        assert set(ex.evaluations) == set(pop.at_risk)
        assert result["events"].get("MarginCall", 0) > 0
        assert result["events"].get("LiquidationStarted", 0) == 0
        assert "Rejected" not in result["events"]
        cash, expected, net = conservation(ex)
        assert cash == expected and net == 0
        seen.append((dict(ex.evaluations), result["events"]))
    assert seen[0] == seen[1]


def test_run_population_reports_identical_reevaluations() -> None:
    small = run_population(100, 20, 50, 1, scans=1)
    large = run_population(1_000, 20, 50, 1, scans=1)
    assert small["evaluated"] == large["evaluated"]
    assert set(large["evaluated"]) == set(large["at_risk"])
    assert small["btc"]["events"] == large["btc"]["events"]
    assert small["conserved"] and large["conserved"]
    assert large["indexed"] == 1_000


def test_crash_liquidates_exactly_the_high_leverage_accounts() -> None:
    pop = build_population(500, at_risk=0, high_leverage=50)
    before = conservation(pop.exchange)
    events = pop.exchange.submit(SetMarkPrice(SYMBOL, crash_price()))
    out = crash_outcome(pop, events, before)
    assert out["rejected"] == 0
    assert out["liquidations"] == out["finished"] == 50
    assert out["liquidated_as_expected"]
    assert out["backstop_steps"] > 0 and out["book_lots"] > 0 and out["takeover_lots"] > 0
    assert out["adl_lots"] == 0
    assert out["conserved"] and out["cash"] == out["expected_cash"] and out["net_position"] == 0
    for account_id in pop.high_leverage:
        view = pop.exchange.account_view(account_id)
        assert not view.in_liquidation and all(p.size == 0 for p in view.positions)


def test_run_crash_checks_conservation() -> None:
    out = run_crash(500, 10, 1)
    assert out["liquidations"] == out["expected_liquidations"] == 50
    assert out["liquidated_as_expected"] and out["conserved"]

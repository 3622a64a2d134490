"""Latency of a pre-trade risk check against the number of positions held.

    .venv/bin/python bench/bench_risk.py [--quick] [--repeat R]

Portfolios of 1, 10 and 50 positions (half long, half short, 0.1-2 BTC-sized positions at
5-20x across synthetic markets with the BTC-PERP rules, one resting order in every other
market), each checked for the same proposed order (a 0.1 BTC market buy that passes every
limit: margin ratio, available, leverage and liquidation distance are set but not hit, so no
resize search runs). Without stress: ``RiskChecker.check`` with the limits above. With stress:
the same call with ``stress=True`` and ``survive_stress`` (every scenario on the post-trade
account). Time per check is the best of ``--repeat`` runs of ``N`` back-to-back checks (mean
over the run), in microseconds. "new account" passes a new Portfolio object to every check
(collateral differs), so the checker's cache of the last portfolio never hits, while each
unchanged position's conversion to engine units (memoized by value) does: a bot that re-fetches
its account before every check. "new positions" also changes every position's size, so nothing
is reused (the cost right after fills everywhere).
Bars (issue): 10 positions without stress < 50 µs, with stress < 1 ms. The growth ratio is
50-position / 10-position time (linear would be 5x).
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import replace
from decimal import Decimal

from perpbot.risk import (
    MarketRules,
    OpenOrderSnapshot,
    Portfolio,
    PositionSnapshot,
    ProposedOrder,
    RiskChecker,
    RiskLimits,
)
from perpbot.risk.margin import build_brackets, money_from_decimal, rate_from_decimal

D = Decimal
SIZES = (1, 10, 50)
BAR_PLAIN_US = 50.0
BAR_STRESS_US = 1000.0
ROWS = (
    ("50000", 125, "0.004"),
    ("600000", 100, "0.005"),
    ("3000000", 75, "0.0065"),
    ("12000000", 50, "0.01"),
    ("70000000", 25, "0.02"),
    ("100000000", 20, "0.025"),
)
BRACKETS = build_brackets(
    [(money_from_decimal(c), lev, rate_from_decimal(r)) for c, lev, r in ROWS]
)


def rules(n: int) -> dict[str, MarketRules]:
    return {
        f"M{i}-PERP": MarketRules(
            symbol=f"M{i}-PERP",
            tick_size=D("0.1"),
            lot_size=D("0.001"),
            brackets=BRACKETS,
            maker_fee=D("0.0002"),
            taker_fee=D("0.0005"),
            min_qty=D("0.001"),
            min_notional=D("100"),
            funding_interval_ms=8 * 3_600_000,
        )
        for i in range(n)
    }


def portfolio(n: int) -> tuple[Portfolio, dict[str, Decimal]]:
    positions = []
    orders = []
    marks = {}
    for i in range(n):
        symbol = f"M{i}-PERP"
        mark = D(60000 + 37 * i)
        marks[symbol] = mark
        size = D(100 + (i * 73) % 1900) / 1000 * (1 if i % 2 == 0 else -1)
        entry = mark + D(i % 7 - 3) * 50
        positions.append(PositionSnapshot(symbol, size, entry, 5 + i % 16))
        if i % 2:
            orders.append(OpenOrderSnapshot(symbol, "BUY", D("0.05"), mark - 500))
    collateral = D(12_000) * n  # ~20% of the gross notional: liquidation 10-30% away
    return Portfolio(collateral, tuple(positions), tuple(orders), {}), marks


def time_checks(
    checker: RiskChecker,
    p: Portfolio,
    marks: dict[str, Decimal],
    n: int,
    stress: bool,
    repeat: int,
    fresh: str = "",
) -> float:
    """Mean µs per check (best of ``repeat`` runs). ``fresh="account"``: every check gets a new
    portfolio object (collateral differs by a cent, positions equal), so the checker's cache of
    the last snapshot never hits, but each position's conversion (memoized by value) does: a
    re-fetched account whose positions did not change. ``fresh="positions"``: every position
    differs too (sizes move by one lot per check): nothing is reused."""
    order = ProposedOrder("M0-PERP", "BUY", D("0.1"))
    if fresh == "positions":
        copies = [
            replace(
                p,
                collateral=p.collateral + D(i) / 100,
                positions=tuple(
                    replace(x, size=x.size + D(i % 7) / 1000 * (1 if x.size > 0 else -1))
                    for x in p.positions
                ),
            )
            for i in range(n)
        ]
    elif fresh == "account":
        copies = [replace(p, collateral=p.collateral + D(i) / 100) for i in range(n)]
    else:
        copies = [p] * n
    for _ in range(min(n, 50)):  # warm up
        checker.check(p, order, marks=marks, stress=stress)
    best = float("inf")
    for _ in range(repeat):
        gc.collect()  # as timeit does: a collection triggered by earlier work is not the check's
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for q in copies:
                checker.check(q, order, marks=marks, stress=stress)
            best = min(best, (time.perf_counter_ns() - start) / n / 1000)
        finally:
            gc.enable()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer checks, one run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n_plain, n_stress = (300, 100) if args.quick else (3000, 500)
    repeat = 1 if args.quick else args.repeat
    checker_rules = rules(max(SIZES))
    results: dict[tuple[int, bool], float] = {}
    fresh: dict[int, float] = {}
    cold: dict[int, float] = {}
    for stress in (False, True):
        limits = RiskLimits(
            max_margin_ratio=D("0.9"),
            min_available=D(0),
            max_leverage=D(50),
            min_liquidation_distance=D("0.001"),
            survive_stress=stress,
            stress_shock=D("0.02"),
        )
        checker = RiskChecker(checker_rules, limits)
        for n in SIZES:
            p, marks = portfolio(n)
            report = checker.check(
                p, ProposedOrder("M0-PERP", "BUY", D("0.1")), marks=marks, stress=stress
            )
            assert report.decision == "allow", (n, stress, report.reasons)
            count = n_stress if stress else n_plain
            results[n, stress] = time_checks(checker, p, marks, count, stress, repeat)
            if not stress:
                fresh[n] = time_checks(checker, p, marks, count, stress, repeat, "account")
                cold[n] = time_checks(checker, p, marks, count, stress, repeat, "positions")
    print(
        f"{'positions':>9}  {'no stress (µs)':>15}  {'new account':>12}  "
        f"{'new positions':>13}  {'stress (µs)':>12}"
    )
    for n in SIZES:
        print(
            f"{n:>9}  {results[n, False]:>15.1f}  {fresh[n]:>12.1f}  {cold[n]:>13.1f}  "
            f"{results[n, True]:>12.1f}"
        )
    for stress in (False, True):
        label = "stress" if stress else "no stress"
        growth = results[50, stress] / results[10, stress]
        print(f"growth 10 -> 50 positions ({label}): {growth:.2f}x (linear: 5x)")
    plain, stressed = results[10, False], results[10, True]
    print(
        f"bar: 10 positions without stress {plain:.1f} µs vs < {BAR_PLAIN_US:.0f} µs: "
        f"{'PASS' if plain < BAR_PLAIN_US else 'FAIL'}"
    )
    print(
        f"bar: 10 positions with stress {stressed:.1f} µs vs < {BAR_STRESS_US:.0f} µs: "
        f"{'PASS' if stressed < BAR_STRESS_US else 'FAIL'}"
    )


if __name__ == "__main__":
    main()

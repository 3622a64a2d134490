"""Smoke test of bench/bench_risk.py: its portfolios pass every limit (so no resize search is
timed) and each timing mode runs; untimed assertions only."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bench.bench_risk import portfolio, rules, time_checks
from perpbot.risk import ProposedOrder, RiskChecker, RiskLimits


@pytest.mark.parametrize("stress", [False, True])
@pytest.mark.parametrize("n", [1, 10])
def test_bench_portfolios_are_allowed_in_every_mode(n: int, stress: bool) -> None:
    limits = RiskLimits(
        max_margin_ratio=Decimal("0.9"),
        min_available=Decimal(0),
        max_leverage=Decimal(50),
        min_liquidation_distance=Decimal("0.001"),
        survive_stress=stress,
        stress_shock=Decimal("0.02"),
    )
    checker = RiskChecker(rules(n), limits)
    p, marks = portfolio(n)
    report = checker.check(p, ProposedOrder("M0-PERP", "BUY", Decimal("0.1")), marks=marks)
    assert report.decision == "allow", report.reasons
    assert len(p.positions) == n
    for mode in ("", "account", "positions"):
        assert time_checks(checker, p, marks, 8, stress, 1, mode) > 0

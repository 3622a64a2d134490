"""Stress scenarios: independent shocks, the correlated joint shock, funding spike, mark band."""

from __future__ import annotations

from decimal import Decimal

from perpbot.risk import (
    Portfolio,
    PositionSnapshot,
    ProposedOrder,
    RiskChecker,
    RiskLimits,
)
from tests.risk import engine_rules

D = Decimal
BTC, ETH = "BTC-PERP", "ETH-PERP"
RULES = engine_rules()
MARKS = {BTC: D(60000), ETH: D(3000)}
# long 1 BTC / short 20 ETH at 20x: 60,000 USDT a side, 9,000 USDT of collateral.
HEDGE = Portfolio(
    D(9000),
    (PositionSnapshot(BTC, D(1), D(60000), 20), PositionSnapshot(ETH, D(-20), D(3000), 20)),
    (),
    {BTC: 20, ETH: 20},
)


def test_hedge_survives_each_shock_but_not_the_joint_one() -> None:
    checker = RiskChecker(RULES, RiskLimits())
    report = checker.check(HEDGE, ProposedOrder(BTC, "BUY", D("0.002")), marks=MARKS, stress=True)
    assert report.stress is not None
    by_name = {s.name: s for s in report.stress.scenarios}
    assert set(by_name) == {
        "shock:BTC-PERP",
        "shock:ETH-PERP",
        "joint",
        "funding_spike",
        "mark_band",
    }
    # BTC -10% alone: 9,000 - 0.06 (taker fee on 120) + 1.002 x (54,000 - 60,000) > MM 470.54
    btc = by_name["shock:BTC-PERP"]
    assert btc.survives and btc.marks == {BTC: D(54000)}
    assert btc.equity == D("2987.94") and btc.maintenance_margin == D("470.54")
    assert by_name["shock:ETH-PERP"].survives
    # both legs lose together: 9,000 - 6,012 - 6,000 < 0
    joint = by_name["joint"]
    assert not joint.survives and joint.marks == {BTC: D(54000), ETH: D(3300)}
    assert joint.equity < 0 and joint.margin_ratio is None
    assert report.stress.worst is joint and not report.stress.survives
    # as a limit: the order that adds to the BTC leg is refused (nothing passes the joint shock)
    strict = RiskChecker(RULES, RiskLimits(survive_stress=True))
    refused = strict.check(HEDGE, ProposedOrder(BTC, "BUY", D("0.002")), marks=MARKS)
    assert refused.decision == "reject"
    assert [r.code for r in refused.reasons] == ["STRESS_LIQUIDATION"]
    assert refused.reasons[0].details["scenario"] == "joint"


def test_correlation_below_one_softens_the_joint_shock() -> None:
    # the worse leg moves its full 10%, the other 0.4 x 10%: 9,000 - 6,000 - 2,400 > MM
    limits = RiskLimits(stress_correlation=D("0.4"), survive_stress=True)
    report = RiskChecker(RULES, limits).check(
        HEDGE, ProposedOrder(ETH, "SELL", D("0.01")), marks=MARKS, stress=True
    )
    assert report.stress is not None
    joint = {s.name: s for s in report.stress.scenarios}["joint"]
    assert joint.survives and report.stress.survives and report.decision == "allow"


def test_per_market_shocks_funding_spike_and_band() -> None:
    limits = RiskLimits(
        stress_shocks={BTC: D("0.02"), ETH: D("0.3")},
        funding_spike=D("0.01"),
        funding_horizon_hours=D(24),
        mark_index_band=D("0.01"),
    )
    report = RiskChecker(RULES, limits).check(
        HEDGE, ProposedOrder(BTC, "SELL", D("0.1"), D(60000)), marks=MARKS, stress=True
    )
    assert report.stress is not None
    by_name = {s.name: s for s in report.stress.scenarios}
    assert by_name["shock:BTC-PERP"].marks == {BTC: D(58800)}
    assert by_name["shock:ETH-PERP"].marks == {ETH: D(3900)}
    assert not by_name["shock:ETH-PERP"].survives
    # funding: (54,000 + 60,000) x 1% x 3 intervals = 3,420 paid
    spike = by_name["funding_spike"]
    assert spike.funding_paid == D(3420) and spike.survives
    band = by_name["mark_band"]
    assert band.marks == {BTC: D(59400), ETH: D(3030)} and band.survives
    assert report.stress.worst.name == "joint"  # ETH +30% and BTC -0.02 x 1 (rho = 1)


def test_flat_account_survives() -> None:
    flat = Portfolio(D(1000))
    report = RiskChecker(RULES, RiskLimits(survive_stress=True)).check(
        flat, ProposedOrder(BTC, "BUY", D("0.01"), D(59000)), marks=MARKS, stress=True
    )
    assert report.decision == "allow" and report.stress is not None and report.stress.survives

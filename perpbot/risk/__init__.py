"""Pre-trade risk: pure functions over a portfolio snapshot (no I/O).

:class:`RiskChecker` computes what the sandbox engine would (same integer margin math, from
:mod:`perpbot.risk.margin`) and decides allow / reject / resize with machine-readable reasons;
:mod:`perpbot.risk.stress` runs the stress scenarios.
"""

from perpbot.risk.checker import (
    REASON_CODES,
    AccountMetrics,
    AccountState,
    LiquidationBand,
    LiquidationDistance,
    MarketRules,
    OpenOrderSnapshot,
    Portfolio,
    PositionSnapshot,
    ProposedOrder,
    RiskChecker,
    RiskLimits,
    RiskReason,
    RiskReport,
)
from perpbot.risk.stress import StressReport, StressScenario

__all__ = [
    "REASON_CODES",
    "AccountMetrics",
    "AccountState",
    "LiquidationBand",
    "LiquidationDistance",
    "MarketRules",
    "OpenOrderSnapshot",
    "Portfolio",
    "PositionSnapshot",
    "ProposedOrder",
    "RiskChecker",
    "RiskLimits",
    "RiskReason",
    "RiskReport",
    "StressReport",
    "StressScenario",
]

"""The alert value every detector emits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """How urgent an alert is: ``info`` (worth a look), ``warning`` (act soon),
    ``critical`` (a cascade or abuse is under way)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Alert:
    """One detector firing at ``ts`` (simulated ms, or wall ms for rate limits).

    ``values`` holds the numbers that explain it as strings (exact decimals for prices and
    money, rounded decimals for statistics such as a baseline rate)."""

    detector: str
    severity: Severity
    ts: int
    message: str
    market: str | None = None
    account: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)

    def to_json(self, alert_id: int | None = None) -> dict[str, Any]:
        """The wire form (REST and the ``alerts`` channel)."""
        out: dict[str, Any] = {
            "detector": self.detector,
            "severity": str(self.severity),
            "ts": self.ts,
            "market": self.market,
            "account": self.account,
            "message": self.message,
            "values": dict(self.values),
        }
        if alert_id is not None:
            out = {"id": alert_id, **out}
        return out


def fmt(x: float) -> str:
    """A statistic as a short decimal string (not money)."""
    return f"{x:.6g}"

"""Stress scenarios over a post-trade account: does it survive the shocks it fears?

Every scenario moves marks *against* the account's positions (a long's mark down, a short's
up; ticks rounded against the account) and re-applies the engine's liquidation condition
``equity <= MM`` (docs/mechanics.md §13) with the shared margin math:

* ``shock:<market>``: that market alone moves by its shock (``RiskLimits.stress_shocks`` or
  ``stress_shock``), every other mark unchanged;
* ``joint``: every market moves at once. The market whose own shock costs most moves by its full
  shock, the others by ``stress_correlation`` x theirs (1 = correlations forced to one). A long
  BTC / short ETH "hedge" that survives each shock alone can fail here: in a crisis both legs can
  lose together, and the small leg becomes the trigger;
* ``funding_spike``: every position pays ``funding_spike`` per funding interval, against it, for
  ``funding_horizon_hours`` (marks unchanged);
* ``mark_band``: every mark moves ``mark_index_band`` against the account (the mark leaving the
  index by the band the venue allows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from perpbot.risk.margin import (
    RATE_SCALE,
    ceil_div,
    maintenance_margin,
    margin_ratio,
    money_to_decimal,
    rate_from_decimal,
    rate_to_decimal,
)

if TYPE_CHECKING:
    from perpbot.risk.checker import RiskLimits, _Pos, _Totals

__all__ = ["StressReport", "StressScenario", "run_stress"]

_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class StressScenario:
    """One scenario's outcome: the marks it used, post-shock equity, MM and ratio (USDT, ratio
    as a fraction), and whether the account stays out of liquidation (``equity > MM``)."""

    name: str
    marks: dict[str, Decimal]
    equity: Decimal
    maintenance_margin: Decimal
    margin_ratio: Decimal | None
    survives: bool
    funding_paid: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class StressReport:
    """All scenarios, the worst (least ``equity - MM``), and whether every one is survived."""

    scenarios: tuple[StressScenario, ...]
    worst: StressScenario
    survives: bool


def _shocked(mark: int, size: int, rate: int) -> int:
    """``mark`` moved by ``rate`` against a position of ``size`` (ticks, rounded against it)."""
    if size > 0:
        return max(1, mark * (RATE_SCALE - rate) // RATE_SCALE)
    return ceil_div(mark * (RATE_SCALE + rate), RATE_SCALE)


def _part(pos: _Pos, mark: int) -> tuple[int, int]:
    """(unrealized PnL, MM) of ``pos`` at ``mark``."""
    value = pos.size * mark * pos.market.factor
    return value - pos.cost, maintenance_margin(pos.market.brackets, abs(value))


def run_stress(book: Mapping[str, _Pos], totals: _Totals, limits: RiskLimits) -> StressReport:
    """Run every scenario on the account ``book`` (engine units) with ``totals``."""
    held = [(symbol, pos) for symbol, pos in book.items() if pos.size]
    base_equity, base_mm = totals.equity, totals.mm
    scenarios: list[StressScenario] = []

    def scenario(
        name: str, marks: dict[str, int], equity: int, mm: int, paid: int = 0
    ) -> StressScenario:
        ratio = margin_ratio(mm, equity)
        out = StressScenario(
            name=name,
            marks={s: book[s].market.price(m) for s, m in marks.items()},
            equity=money_to_decimal(equity),
            maintenance_margin=money_to_decimal(mm),
            margin_ratio=None if ratio is None else rate_to_decimal(ratio),
            survives=not held or equity > mm,
            funding_paid=money_to_decimal(paid),
        )
        scenarios.append(out)
        return out

    default = rate_from_decimal(limits.stress_shock)
    shocks = {s: rate_from_decimal(v) for s, v in limits.stress_shocks.items()}
    base_parts = {symbol: _part(pos, pos.mark) for symbol, pos in held}
    losses: dict[str, int] = {}
    for symbol, pos in held:
        mark = _shocked(pos.mark, pos.size, shocks.get(symbol, default))
        upnl, mm = _part(pos, mark)
        upnl0, mm0 = base_parts[symbol]
        losses[symbol] = upnl0 - upnl + mm - mm0
        scenario(f"shock:{symbol}", {symbol: mark}, base_equity - upnl0 + upnl, base_mm - mm0 + mm)

    def joint(name: str, rate_of: Mapping[str, int]) -> None:
        equity, mm = base_equity, base_mm
        marks: dict[str, int] = {}
        for symbol, pos in held:
            mark = marks[symbol] = _shocked(pos.mark, pos.size, rate_of[symbol])
            upnl, m = _part(pos, mark)
            upnl0, mm0 = base_parts[symbol]
            equity += upnl - upnl0
            mm += m - mm0
        scenario(name, marks, equity, mm)

    if held:
        lead = max(losses, key=lambda s: losses[s])
        rho = rate_from_decimal(limits.stress_correlation)
        joint(
            "joint",
            {
                s: shocks.get(s, default)
                if s == lead
                else shocks.get(s, default) * rho // RATE_SCALE
                for s, _ in held
            },
        )
        spike = rate_from_decimal(limits.funding_spike)
        paid = 0
        for _symbol, pos in held:
            intervals = limits.funding_horizon_hours * _HOUR_MS / pos.market.interval_ms
            per = ceil_div(abs(pos.value()) * spike, RATE_SCALE)
            paid += int((per * intervals).to_integral_value(rounding="ROUND_CEILING"))
        scenario("funding_spike", {}, base_equity - paid, base_mm, paid)
        band = rate_from_decimal(limits.mark_index_band)
        joint("mark_band", {s: band for s, _ in held})
    else:
        scenario("none", {}, base_equity, base_mm)
    worst = min(scenarios, key=lambda s: s.equity - s.maintenance_margin)
    return StressReport(tuple(scenarios), worst, all(s.survives for s in scenarios))

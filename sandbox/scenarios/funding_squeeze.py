"""Funding squeeze on a crowded side: 30 days of funding in accelerated time.

Several accounts crowd into longs while one holds the short. The crowd keeps the perpetual
trading rich: a ``mark_divergence`` fault centres the liquidity agents' quotes ``premium_bps``
above the index for the whole run, so the sampled premium, and with it the funding rate, stay
positive. Every settlement the longs pay and the short receives; across *all* accounts (market
makers and noise traders included) the payments net to exactly the residue the insurance fund
takes, to the money unit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from .base import Outcome, Scenario, Venue
from .runner import Context


@dataclass(frozen=True, slots=True)
class Params:
    market: str = "BTC-PERP"
    hours: int = 720  # 30 days
    advance_hours: int = 48  # one admin advance (<= 500 market steps) per two simulated days
    funding_interval_hours: int = 8
    premium_bps: int = 15
    crowd: int = 3
    crowd_deposit: str = "20000"
    crowd_qty: str = "0.3"
    short_deposit: str = "60000"
    short_qty: str = "0.3"
    warmup_ms: int = 60_000


FULL = Params()
QUICK = replace(FULL, hours=3, advance_hours=3, funding_interval_hours=1, crowd=2)


def duration_ms(p: Params) -> int:
    return p.warmup_ms + p.hours * 3_600_000


async def script(ctx: Context, p: Params) -> Outcome:
    m = p.market
    longs = [await ctx.actor(f"long{i + 1}", p.crowd_deposit) for i in range(p.crowd)]
    short = await ctx.actor("short", p.short_deposit)
    await ctx.advance(p.warmup_ms, step_ms=p.warmup_ms)
    for client in longs:
        await client.create_order(m, "BUY", p.crowd_qty)
    await short.create_order(m, "SELL", p.short_qty)
    ctx.note(f"{p.crowd} longs vs 1 short; perp trades {p.premium_bps} bps rich")
    await ctx.fault_plan([{"kind": "mark_divergence", "market": m, "bps": p.premium_bps}])
    settled_before = ctx.funding_audit.settlements
    await ctx.advance(p.hours * 3_600_000, step_ms=p.advance_hours * 3_600_000)
    await ctx.fault_plan([])
    await ctx.collect()

    rec = ctx.recorder
    paid = {name: sum((a for _, a in pays), Decimal(0)) for name, pays in rec.funding.items()}
    crowd_paid = sum((v for k, v in paid.items() if k.startswith("long")), Decimal(0))
    short_paid = paid.get("short", Decimal(0))
    rates = [Decimal(r.rate) for r in await short.funding_history(m)]
    audit = ctx.funding_audit
    settlements = audit.settlements - settled_before
    findings = {
        "simulated_days": round(p.hours / 24, 3),
        "settlements": settlements,
        "crowd_paid_usdt": str(crowd_paid),
        "short_paid_usdt": str(short_paid),
        "mean_rate": str(round(sum(rates, Decimal(0)) / len(rates), 10)) if rates else None,
        "all_accounts_paid_units": audit.paid_units,
        "insurance_residue_units": audit.residue_units,
        "zero_sum_imbalance_units": audit.imbalance_units,
        "liquidation_steps": sum(1 for e in rec.liquidations if e.kind == "step"),
    }
    rec.liquidations.clear()
    checks = {
        "crowded_side_pays": crowd_paid > 0,
        "other_side_receives": short_paid < 0,
        "zero_sum_to_the_unit": audit.imbalance_units == 0,
        "every_interval_settled": settlements >= p.hours // p.funding_interval_hours - 1,
    }
    return Outcome(findings, checks)


SCENARIO = Scenario(
    name="funding_squeeze",
    title="Funding squeeze on a crowded side",
    description=(__doc__ or "").strip(),
    full=FULL,
    quick=QUICK,
    venue=lambda p: Venue(
        markets=(p.market,), depth="thick", funding_interval_hours=p.funding_interval_hours
    ),
    duration_ms=duration_ms,
    script=script,
    expectations={
        "crowded_side_pays": "the crowded longs pay funding in total",
        "other_side_receives": "the short receives funding in total",
        "zero_sum_to_the_unit": "all payments minus the insurance residue net to 0 money units",
        "every_interval_settled": "one settlement per funding interval",
    },
)

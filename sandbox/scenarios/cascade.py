"""Correlated cascade through shared collateral: a crash in market A liquidates market B.

One cross-margin account holds a long in market B (the bigger position) and a long in market A.
Market A's index crashes ``crash_pct``; market B's follows only ``follow_pct`` (correlations jump
toward one, but B alone falls too little to hurt). A's loss eats the collateral both positions
share, the account's margin ratio crosses 1, and the incremental liquidation closes the largest
maintenance contributor first: market B. A second account, long B only on its own collateral,
rides the same B move unharmed, which shows the liquidation in B came through the shared
collateral and not from B's own price.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from .base import Outcome, Scenario, Venue
from .runner import Context


@dataclass(frozen=True, slots=True)
class Params:
    market_a: str = "ETH-PERP"
    market_b: str = "BTC-PERP"
    step_ms: int = 5_000
    warmup_ms: int = 60_000
    deposit: str = "1000"
    qty_a: str = "2"  # ETH: about 6,000 USDT
    qty_b: str = "0.25"  # BTC: about 15,000 USDT
    leverage: int = 50
    crash_pct: str = "15"
    follow_pct: str = "3"
    crash_ms: int = 120_000
    aftermath_ms: int = 600_000


FULL = Params()
QUICK = replace(FULL, warmup_ms=20_000, aftermath_ms=60_000)


def duration_ms(p: Params) -> int:
    return p.warmup_ms + 20_000 + p.crash_ms + p.aftermath_ms


async def script(ctx: Context, p: Params) -> Outcome:
    a, b = p.market_a, p.market_b
    cross = await ctx.actor("cross", p.deposit)
    solo = await ctx.actor("solo_b", p.deposit)
    for client in (cross, solo):
        for market in (a, b):
            await ctx.set_leverage(client, market, p.leverage)
    await ctx.advance(p.warmup_ms, step_ms=p.step_ms)
    await cross.create_order(b, "BUY", p.qty_b)
    await cross.create_order(a, "BUY", p.qty_a)
    await solo.create_order(b, "BUY", p.qty_b)
    ctx.note("cross: long A and B on shared collateral; solo_b: long B alone")
    await ctx.advance(20_000, step_ms=p.step_ms)

    start_a = Decimal((await cross.ticker(a)).index)
    start_b = Decimal((await cross.ticker(b)).index)
    crash_ts = ctx.now_ms
    ctx.note(f"{a} index -{p.crash_pct}%, {b} -{p.follow_pct}% (correlation toward one)")
    crash, follow = Decimal(p.crash_pct) / 100, Decimal(p.follow_pct) / 100
    n = max(1, p.crash_ms // p.step_ms)
    for k in range(1, n + 1):
        await ctx.pin_index(a, start_a * (1 - crash * k / n))
        await ctx.pin_index(b, start_b * (1 - follow * k / n))
        await ctx.advance(p.step_ms, step_ms=p.step_ms)
    await ctx.advance(p.aftermath_ms, step_ms=max(p.step_ms, p.aftermath_ms // 60))
    await ctx.collect()

    rec = ctx.recorder
    in_b = ctx.liquidated("cross", b)
    in_a = ctx.liquidated("cross", a)
    solo_steps = ctx.liquidated("solo_b")
    rec.liquidations.clear()
    first_b = min((e.ts for e in in_b), default=None)
    findings = {
        f"{a}_index_drop_pct": str(p.crash_pct),
        f"{b}_index_drop_pct": str(p.follow_pct),
        "cross_liquidation_steps_in_b": len(in_b),
        "cross_liquidation_steps_in_a": len(in_a),
        "solo_b_liquidation_steps": len(solo_steps),
        "first_b_liquidation_minutes_after_crash": None
        if first_b is None
        else round((first_b - crash_ts) / 60_000, 2),
        "cross_equity_after": str((await cross.account()).equity),
        "solo_b_equity_after": str((await solo.account()).equity),
    }
    checks = {
        "b_liquidated_after_a_crash": first_b is not None and first_b >= crash_ts,
        "b_alone_survives": not solo_steps,
    }
    return Outcome(findings, checks)


SCENARIO = Scenario(
    name="cascade",
    title="Correlated cascade through shared collateral",
    description=(__doc__ or "").strip(),
    full=FULL,
    quick=QUICK,
    venue=lambda p: Venue(markets=(p.market_b, p.market_a), depth="thick"),
    duration_ms=duration_ms,
    script=script,
    expectations={
        "b_liquidated_after_a_crash": "a liquidation in market B follows the crash in market A",
        "b_alone_survives": "the same B position on its own collateral is not liquidated",
    },
)

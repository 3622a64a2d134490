"""Flash crash into a thin book: the index drops, the book thins out, a whale dumps.

The script pins every index source of the market on a path (down ``crash_pct`` over
``crash_ms``, flat for ``hold_ms``, back up ``recover_pct`` over ``recover_ms``), thins the
book with a ``thin_book`` fault for the crash and the hold, and has a whale sell market orders
into it. A leveraged long (``long_qty`` on ``long_deposit`` USDT) is liquidated by the *mark*,
which moves less than the last trade: the last trade prints the whale's sweeps through the thin
book, the mark (median of index-based prices and last) stays near the index. The index then
stays pinned at the recovered level for ``aftermath_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from perpbot.errors import PerpbotError

from .base import Outcome, Scenario, Venue
from .runner import Context


@dataclass(frozen=True, slots=True)
class Params:
    market: str = "BTC-PERP"
    step_ms: int = 5_000
    warmup_ms: int = 120_000
    long_deposit: str = "500"
    long_qty: str = "0.15"
    long_leverage: int = 20
    crash_pct: str = "9"
    crash_ms: int = 60_000
    hold_ms: int = 60_000
    recover_pct: str = "4"
    recover_ms: int = 120_000
    aftermath_ms: int = 600_000
    thin_factor: str = "0.2"
    whale_deposit: str = "5000000"
    whale_qty: str = "2"
    whale_orders: int = 8


FULL = Params()
QUICK = replace(FULL, warmup_ms=30_000, hold_ms=30_000, recover_ms=30_000, aftermath_ms=30_000)


def duration_ms(p: Params) -> int:
    return p.warmup_ms + 30_000 + p.crash_ms + p.hold_ms + p.recover_ms + p.aftermath_ms


async def script(ctx: Context, p: Params) -> Outcome:
    m = p.market
    long = await ctx.actor("long", p.long_deposit)
    whale = await ctx.actor("whale", p.whale_deposit, track=False)  # off the equity chart
    await ctx.set_leverage(long, m, p.long_leverage)
    await ctx.set_leverage(whale, m, 20)
    await ctx.advance(p.warmup_ms, step_ms=p.step_ms)
    await long.create_order(m, "BUY", p.long_qty)
    ctx.note(f"long buys {p.long_qty} at {p.long_leverage}x")
    await ctx.advance(30_000, step_ms=p.step_ms)

    p0 = (await long.ticker(m)).index
    start = Decimal(p0)
    equity_before = Decimal((await long.account()).equity)
    insurance_before = ctx.recorder.insurance[m][-1]
    await ctx.pin_index(m, start)
    await ctx.fault_plan(
        [
            {
                "kind": "thin_book",
                "market": m,
                "factor": p.thin_factor,
                "end_ms": p.crash_ms + p.hold_ms,
            }
        ]
    )
    ctx.note(f"crash: index -{p.crash_pct}% in {p.crash_ms // 1000} s, book x{p.thin_factor}")
    crash = Decimal(p.crash_pct) / 100
    n = max(1, p.crash_ms // p.step_ms)
    whale_fills = Decimal(0)
    for k in range(1, n + 1):
        await ctx.pin_index(m, start * (1 - crash * k / n))
        if k <= p.whale_orders:
            try:
                result = await whale.create_order(m, "SELL", p.whale_qty)
                whale_fills += Decimal(result.order.filled_qty)
            except PerpbotError:
                pass  # e.g. nothing left inside the market band: the whale tries again
        await ctx.advance(p.step_ms, step_ms=p.step_ms)
    await ctx.advance(p.hold_ms, step_ms=p.step_ms)
    bottom = start * (1 - crash)
    target = start * (1 - crash + Decimal(p.recover_pct) / 100)
    ctx.note("recovery")
    n = max(1, p.recover_ms // p.step_ms)
    for k in range(1, n + 1):
        await ctx.pin_index(m, bottom + (target - bottom) * k / n)
        await ctx.advance(p.step_ms, step_ms=p.step_ms)
    ctx.note("index holds at the recovered level")
    await ctx.advance(p.aftermath_ms, step_ms=max(p.step_ms, p.aftermath_ms // 60))
    await ctx.collect()

    rec = ctx.recorder
    lasts = [x for x in rec.last[m] if x is not None]
    mark_min, last_min, index_min = min(rec.mark[m]), min(lasts), min(rec.index[m])
    mark_drop = (start - mark_min) / start * 100
    last_drop = (start - last_min) / start * 100
    steps = ctx.liquidated("long", m)
    rec.liquidations.clear()  # the runner collects again at the end
    first = min((e.ts for e in steps), default=None)
    findings = {
        "start_index": str(start),
        "index_min": str(index_min),
        "mark_min": str(mark_min),
        "last_min": str(last_min),
        "mark_drop_pct": str(round(mark_drop, 3)),
        "last_drop_pct": str(round(last_drop, 3)),
        "whale_sold": str(whale_fills),
        "long_liquidation_steps": len(steps),
        "long_first_liquidation_minute": None
        if first is None
        else round((first - ctx.t0) / 60_000, 2),
        "long_equity_before": str(equity_before),
        "long_equity_after": str((await long.account()).equity),
        "insurance_fund_before": str(insurance_before),
        "insurance_fund_after": str(rec.insurance[m][-1]),
    }
    checks = {
        "long_liquidated": bool(steps),
        "mark_moved_less_than_last": mark_drop < last_drop,
        "whale_sold_into_thin_book": whale_fills > 0,
    }
    return Outcome(findings, checks)


SCENARIO = Scenario(
    name="flash_crash",
    title="Flash crash into a thin book",
    description=(__doc__ or "").strip(),
    full=FULL,
    quick=QUICK,
    venue=lambda p: Venue(markets=(p.market,), depth="thin"),
    duration_ms=duration_ms,
    script=script,
    expectations={
        "long_liquidated": "the leveraged long is liquidated (by the mark)",
        "mark_moved_less_than_last": "the mark's drop is smaller than the last trade's",
        "whale_sold_into_thin_book": "the whale's market sells filled in the thinned book",
    },
)

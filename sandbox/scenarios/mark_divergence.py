"""Mark/index divergence, and an index that shrugs off a bad source.

Three windows of faults, one after the other, each ``window_ms`` long:

1. ``mark_divergence``: the liquidity agents quote ``bps`` above the index, so the mid, the last
   trades and the basis average move up; the mark (median of the funding-based price, index +
   30 s average basis, and last) follows them while the index does not move.
2. ``outlier_index_source``: one source quotes ``outlier_pct`` percent high; the index drops it
   (outlier band) and barely moves.
3. ``stale_index_source`` on two of the three sources: their last values freeze, the engine
   drops them once older than ``stale_after`` (10 s), fewer than two sources remain, and the
   index is flagged degraded (it holds its value) until the window ends.

A leveraged short sees its margin ratio rise in window 1 although the index did not move.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from .base import Outcome, Scenario, Venue
from .runner import Context


@dataclass(frozen=True, slots=True)
class Params:
    market: str = "BTC-PERP"
    step_ms: int = 5_000
    warmup_ms: int = 60_000
    window_ms: int = 300_000
    bps: int = 100
    outlier_source: str = "spot-b"
    outlier_pct: str = "5"
    stale_sources: tuple[str, ...] = ("spot-b", "spot-c")
    short_deposit: str = "1000"
    short_qty: str = "0.2"
    short_leverage: int = 20


FULL = Params()
QUICK = replace(FULL, warmup_ms=40_000, window_ms=60_000)


def duration_ms(p: Params) -> int:
    return p.warmup_ms + 4 * p.window_ms


def _bps(a: Decimal, b: Decimal) -> Decimal:
    return (a - b) / b * 10_000


async def script(ctx: Context, p: Params) -> Outcome:
    m = p.market
    short = await ctx.actor("short", p.short_deposit)
    await ctx.set_leverage(short, m, p.short_leverage)
    await ctx.advance(p.warmup_ms // 2, step_ms=p.step_ms)
    await short.create_order(m, "SELL", p.short_qty)
    await ctx.advance(p.warmup_ms - p.warmup_ms // 2, step_ms=p.step_ms)
    w = p.window_ms
    plan = [
        {"kind": "mark_divergence", "market": m, "bps": p.bps, "end_ms": w},
        {
            "kind": "outlier_index_source",
            "market": m,
            "source": p.outlier_source,
            "pct": p.outlier_pct,
            "start_ms": w,
            "end_ms": 2 * w,
        },
        *(
            {"kind": "stale_index_source", "market": m, "source": s, "start_ms": 2 * w}
            | {"end_ms": 3 * w}
            for s in p.stale_sources
        ),
    ]
    before_ratio = ctx.recorder.margin_ratio["short"][-1] or Decimal(0)
    await ctx.fault_plan(plan)
    ctx.note(f"mark divergence {p.bps} bps")
    phase_of = ("divergence", "outlier", "stale", "after")
    gaps: dict[str, list[Decimal]] = {k: [] for k in phase_of}
    index_steps: dict[str, list[Decimal]] = {k: [] for k in phase_of}
    degraded: dict[str, int] = dict.fromkeys(phase_of, 0)
    ratios: list[Decimal] = []
    start = ctx.now_ms
    previous_index = Decimal((await short.ticker(m)).index)
    while ctx.now_ms - start < 4 * w:
        phase = phase_of[min(3, (ctx.now_ms - start) // w)]
        await ctx.advance(p.step_ms, step_ms=p.step_ms)
        t = await short.ticker(m)
        index, mark = Decimal(t.index), Decimal(t.mark)
        gaps[phase].append(_bps(mark, index))
        index_steps[phase].append(abs(_bps(index, previous_index)))
        previous_index = index
        degraded[phase] += t.index_degraded
        if phase == "divergence":
            ratio = ctx.recorder.margin_ratio["short"][-1]
            if ratio is not None:
                ratios.append(ratio)
        if ctx.now_ms - start in (w, 2 * w, 3 * w):
            ctx.note(f"{phase} window ends")
    status = await ctx.fault_status()
    fired = {f"fired_{f['index']}_{f['kind']}": f["fired"] for f in status["faults"]}
    findings = {
        "max_mark_index_gap_bps_in_divergence": str(round(max(gaps["divergence"]), 2)),
        "max_abs_gap_bps_after": str(round(max(abs(g) for g in gaps["after"]), 2)),
        "max_index_step_bps_in_outlier": str(round(max(index_steps["outlier"]), 2)),
        "degraded_samples_in_stale": degraded["stale"],
        "degraded_samples_after": degraded["after"],
        "short_margin_ratio_before": str(before_ratio),
        "short_margin_ratio_max_in_divergence": str(max(ratios, default=Decimal(0))),
        **fired,
    }
    checks = {
        "mark_diverged": max(gaps["divergence"]) >= Decimal(p.bps) / 2,
        "mark_converged_after": max(abs(g) for g in gaps["after"]) < Decimal(p.bps) / 2,
        "outlier_ignored": max(index_steps["outlier"]) < Decimal(p.outlier_pct) * 100 / 6,
        "stale_sources_degrade_index": degraded["stale"] > 0 and degraded["after"] == 0,
    }
    return Outcome(findings, checks)


SCENARIO = Scenario(
    name="mark_divergence",
    title="Mark/index divergence and bad index sources",
    description=(__doc__ or "").strip(),
    full=FULL,
    quick=QUICK,
    venue=lambda p: Venue(markets=(p.market,), depth="thick"),
    duration_ms=duration_ms,
    script=script,
    expectations={
        "mark_diverged": "mark - index reaches at least half the injected bps",
        "mark_converged_after": "after the windows the gap is back under half the bps",
        "outlier_ignored": "the index moves less than half the outlier's weighted pull",
        "stale_sources_degrade_index": "two stale sources degrade the index only in the window",
    },
)

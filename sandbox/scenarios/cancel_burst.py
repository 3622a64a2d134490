"""Cancel burst under faults: place a ladder through dropped responses, cancel it all at once.

A market maker places ``orders`` resting limit orders while a ``drop_response`` fault applies a
share of the placements but drops their answers (``504``, an ambiguous outcome), then cancels
every order in one concurrent burst while an ``http_error`` fault answers a share of the cancels
``503 FAULT_INJECTED`` and a ``latency`` fault adds jittered delay. The SDK resolves each
ambiguous placement by its client order id (no duplicate orders) and retries the refused
cancels (they are idempotent): afterwards exactly ``orders`` were placed and none is left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from decimal import Decimal

from perpbot.errors import PerpbotError

from .base import Outcome, Scenario, Venue
from .runner import Context


@dataclass(frozen=True, slots=True)
class Params:
    market: str = "BTC-PERP"
    orders: int = 40
    qty: str = "0.01"
    first_gap_pct: str = "1"
    step_pct: str = "0.05"
    drop_rate: str = "0.2"
    drop_hold_ms: int = 50
    cancel_error_rate: str = "0.3"
    cancel_error_status: int = 503
    latency_ms: int = 2
    jitter_ms: int = 10
    fault_window_ms: int = 60_000


FULL = Params()
QUICK = replace(FULL, orders=16)


def duration_ms(p: Params) -> int:
    return 30_000 + p.fault_window_ms + 10_000


async def script(ctx: Context, p: Params) -> Outcome:
    m = p.market
    maker = await ctx.actor("maker", "100000", timeout=5.0)
    await ctx.advance(30_000, step_ms=5_000)
    tick = ctx.instruments[m].tick_size
    mid = Decimal((await maker.ticker(m)).index)
    plan = [
        {"kind": "latency", "latency_ms": p.latency_ms, "jitter_ms": p.jitter_ms},
        {
            "kind": "drop_response",
            "route": "/v1/orders",
            "methods": ["POST"],
            "rate": p.drop_rate,
            "hold_ms": p.drop_hold_ms,
            "end_ms": p.fault_window_ms,
        },
        {
            "kind": "http_error",
            "route": "/v1/orders/*",
            "methods": ["DELETE"],
            "status": p.cancel_error_status,
            "rate": p.cancel_error_rate,
            "end_ms": p.fault_window_ms,
        },
    ]
    await ctx.fault_plan(plan)
    ctx.note("faults on: dropped placements, failing cancels, latency")
    ids: list[int] = []
    place_errors = 0
    for i in range(p.orders):
        gap = Decimal(p.first_gap_pct) + Decimal(p.step_pct) * i
        price = (mid * (1 - gap / 100)).quantize(tick)
        try:
            result = await maker.create_order(m, "BUY", p.qty, price, tif="POST_ONLY")
            ids.append(result.order.order_id)
        except PerpbotError:
            place_errors += 1
    open_before = len(await maker.open_orders(m))
    ctx.note(f"{open_before} orders resting; cancel burst")

    async def cancel(order_id: int) -> bool:
        try:
            await maker.cancel_order(order_id)
        except PerpbotError:
            return False
        return True

    results = await asyncio.gather(*(cancel(i) for i in ids))
    open_after = len(await maker.open_orders(m))
    status = await ctx.fault_status()
    fired = {f["kind"]: f["fired"] for f in status["faults"]}
    await ctx.advance(p.fault_window_ms + 10_000, step_ms=10_000)
    findings = {
        "orders_requested": p.orders,
        "placements_acknowledged": len(ids),
        "placement_errors": place_errors,
        "open_before_burst": open_before,
        "cancels_ok": sum(results),
        "open_after_burst": open_after,
        "dropped_placement_responses": fired.get("drop_response", 0),
        "injected_cancel_errors": fired.get("http_error", 0),
        "delayed_requests": fired.get("latency", 0),
    }
    checks = {
        "no_duplicate_orders": open_before == p.orders == len(set(ids)),
        "all_canceled": open_after == 0 and all(results),
        "faults_fired": fired.get("drop_response", 0) > 0 and fired.get("http_error", 0) > 0,
    }
    return Outcome(findings, checks)


SCENARIO = Scenario(
    name="cancel_burst",
    title="Cancel burst under injected faults",
    description=(__doc__ or "").strip(),
    full=FULL,
    quick=QUICK,
    venue=lambda p: Venue(markets=(p.market,), depth="thick"),
    duration_ms=duration_ms,
    script=script,
    expectations={
        "no_duplicate_orders": "each placement exists exactly once despite dropped responses",
        "all_canceled": "every order is canceled in the burst despite injected 503s",
        "faults_fired": "both the dropped responses and the cancel errors actually happened",
    },
)

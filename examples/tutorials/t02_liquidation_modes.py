"""Tutorial 2 — Partial liquidation: incremental vs market vs auction on the same crash.

Run: ``python -m examples.tutorials.t02_liquidation_modes`` (pure engine, a few seconds).

**What you will see.** Three venues that differ only in their market's ``liquidation_mode``
(docs/mechanics.md §14). On each, the same account — 40,000 USDT, long 10 BTC from 60,000 at
20x, liquidation price about 56,306 — meets the same crash: the index slides to 56,290 and
holds for ten minutes. The same market maker quotes 1 BTC every 10 USDT under the index.

* ``INCREMENTAL`` closes 20% of the position per step into the book, waits 30 s, and stops as
  soon as the maintenance margin is back under 80% of equity. It closes a part of the position
  and the account keeps the rest, with more equity left.
* ``MARKET`` closes the whole position at once: 10 BTC sweep the bids down the ladder, and the
  0.30% liquidation fee is charged on all of it.
* ``AUCTION`` offers the whole position to a registered backstop in a descending-price auction
  from the mark to the bankruptcy price; the backstop takes it at its discount (0.2% under the
  mark), off the book and without the liquidation fee.

**Why.** Every closed unit costs the spread you sell into plus the liquidation fee; the
incremental mode closes only the fewest lots that restore health (bisection in
``_lots_to_restore``), so it pays less of both. The price is risk: the rest of the position is
still open if the crash continues.

**What to do in a bot.** Read the market's mode from ``GET /v1/markets`` (``liquidation_mode``)
and size positions so the first step never comes. On an incremental venue, treat a margin
call (the ``margin`` channel, at 80%) as the last moment to reduce yourself: your own
reduce-only order pays the taker fee (0.05%), the liquidation pays 0.30%.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sandbox.charts import Chart, Panel, Series, save_chart
from sandbox.engine import (
    FundingConfig,
    Instrument,
    LiquidationConfig,
    LiquidationFill,
    LiquidationMode,
    MarketMechanics,
    RegisterBackstop,
    Side,
)

from .common import EngineVenue, minutes, of_type, out_dir, usdt

BTC = "BTC-PERP"
TRADER = "trader"
STEP_MS = 5_000
CHART_FROM = Decimal(56700)
FLOOR = Decimal(56290)  # just under the liquidation price, then the crash stops
MODES = (LiquidationMode.INCREMENTAL, LiquidationMode.MARKET, LiquidationMode.AUCTION)


@dataclass(frozen=True, slots=True)
class ModeResult:
    """One mode's outcome (BTC and exact USDT)."""

    mode: str
    steps: int
    closed: Decimal
    remaining: Decimal
    fees: Decimal
    equity_after: Decimal
    equity_at_trigger: Decimal


@dataclass(frozen=True, slots=True)
class Findings:
    results: dict[str, ModeResult]
    charts: tuple[Path, ...]


def btc(mode: LiquidationMode) -> Instrument:
    return Instrument.create(
        BTC,
        tick_size="0.1",
        lot_size="0.001",
        min_qty="0.001",
        max_qty="1000",
        market_max_qty="120",
        min_notional="100",
        initial_price="60000",
        mechanics=MarketMechanics(
            liquidation=LiquidationConfig(mode=mode), funding=FundingConfig(cap=300_000)
        ),
    )


def run_mode(
    mode: LiquidationMode, hold_steps: int
) -> tuple[ModeResult, list[float], list[float], list[float]]:
    """One venue through the crash; returns the result and (t, equity, position) samples."""
    v = EngineVenue([btc(mode)])
    inst = v.inst(BTC)
    index = Decimal(60000)
    v.set_index(BTC, index)
    v.quote(BTC, index, step=Decimal(10), qty="1")
    v.tick()
    v.deposit(TRADER, "40000")
    v.deposit("seller", "1000000")
    v.rest("seller", BTC, Side.SELL, "10", "60000")
    v.take(TRADER, BTC, Side.BUY, "10", "60000")
    if mode is LiquidationMode.AUCTION:
        v.deposit("backstop", "5000000")
        v.submit(RegisterBackstop("backstop", BTC, inst.qty_to_lots("20"), 200_000))
    ts: list[float] = []
    equity: list[float] = []
    position: list[float] = []
    fills: list[LiquidationFill] = []
    held = 0
    while held < hold_steps:
        if index > FLOOR:
            index = max(FLOOR, index - Decimal(50))
        else:
            held += 1
        v.set_index(BTC, index)
        v.quote(BTC, index, step=Decimal(10), qty="1")
        fills += of_type(v.advance(STEP_MS), LiquidationFill)
        if index > CHART_FROM:
            continue  # chart only the part around the liquidation
        view = v.ex.account_view(TRADER)
        ts.append(minutes(v.now(), v.start_ms))
        equity.append(float(usdt(view.equity)))
        position.append(float(inst.qty_to_decimal(v.size(TRADER, BTC))))
    view = v.ex.account_view(TRADER)
    closed = sum(f.qty for f in fills)
    result = ModeResult(
        mode=mode.value,
        steps=len(fills),
        closed=inst.qty_to_decimal(closed),
        remaining=inst.qty_to_decimal(v.size(TRADER, BTC)),
        fees=usdt(sum(f.fee for f in fills)),
        equity_after=usdt(view.equity),
        equity_at_trigger=usdt(fills[0].equity) if fills else usdt(view.equity),
    )
    return result, ts, equity, position


def run(out: Path, *, quick: bool = False) -> Findings:
    """The three venues; a chart of equity and position per mode goes to ``out``."""
    hold = 60 if quick else 120
    results: dict[str, ModeResult] = {}
    eq_series: list[Series] = []
    pos_series: list[Series] = []
    for mode in MODES:
        result, ts, equity, position = run_mode(mode, hold)
        results[mode.value] = result
        eq_series.append(Series(mode.value.lower(), ts, equity))
        pos_series.append(Series(mode.value.lower(), ts, position, kind="step"))
    chart = save_chart(
        Chart(
            "Tutorial 2: the same crash, three liquidation modes",
            [
                Panel("Account equity (USDT)", "USDT", eq_series),
                Panel("Position left (BTC)", "BTC", pos_series),
            ],
        ),
        out / "modes.png",
    )
    return Findings(results, (chart,))


def main() -> None:
    f = run(out_dir(2))
    print("Tutorial 2: one crash, three liquidation modes (long 10 BTC, 40,000 USDT, 20x)")
    print(
        f"  {'mode':<12} {'steps':>5} {'closed BTC':>10} {'left BTC':>9} "
        f"{'liq fees':>10} {'equity at trigger':>18} {'equity after':>13}"
    )
    for r in f.results.values():
        print(
            f"  {r.mode:<12} {r.steps:>5} {r.closed:>10} {r.remaining:>9} "
            f"{r.fees:>10,.2f} {r.equity_at_trigger:>18,.2f} {r.equity_after:>13,.2f}"
        )
    inc, mkt = f.results["INCREMENTAL"], f.results["MARKET"]
    print(
        f"  incremental closed {mkt.closed - inc.closed} BTC less than market mode and kept "
        f"{inc.equity_after - mkt.equity_after:,.2f} USDT more equity"
    )
    for path in f.charts:
        print(f"  chart: {path}")


if __name__ == "__main__":
    main()

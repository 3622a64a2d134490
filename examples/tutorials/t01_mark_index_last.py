"""Tutorial 1 — Mark, index and last price: why your position was liquidated when last never
touched your price.

Run: ``python -m examples.tutorials.t01_mark_index_last`` (pure engine, a few seconds).

**What you will see.** Two runs of the same account — 3,000 USDT, 50x, long 2 BTC from
60,000, liquidation price about 58,800 — in the in-process engine:

1. *The index slides.* Spot prices on the other venues (the three index sources) fall 2.5%
   over a few minutes. Nobody trades on our venue, so the **last** price stays where the
   account bought. The **mark** follows the index down, reaches the liquidation price, and the
   account is liquidated in steps, while last is still far above that price.
2. *A wick in last.* A whale dumps 5.1 BTC at market into a thin book and prints a trade far
   *below* the liquidation price. The mark barely moves and nobody is liquidated.

**Why.** Liquidation is checked against the mark, never against last (docs/mechanics.md §13).
The mark is ``median(P1, P2, last)`` with ``P1 = index * (1 + funding basis)`` and
``P2 = index + 30 s moving average of (mid - index)`` (docs/mechanics.md §10-§11): two of its
three inputs come from the index, so the index decides where the mark goes. One trade in our
own book can at most move the median as far as P1 or P2 — it cannot liquidate anyone by itself
— but a move in spot prices on other venues does, whether or not anyone trades here.

**What to do in a bot.** Compute your distance to liquidation from the mark (the SDK's
``Position.liquidation_price`` and ``Account.margin_ratio`` are the exchange's own numbers);
watch the ``ticker`` stream's ``index`` and ``mark``, not ``last``; and never place stops or
risk limits on last alone: a quiet book does not mean a quiet market.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sandbox.charts import Chart, Marker, Panel, Series, save_chart
from sandbox.engine import (
    LiquidationFill,
    LiquidationStarted,
    Side,
    default_instruments,
)

from .common import EngineVenue, minutes, of_type, out_dir

BTC = "BTC-PERP"
TRADER = "you"
STEP_MS = 5_000


@dataclass(frozen=True, slots=True)
class Findings:
    """Prices in USDT (exact decimals), positions in BTC."""

    liquidation_price: Decimal
    slide_liquidated: bool
    slide_last_low_before: Decimal  # the lowest last price before the liquidation started
    slide_mark_at_trigger: Decimal
    slide_index_at_trigger: Decimal
    slide_steps: int
    slide_closed: Decimal
    wick_last_low: Decimal
    wick_mark_low: Decimal
    wick_liquidated: bool
    charts: tuple[Path, ...]


@dataclass
class Trace:
    t: list[float]
    index: list[float]
    mark: list[float]
    last: list[float]


def setup() -> tuple[EngineVenue, int]:
    """The venue at 60,000 with a maker ladder, and the trader long 2 BTC at 50x."""
    v = EngineVenue(default_instruments())
    centre = Decimal(60000)
    v.set_index(BTC, centre)
    v.quote(BTC, centre, step=Decimal(5), qty="0.5")
    v.tick()
    v.deposit(TRADER, "3000")
    v.leverage(TRADER, BTC, 50)
    v.deposit("seller", "1000000")
    v.rest("seller", BTC, Side.SELL, "2", "60000")
    v.take(TRADER, BTC, Side.BUY, "2", "60000")
    for _ in range(8):  # let the basis average settle
        v.quote(BTC, centre, step=Decimal(5), qty="0.5")
        v.advance(STEP_MS)
    liq = v.ex.liquidation_price(TRADER, BTC)
    assert liq is not None
    return v, liq


def sample(v: EngineVenue, trace: Trace) -> None:
    p = v.ex.prices(BTC)
    inst = v.inst(BTC)
    trace.t.append(minutes(v.now(), v.start_ms))
    trace.index.append(float(inst.price_to_decimal(p.index)))
    trace.mark.append(float(inst.price_to_decimal(p.mark)))
    trace.last.append(float(inst.price_to_decimal(p.last or p.mark)))


def run(out: Path, *, quick: bool = False) -> Findings:
    """Both runs; charts go to ``out``."""
    # 1. the index slides 2.5% in 20 USDT steps, then holds for two minutes
    v, liq_ticks = setup()
    inst = v.inst(BTC)
    slide = Trace([], [], [], [])
    sample(v, slide)
    index = Decimal(60000)
    last_low = v.ex.prices(BTC).last or 0
    started: LiquidationStarted | None = None
    trigger_mark = trigger_index = 0
    steps: list[tuple[float, LiquidationFill]] = []
    hold = 0
    while hold < 24:
        if index > Decimal(58500):
            index -= Decimal(30 if quick else 20)
        else:
            hold += 1
        v.set_index(BTC, index)
        v.quote(BTC, index, step=Decimal(5), qty="0.5")
        events = v.advance(STEP_MS)
        if started is None:
            found = of_type(events, LiquidationStarted)
            if found:
                started = found[0]
                p = v.ex.prices(BTC)
                trigger_mark, trigger_index = p.mark, p.index
            else:
                last_low = min(last_low, v.ex.prices(BTC).last or last_low)
        steps += [(minutes(e.ts, v.start_ms), e) for e in of_type(events, LiquidationFill)]
        sample(v, slide)
    closed = sum(s.qty for _, s in steps)

    # 2. a wick: a whale sells 5.1 BTC at market; a lone bid sits at 58,500
    w, _ = setup()
    wick = Trace([], [], [], [])
    sample(w, wick)
    w.deposit("whale", "1000000")
    w.deposit("dipbuyer", "100000")
    w.rest("dipbuyer", BTC, Side.BUY, "0.2", "58500")
    wick_liquidated = False
    wick_low = w.ex.prices(BTC).last or 0
    mark_low = w.ex.prices(BTC).mark
    for i in range(24):
        if i == 4:
            events = w.market("whale", BTC, Side.SELL, "5.1")
            wick_low = min(wick_low, w.ex.prices(BTC).last or wick_low)
            wick_liquidated |= bool(of_type(events, LiquidationStarted))
        else:
            w.quote(BTC, Decimal(60000), step=Decimal(5), qty="0.5")
        events = w.advance(STEP_MS)
        wick_liquidated |= bool(of_type(events, LiquidationStarted))
        mark_low = min(mark_low, w.ex.prices(BTC).mark)
        sample(w, wick)
        if i == 4:  # show the printed wick on the chart at the moment it happened
            wick.last[-1] = float(inst.price_to_decimal(wick_low))

    liq = float(inst.price_to_decimal(liq_ticks))
    charts = (
        save_chart(
            Chart(
                "Tutorial 1: liquidated by the mark while last stayed above the liquidation price",
                [
                    Panel(
                        "Run 1 - the index slides (no trades on our book until the liquidation)",
                        "USDT",
                        [
                            Series("index", slide.t, slide.index),
                            Series("mark", slide.t, slide.mark),
                            Series("last", slide.t, slide.last, kind="step"),
                        ],
                        [Marker(t, "liquidation step") for t, _ in steps],
                        [(liq, "liquidation price")],
                    ),
                    Panel(
                        "Run 2 - a wick in last below the liquidation price: no liquidation",
                        "USDT",
                        [
                            Series("index", wick.t, wick.index),
                            Series("mark", wick.t, wick.mark),
                            Series("last", wick.t, wick.last, kind="step"),
                        ],
                        hlines=[(liq, "liquidation price")],
                    ),
                ],
            ),
            out / "prices.png",
        ),
    )
    dec = inst.price_to_decimal
    return Findings(
        liquidation_price=dec(liq_ticks),
        slide_liquidated=started is not None,
        slide_last_low_before=dec(last_low),
        slide_mark_at_trigger=dec(trigger_mark),
        slide_index_at_trigger=dec(trigger_index),
        slide_steps=len(steps),
        slide_closed=inst.qty_to_decimal(closed),
        wick_last_low=dec(wick_low),
        wick_mark_low=dec(mark_low),
        wick_liquidated=wick_liquidated,
        charts=charts,
    )


def main() -> None:
    f = run(out_dir(1))
    print("Tutorial 1: mark, index and last")
    print(f"  your liquidation price (long 2 BTC at 50x): {f.liquidation_price}")
    print("  run 1, the index slides:")
    print(f"    liquidated: {f.slide_liquidated}; lowest last before it: {f.slide_last_low_before}")
    print(
        f"    at the trigger: mark {f.slide_mark_at_trigger} <= {f.liquidation_price}, "
        f"index {f.slide_index_at_trigger}"
    )
    print(f"    {f.slide_steps} liquidation steps closed {f.slide_closed} BTC")
    print("  run 2, a wick in last:")
    print(
        f"    last printed {f.wick_last_low} (below {f.liquidation_price}); "
        f"lowest mark {f.wick_mark_low}; liquidated: {f.wick_liquidated}"
    )
    for path in f.charts:
        print(f"  chart: {path}")


if __name__ == "__main__":
    main()

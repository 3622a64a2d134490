"""Tutorial 3 — Cross margin is a correlated portfolio: the small hedge that triggered the
cascade.

Run: ``python -m examples.tutorials.t03_cross_margin_correlation`` (pure engine, seconds).

**What you will see.** Three accounts with 10,000 USDT each and the same core position, long
2 BTC from 60,000 (120,000 USDT). Two of them add a "hedge" in ETH worth a quarter of that
(10 ETH at 3,000 = 30,000 USDT):

* ``btc_only`` holds the BTC position alone;
* ``eth_long_hedge`` also buys 10 ETH — it hedges an ETH *short* the trader holds elsewhere
  (a loan in ETH, a short at another venue), so on paper the book is flat ETH;
* ``eth_short_hedge`` sells 10 ETH instead: a hedge of its BTC exposure on this venue.

Then BTC and ETH fall together by 7% (correlation 1: they usually move together, more so in a
crash). ``btc_only`` survives — its liquidation is at -7.9%. ``eth_long_hedge`` shows a BTC
liquidation price 7.75% below the entry (computed, like every venue's, with the *other* marks
held still), yet it is liquidated at about -6.2%, and the engine's first step closes
**BTC**, the position with the largest maintenance margin: the small ETH leg took the BTC
position with it. ``eth_short_hedge`` is the safest of the three.

**Why.** Under cross margin (docs/mechanics.md §5, §13) the exchange sees one account: equity
is collateral plus the PnL of *every* position at the marks, maintenance margin is the sum over
positions, and liquidation starts when ``equity <= MM``. What offsets the ETH leg elsewhere is
invisible here; on this venue it is a second long, correlated with the first, and it adds its
loss and its maintenance margin to the same account. Each liquidation step then works on the
position with the largest maintenance margin (§14), which is not the one that caused it.

**What to do in a bot.** Judge a new position by what it does to the *account*: run
``perpbot.risk.checker.RiskChecker`` with the joint stress scenario
(``stress_correlation = 1``, docs/risk.md "The correlated joint shock"), which moves every
market against you at once. Keep legs that must not liquidate each other in separate
accounts (or isolated margin), and hedge on the same venue if you want the exchange to count
the hedge.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sandbox.charts import Chart, Marker, Panel, Series, save_chart
from sandbox.engine import LiquidationFill, LiquidationStarted, Side, default_instruments

from .common import EngineVenue, minutes, of_type, out_dir

BTC, ETH = "BTC-PERP", "ETH-PERP"
ACCOUNTS = ("btc_only", "eth_long_hedge", "eth_short_hedge")
STEP_MS = 5_000
DROP = Decimal("0.07")


@dataclass(frozen=True, slots=True)
class Findings:
    """Liquidated accounts, where it happened, and what the first step closed."""

    liquidated: dict[str, bool]
    liquidation_drop: dict[str, Decimal]  # the move (fraction) at which each would liquidate
    hedge_trigger_drop: Decimal | None  # the move at which eth_long_hedge was liquidated
    first_step_market: str | None
    first_step_qty: Decimal | None
    max_ratio: dict[str, Decimal]  # highest margin ratio seen (1 = liquidation)
    charts: tuple[Path, ...]


def run(out: Path, *, quick: bool = False) -> Findings:
    """Open the three accounts, drop both markets together, record ratios and steps."""
    v = EngineVenue(default_instruments())
    start = {BTC: Decimal(60000), ETH: Decimal(3000)}
    steps_px = {BTC: Decimal(10), ETH: Decimal("0.5")}
    sizes = {BTC: "1", ETH: "20"}
    for m, px in start.items():
        v.set_index(m, px)
        v.quote(m, px, step=steps_px[m], qty=sizes[m])
    v.tick()
    v.deposit("counterparty", "10000000")
    for name in ACCOUNTS:
        v.deposit(name, "10000")
        v.rest("counterparty", BTC, Side.SELL, "2", "60000")
        v.take(name, BTC, Side.BUY, "2", "60000")
    v.rest("counterparty", ETH, Side.SELL, "10", "3000")
    v.take("eth_long_hedge", ETH, Side.BUY, "10", "3000")
    v.rest("counterparty", ETH, Side.BUY, "10", "3000")
    v.take("eth_short_hedge", ETH, Side.SELL, "10", "3000")
    btc_inst = v.inst(BTC)
    liq_drop = {}
    for name in ACCOUNTS:
        liq = v.ex.liquidation_price(name, BTC)
        liq_drop[name] = (
            Decimal(0) if liq is None else 1 - btc_inst.price_to_decimal(liq) / start[BTC]
        )

    ts: list[float] = []
    ratios: dict[str, list[float]] = {n: [] for n in ACCOUNTS}
    move: list[float] = []
    liquidated = dict.fromkeys(ACCOUNTS, False)
    trigger: Decimal | None = None
    first: LiquidationFill | None = None
    markers: list[Marker] = []
    n_steps = 35 if quick else 70
    for i in range(1, n_steps + 25):
        frac = DROP * min(i, n_steps) / n_steps
        for m, px in start.items():
            level = px * (1 - frac)
            v.set_index(m, level)
            v.quote(m, level, step=steps_px[m], qty=sizes[m])
        events = v.advance(STEP_MS)
        for ev in of_type(events, LiquidationStarted):
            liquidated[ev.account] = True
            if ev.account == "eth_long_hedge" and trigger is None:
                mark = btc_inst.price_to_decimal(v.ex.prices(BTC).mark)
                trigger = 1 - mark / start[BTC]
            markers.append(Marker(minutes(ev.ts, v.start_ms), f"{ev.account} liquidated"))
        for ev in of_type(events, LiquidationFill):
            if ev.account == "eth_long_hedge" and first is None:
                first = ev
        ts.append(minutes(v.now(), v.start_ms))
        move.append(-float(frac) * 100)
        for name in ACCOUNTS:
            r = v.ex.account_view(name).margin_ratio
            ratios[name].append(float(r) / 1e8 if r is not None else 1.5)

    chart = save_chart(
        Chart(
            "Tutorial 3: one correlated move, three portfolios under cross margin",
            [
                Panel("BTC and ETH move together (%)", "%", [Series("BTC and ETH", ts, move)]),
                Panel(
                    "Margin ratio = maintenance margin / equity (liquidation at 1)",
                    "ratio",
                    [Series(n, ts, ratios[n]) for n in ACCOUNTS],
                    markers,
                    [(1.0, "liquidation"), (0.8, "margin call")],
                ),
            ],
        ),
        out / "ratios.png",
    )
    first_market = None
    first_qty = None
    if first is not None:
        first_market = first.stream
        first_qty = v.inst(first.stream).qty_to_decimal(first.qty)
    return Findings(
        liquidated=liquidated,
        liquidation_drop=liq_drop,
        hedge_trigger_drop=trigger,
        first_step_market=first_market,
        first_step_qty=first_qty,
        max_ratio={n: Decimal(str(round(max(r), 4))) for n, r in ratios.items()},
        charts=(chart,),
    )


def main() -> None:
    f = run(out_dir(3))
    print(f"Tutorial 3: BTC and ETH fall {DROP:.0%} together; 10,000 USDT, long 2 BTC each")
    for name in ACCOUNTS:
        print(
            f"  {name:<16} BTC liquidation price (ETH held still) {f.liquidation_drop[name]:.2%} "
            f"below; "
            f"liquidated: {f.liquidated[name]}; highest margin ratio {f.max_ratio[name]}"
        )
    if f.hedge_trigger_drop is not None:
        print(
            f"  with ETH moving along, eth_long_hedge was liquidated after a "
            f"{f.hedge_trigger_drop:.2%} move; the first step closed {f.first_step_qty} of "
            f"{f.first_step_market}"
        )
    for path in f.charts:
        print(f"  chart: {path}")


if __name__ == "__main__":
    main()

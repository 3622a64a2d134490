"""Tutorial 6 — Slippage in thin books: doubling size more than doubles slippage.

Run: ``python -m examples.tutorials.t06_slippage_thin_books`` (pure engine, a few seconds).

**What you will see.** The sandbox's two liquidity profiles (``sandbox.market.THIN`` and
``THICK``: the books ``perpbot-sandbox --depth thin|thick`` serves) quote BTC-PERP around an
index of 60,000. For market buys of 0.01, 0.02, 0.04 ... 0.32 BTC the script walks the book
with ``perpbot.limits.estimate_fill`` (what the SDK's size limits and the risk checker use),
then checks every estimate against a real market order on a fresh copy of the same book. It
prints the average price, the slippage from the mid in basis points, and the cost in USDT
(``(average - mid) * size``) for each size.

**Why.** A book's levels get further apart as they get deeper. A small order fills at the
best ask; twice the size also takes the next level, which is further away: the *average*
slippage rises with size, so the cost — slippage times size — grows faster than the size
(each doubling multiplies it by more than 2) until the order runs out of book. In the thin
book the levels start 5 bp from the centre and grow 1.6x per level (docs: the profile's
``first_gap_bps`` and ``gap_growth``), so it happens at sizes a bot actually trades.

**What to do in a bot.** Price an order by walking the book before you send it
(``estimate_fill`` on ``client.order_book(market)``), set ``SizeLimits(max_slippage=...)`` or
the checker's ``max_slippage`` so the guard refuses what the book cannot take, and split a
large order into slices over time (the book refills between them) instead of one sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

from perpbot.limits import estimate_fill
from sandbox.charts import Chart, Panel, Series, save_chart
from sandbox.engine import Side, Trade, default_instruments
from sandbox.market import THICK, THIN, LiquidityAgent, LiquidityProfile, funding_commands

from .common import EngineVenue, of_type, out_dir

BTC = "BTC-PERP"
SIZES = tuple(Decimal("0.01") * 2**i for i in range(6))  # 0.01 .. 0.32 BTC


@dataclass(frozen=True, slots=True)
class Point:
    size: Decimal
    avg_price: Decimal
    slippage_bps: Decimal  # (average - mid) / mid
    cost_usdt: Decimal  # (average - mid) * size
    real_avg_price: Decimal  # from a real market order on a copy of the book


@dataclass(frozen=True, slots=True)
class Findings:
    thin: tuple[Point, ...]
    thick: tuple[Point, ...]
    thin_cost_ratios: tuple[Decimal, ...]  # cost(2q) / cost(q)
    charts: tuple[Path, ...]


def venue(profile: LiquidityProfile) -> tuple[EngineVenue, Decimal, list[tuple[str, str]]]:
    """A venue whose only liquidity is one agent of ``profile``; returns it, the mid and the
    asks as wire levels."""
    v = EngineVenue(default_instruments())
    inst = v.inst(BTC)
    agent = LiquidityAgent(inst, profile, account="mm:book")
    for deposit in funding_commands([agent], 10**8 * 10**8):
        v.submit(deposit)
    v.set_index(BTC, Decimal(60000))
    v.tick()
    for cmd in agent.commands(v.ex):
        v.submit(cmd)
    book = v.ex.book_snapshot(BTC, depth=100)
    mid = (inst.price_to_decimal(book.bids[0][0]) + inst.price_to_decimal(book.asks[0][0])) / 2
    asks = [(str(inst.price_to_decimal(p)), str(inst.qty_to_decimal(q))) for p, q in book.asks]
    return v, mid, asks


def curve(profile: LiquidityProfile) -> tuple[Point, ...]:
    _, mid, asks = venue(profile)
    points = []
    for size in SIZES:
        est = estimate_fill(asks, size, side="BUY")
        if est.avg_price is None or est.filled < size:
            break
        # the same order for real, on a fresh copy of the same book
        v, _, _ = venue(profile)
        v.deposit("taker", "1000000")
        trades = of_type(v.market("taker", BTC, Side.BUY, str(size)), Trade)
        inst = v.inst(BTC)
        lots = sum(t.qty for t in trades)
        real = Decimal(sum(t.price * t.qty for t in trades)) / lots * inst.tick_size
        points.append(
            Point(
                size=size,
                avg_price=est.avg_price,
                slippage_bps=(est.avg_price - mid) / mid * 10_000,
                cost_usdt=(est.avg_price - mid) * size,
                real_avg_price=real,
            )
        )
    return tuple(points)


def run(out: Path, *, quick: bool = False) -> Findings:
    """Both profiles; a chart of slippage and cost against size goes to ``out``."""
    thin, thick = curve(THIN), curve(THICK)
    ratios = tuple(b.cost_usdt / a.cost_usdt for a, b in pairwise(thin))

    def xs(points: tuple[Point, ...]) -> list[float]:
        return [float(p.size) for p in points]

    chart = save_chart(
        Chart(
            "Tutorial 6: market-buy slippage against size, thin vs thick book",
            [
                Panel(
                    "Average slippage from the mid (bps)",
                    "bps",
                    [
                        Series("thin", xs(thin), [float(p.slippage_bps) for p in thin]),
                        Series("thick", xs(thick), [float(p.slippage_bps) for p in thick]),
                    ],
                ),
                Panel(
                    "Cost = slippage x size (USDT); doubling size more than doubles it",
                    "USDT",
                    [
                        Series("thin", xs(thin), [float(p.cost_usdt) for p in thin]),
                        Series("thick", xs(thick), [float(p.cost_usdt) for p in thick]),
                        Series(
                            "linear (2x per doubling), from thin's first point",
                            xs(thin),
                            [float(thin[0].cost_usdt * p.size / thin[0].size) for p in thin],
                            dashed=True,
                        ),
                    ],
                ),
            ],
            xlabel="order size (BTC)",
        ),
        out / "slippage.png",
    )
    return Findings(thin, thick, ratios, (chart,))


def main() -> None:
    f = run(out_dir(6))
    print("Tutorial 6: market buys against the thin and thick books (BTC-PERP at 60,000)")
    for name, points in (("thin", f.thin), ("thick", f.thick)):
        print(f"  {name} book")
        print(f"    {'size':>6} {'avg price':>12} {'real order':>12} {'slip bps':>9} {'cost':>8}")
        for p in points:
            print(
                f"    {p.size:>6} {p.avg_price:>12.2f} {p.real_avg_price:>12.2f} "
                f"{p.slippage_bps:>9.2f} {p.cost_usdt:>8.2f}"
            )
    ratios = ", ".join(f"{r:.2f}x" for r in f.thin_cost_ratios)
    print(f"  thin book: each doubling of size multiplied the cost by {ratios}")
    for path in f.charts:
        print(f"  chart: {path}")


if __name__ == "__main__":
    main()

"""Tutorial 4 — Funding and volatility: what a crowded trade costs over a week.

Run: ``python -m examples.tutorials.t04_funding_crowded_trade`` (pure engine, a few seconds).

**What you will see.** Seven simulated days of BTC-PERP in the engine, 21 funding settlements
(every 8 h). Everyone wants to be long: buyers keep the book above the index, by 0.08% at the
start and 0.25% by the end of the week, while the index itself wanders with an annualized
volatility of 60% (a seeded random walk). You hold 1 BTC long, a crowd holds 4 more, and the
counterparty that filled everyone is left long 2; two accounts hold the 7 BTC of shorts. The
script prints what each paid or received, the average rate, and what the week's price moves were
worth next to it.

**Why.** The premium index samples, every minute, how far the impact bid/ask sit from the
index (docs/mechanics.md §12); the rate is the interval's average premium plus a clamped
interest term, capped at ±0.30%. A book that stays above the index therefore makes longs pay
shorts at every settlement, ``payment = size * mark * rate``, whatever the price does. Payments
are exactly zero-sum: each amount is rounded up (in the venue's favour) and the residue — less
than one unit per account — goes to the insurance fund, so ``Σ payments = residue`` to the unit.

**What to do in a bot.** Budget funding as a running cost of a position: the SDK's
``client.funding(market)`` gives the predicted rate, and the risk checker reports
``funding_cost`` over ``funding_horizon_hours`` (docs/risk.md). A crowded side pays a rate that
rises as the crowd grows; compare a week of it with the move you expect, and let the
``funding_spike`` stress scenario tell you whether the account survives a few capped intervals.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sandbox.charts import Chart, Marker, Panel, Series, save_chart
from sandbox.engine import FundingPaid, FundingSettled, Side, default_instruments

from .common import EngineVenue, fmt, minutes, of_type, out_dir, usdt

BTC = "BTC-PERP"
DAY_MS = 24 * 3600 * 1000
DAYS = 7
VOL = 0.6  # annualized volatility of the index (log price)
LONGS = {"you": "1", "crowd": "4"}
SHORTS = {"short_a": "5", "short_b": "2"}
YOU = "you"


@dataclass(frozen=True, slots=True)
class Findings:
    """Exact USDT (positive = paid); rates as fractions per 8 h."""

    settlements: int
    paid: dict[str, Decimal]
    residue: Decimal
    zero_sum_units: int  # Σ payments - Σ residue, in money units: exactly 0
    average_rate: Decimal
    max_rate: Decimal
    you_paid: Decimal
    you_paid_pct_of_notional: Decimal
    you_price_pnl: Decimal
    weekly_sigma_usdt: Decimal  # one standard deviation of a week's move on 1 BTC
    charts: tuple[Path, ...]


def crowding(t_ms: int) -> Decimal:
    """How far above the index the crowd keeps the book: 0.08% rising to 0.25% over the week."""
    frac = Decimal(t_ms) / (DAYS * DAY_MS)
    return Decimal("0.0008") + Decimal("0.0017") * min(frac, Decimal(1))


def run(out: Path, *, quick: bool = False) -> Findings:
    """A week in steps of 10 simulated minutes (30 with ``quick``)."""
    step_ms = (30 if quick else 10) * 60_000
    rng = random.Random(4)
    v = EngineVenue(default_instruments())
    inst = v.inst(BTC)
    index = Decimal(60000)
    v.set_index(BTC, index)
    v.tick()
    v.deposit("counterparty", "10000000")
    for name, qty in LONGS.items():
        v.deposit(name, "100000")
        v.rest("counterparty", BTC, Side.SELL, qty, "60000")
        v.take(name, BTC, Side.BUY, qty, "60000")
    for name, qty in SHORTS.items():
        v.deposit(name, "100000")
        v.rest("counterparty", BTC, Side.BUY, qty, "60000")
        v.take(name, BTC, Side.SELL, qty, "60000")
    collateral_after_entry = v.ex.accounts[YOU].collateral
    assert v.size(YOU, BTC) == inst.qty_to_lots(LONGS[YOU])

    sigma_step = VOL * math.sqrt(step_ms / (365 * DAY_MS))
    paid: dict[str, int] = {}
    residue = 0
    rates: list[Decimal] = []
    t: list[float] = []
    idx: list[float] = []
    mark: list[float] = []
    you_cum: list[float] = []
    settle_t: list[float] = []
    settle_rate: list[float] = []
    end = v.start_ms + DAYS * DAY_MS
    while v.now() < end:
        shock = Decimal(str(round(math.exp(rng.gauss(-(sigma_step**2) / 2, sigma_step)), 8)))
        index = (index * shock).quantize(Decimal("0.1"))
        # the sources must be fresh when time acts (stale after 10 s): move the clock first
        v.clock.advance(step_ms)
        v.set_index(BTC, index)
        v.quote(BTC, index * (1 + crowding(v.now() - v.start_ms)), step=Decimal(5), qty="0.5")
        events = v.tick()
        events = [e for e in events if getattr(e, "stream", None) == BTC]
        for ev in of_type(events, FundingPaid):
            paid[ev.account] = paid.get(ev.account, 0) + ev.amount
        for ev in of_type(events, FundingSettled):
            residue += ev.residue
            rates.append(Decimal(ev.rate) / 10**8)
            settle_t.append(minutes(ev.ts, v.start_ms) / 1440)
            settle_rate.append(ev.rate / 1e6)
        p = v.ex.prices(BTC)
        t.append(minutes(v.now(), v.start_ms) / 1440)
        idx.append(float(inst.price_to_decimal(p.index)))
        mark.append(float(inst.price_to_decimal(p.mark)))
        you_cum.append(float(usdt(paid.get(YOU, 0))))

    view = v.ex.account_view(YOU)
    you_paid = usdt(paid.get(YOU, 0))
    # price PnL = everything the account gained or lost other than funding
    price_pnl = usdt(view.equity - collateral_after_entry) + you_paid
    weekly_sigma = Decimal(60000) * Decimal(str(round(VOL * math.sqrt(DAYS / 365), 6)))
    chart = save_chart(
        Chart(
            "Tutorial 4: a crowded long pays funding at every settlement",
            [
                Panel(
                    "Index and mark (USDT)",
                    "USDT",
                    [Series("index", t, idx), Series("mark", t, mark)],
                    [Marker(x, "funding settlement", "#999999") for x in settle_t],
                ),
                Panel(
                    "Funding rate per 8 h (%)",
                    "%",
                    [Series("rate settled", settle_t, settle_rate, kind="scatter")],
                    hlines=[(0.01, "interest 0.01%"), (0.3, "cap 0.30%")],
                ),
                Panel(
                    "Funding paid by your 1 BTC long, cumulative (USDT)",
                    "USDT",
                    [Series("you", t, you_cum, kind="step")],
                ),
            ],
            xlabel="simulated days",
        ),
        out / "funding.png",
    )
    return Findings(
        settlements=len(rates),
        paid={k: usdt(a) for k, a in sorted(paid.items())},
        residue=usdt(residue),
        zero_sum_units=sum(paid.values()) - residue,
        average_rate=sum(rates, Decimal(0)) / len(rates),
        max_rate=max(rates),
        you_paid=you_paid,
        you_paid_pct_of_notional=you_paid / Decimal(60000),
        you_price_pnl=price_pnl,
        weekly_sigma_usdt=weekly_sigma,
        charts=(chart,),
    )


def main() -> None:
    f = run(out_dir(4))
    print(f"Tutorial 4: a crowded long over {DAYS} days ({f.settlements} funding settlements)")
    for name, amount in f.paid.items():
        verb = "paid" if amount > 0 else "received"
        print(f"  {name:<8} {verb:>8} {fmt(int(abs(amount) * 10**8)):>10} USDT")
    print(
        f"  residue to the insurance fund {f.residue:f} USDT; payments - residue = "
        f"{f.zero_sum_units} units (zero-sum)"
    )
    print(
        f"  average rate {f.average_rate:.4%} per 8 h (max {f.max_rate:.4%}); "
        f"annualized {f.average_rate * 3 * 365:.1%}"
    )
    print(
        f"  your 1 BTC long paid {f.you_paid:,.2f} USDT = {f.you_paid_pct_of_notional:.2%} of "
        f"its notional in a week; its price PnL was {f.you_price_pnl:,.2f} USDT, and one "
        f"weekly standard deviation of the price is {f.weekly_sigma_usdt:,.0f} USDT"
    )
    for path in f.charts:
        print(f"  chart: {path}")


if __name__ == "__main__":
    main()

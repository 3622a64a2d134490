"""Cost of a mark update against the number of accounts: the risk index at work.

    .venv/bin/python bench/bench_liquidation.py [--small N] [--large N] [--updates U]
                                                [--at-risk K] [--crash-accounts N]
                                                [--crash-fraction F] [--seed S] [--repeat R]
                                                [--quick]

Two exchanges are built through ``Exchange.submit`` with public commands only, so their state
is exactly what a client could have produced. Each holds the same market maker (a 20-level ladder
of bids and asks around 60,000.0) and the same ``K`` at-risk accounts (default 50: half long,
half short, 0.1 BTC at 100x with 60-65 USDT of equity, i.e. 0.50-0.60% from a margin call and
0.60-0.70% from liquidation), each opened against a safely funded counterparty. Every other
account is one side of a pair of safe accounts (0.005-0.5 BTC, equity 20-60% of the notional)
that traded with each other at the mark. The at-risk accounts rest the opening order and the
counterparty takes it, so nothing else touches the book.

Mark updates: the same ``U`` ``SetMarkPrice`` commands for both populations, a triangle wave
around 60,000.0 (period up to 200 updates, seeded jitter) whose amplitude widens to +-0.55%
over the first half of the run. That reaches every at-risk account's trigger (some get margin
calls, none is liquidated) and no safe account's. Each update is timed on its own
(``perf_counter_ns``); the bar is mean time per update, large / small <= 2x. Re-evaluations are
counted by a subclass that increments a counter in ``Exchange._evaluate`` (read-only; the same
small cost per evaluation in both populations). Two references run on the same exchanges: the
same updates on ETH-PERP, where nobody holds a position (the noise floor: a "baseline ratio"
near 1x), and a naive full scan of every account's equity and maintenance margin (what a mark
update would cost an engine without the index).

Crash: a fresh exchange in which a tenth of the accounts (``--crash-fraction``) are 0.1 BTC longs
at 50x with 0-10 USDT above their initial margin; one ``SetMarkPrice`` 1.8% down liquidates
exactly them (over a third deep enough for the backstop, the rest through the maker's bids and
then the insurance fund). It is timed as one command; afterwards money must be conserved:
``sum(collateral - position cost) + fees == deposits - withdrawals``, and positions net to zero.

Every population is built and measured in a fresh ``spawn`` subprocess (``--repeat`` times,
interleaved; the best mean is kept); the collector is frozen after the build so the timed loop
does not pay for garbage collection of the population, and 1,000 untimed updates on ETH-PERP
warm the interpreter up first. Default run: about 25 s on 2 cores (setup of 100,000 accounts
about 5 s each time); ``--quick``: 200 vs 20,000 accounts, 1,000 updates, one run, about 3 s.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import platform
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perpbot.risk.margin import RATE_SCALE, maintenance_margin
from sandbox.engine import (
    Deposit,
    Event,
    Exchange,
    LiquidationFill,
    LiquidationFinished,
    LiquidationStarted,
    ManualClock,
    MarginCall,
    MarkPriceSet,
    PlaceOrder,
    PositionTransferred,
    Rejected,
    SetLeverage,
    SetMarkPrice,
    Side,
    TimeInForce,
    Trade,
    default_instruments,
)

SYMBOL = "BTC-PERP"
IDLE_SYMBOL = "ETH-PERP"  # nobody holds a position there: the noise-floor reference
START_MS = 1_700_000_000_000
USDT = 10**8  # money units per USDT
P0 = 600_000  # 60,000.0 in ticks (the BTC-PERP initial price)
FACTOR = 10_000  # BTC-PERP notional factor: money units per tick x lot
MM_ID = "mm"
MM_DEPOSIT = 10_000_000 * USDT
MM_LEVELS = 20
MM_LEVEL_QTY = 1_000  # 1 BTC per level
MM_STEP = 50  # 5.0 USDT between levels

RISK_QTY = 100  # 0.1 BTC
RISK_LEVERAGE = 100
RISK_EXTRA_MAX = 5 * USDT  # at-risk equity: initial margin (60 USDT) + 0..5 USDT
AMPLITUDE_BP = 55  # mark band: +-0.55%

CRASH_LEVERAGE = 50
CRASH_EXTRA_MAX = 10 * USDT  # crash longs' equity: initial margin (120 USDT) + 0..10 USDT
CRASH_DROP_BP = 180  # the crash: mark -1.8%

WARMUP = 1_000  # untimed mark updates on the idle market before the timed ones
MAKER_FEE = 20_000  # 0.02%: the opening makers pay it (checked against the instrument below)


class CountingExchange(Exchange):
    """The engine, plus a count of accounts re-evaluated (``_evaluate`` calls) per account.

    Read-only instrumentation: state is still changed only by ``submit``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.evaluations: Counter[str] = Counter()

    def _evaluate(self, account: Any, events: list[Event], now: int) -> None:
        self.evaluations[account.id] += 1
        super()._evaluate(account, events, now)


@dataclass
class Population:
    """A built exchange and who is who in it."""

    exchange: CountingExchange
    accounts: int  # accounts holding a BTC-PERP position (the maker and the funds excluded)
    at_risk: list[str] = field(default_factory=list)  # near liquidation (100x)
    high_leverage: list[str] = field(default_factory=list)  # crash victims (50x longs)
    commands: int = 0
    setup_s: float = 0.0


class _Builder:
    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.commands = 0

    def submit(self, cmd: Any) -> list[Event]:
        self.commands += 1
        events = self.ex.submit(cmd)
        if type(events[0]) is Rejected:
            raise RuntimeError(f"setup command refused: {cmd!r}: {events[0]}")
        return events

    def account(self, account_id: str, deposit: int, leverage: int) -> None:
        self.submit(Deposit(account_id, deposit))
        if leverage != 20:  # BTC-PERP default leverage
            self.submit(SetLeverage(account_id, SYMBOL, leverage))

    def pair(self, maker: str, taker: str, maker_side: Side, qty: int) -> None:
        """``maker`` rests a GTC limit at the mark, ``taker`` takes all of it (IOC)."""
        self.submit(PlaceOrder(maker, SYMBOL, maker_side, qty, P0))
        events = self.submit(
            PlaceOrder(taker, SYMBOL, Side(-maker_side), qty, P0, tif=TimeInForce.IOC)
        )
        trade = events[1]
        if type(trade) is not Trade or trade.taker_remaining or trade.maker_account != maker:
            raise RuntimeError(f"{maker}/{taker} did not trade as planned: {events}")


def notional(qty: int, price: int = P0) -> int:
    return qty * price * FACTOR


def build_population(
    accounts: int, *, at_risk: int = 50, high_leverage: int = 0, seed: int = 1
) -> Population:
    """An exchange whose ``accounts`` accounts (even; the maker and funds not counted) all hold
    a BTC-PERP position: ``at_risk`` 100x accounts (alternately long and short) near their
    margin call, ``high_leverage`` 50x longs, one safe counterparty for each of these, and safe
    pairs for the rest. The maker, the at-risk and the high-leverage accounts come first and
    do not depend on ``accounts`` or ``seed``, so two populations share them exactly."""
    if accounts % 2 or accounts < 2 * (at_risk + high_leverage):
        raise ValueError("accounts must be even and >= 2 * (at_risk + high_leverage)")
    t0 = time.perf_counter()
    ex = CountingExchange(default_instruments(), clock=ManualClock(START_MS))
    if ex.markets[SYMBOL].instrument.maker_fee != MAKER_FEE:
        raise RuntimeError("BTC-PERP maker fee changed: update MAKER_FEE")
    b = _Builder(ex)
    b.account(MM_ID, MM_DEPOSIT, 20)
    for level in range(1, MM_LEVELS + 1):
        b.submit(PlaceOrder(MM_ID, SYMBOL, Side.BUY, MM_LEVEL_QTY, P0 - level * MM_STEP))
        b.submit(PlaceOrder(MM_ID, SYMBOL, Side.SELL, MM_LEVEL_QTY, P0 + level * MM_STEP))
    pop = Population(ex, accounts)
    risk_fee = notional(RISK_QTY) * MAKER_FEE // RATE_SCALE
    for i in range(at_risk):
        name = f"risk{i:04d}"
        margin = notional(RISK_QTY) // RISK_LEVERAGE
        extra = RISK_EXTRA_MAX * i // max(1, at_risk - 1)
        b.account(name, margin + risk_fee + extra, RISK_LEVERAGE)
        b.account(f"riskcp{i:04d}", notional(RISK_QTY) // 2, 20)
        b.pair(name, f"riskcp{i:04d}", Side.BUY if i % 2 == 0 else Side.SELL, RISK_QTY)
        pop.at_risk.append(name)
    for i in range(high_leverage):
        name = f"lev{i:06d}"
        margin = notional(RISK_QTY) // CRASH_LEVERAGE
        extra = CRASH_EXTRA_MAX * i // max(1, high_leverage)
        b.account(name, margin + risk_fee + extra, CRASH_LEVERAGE)
        b.account(f"levcp{i:06d}", notional(RISK_QTY) // 2, 20)
        b.pair(name, f"levcp{i:06d}", Side.BUY, RISK_QTY)
        pop.high_leverage.append(name)
    rng = random.Random(seed)
    for i in range((accounts - 2 * (at_risk + high_leverage)) // 2):
        qty = rng.randint(5, 500)  # 0.005 - 0.5 BTC
        long_id, short_id = f"safe{2 * i:06d}", f"safe{2 * i + 1:06d}"
        b.account(long_id, notional(qty) * rng.randint(20, 60) // 100, 20)
        b.account(short_id, notional(qty) * rng.randint(20, 60) // 100, 20)
        if rng.random() < 0.5:
            b.pair(long_id, short_id, Side.BUY, qty)
        else:
            b.pair(short_id, long_id, Side.SELL, qty)
    pop.commands = b.commands
    pop.setup_s = time.perf_counter() - t0
    return pop


def mark_path(updates: int, amplitude: int, seed: int = 7, center: int = P0) -> list[int]:
    """``updates`` marks: a triangle wave around ``center`` whose amplitude grows linearly to
    ``amplitude`` ticks over the first half of the run, plus seeded jitter of +-2% of it;
    always within ``center +- amplitude``."""
    rng = random.Random(seed)
    period = max(8, min(200, updates // 20)) // 4 * 4
    ramp = max(1, updates // 2)
    jitter = amplitude // 50
    out = []
    for t in range(updates):
        k = t % period
        tri = 4 * k - period if k < period // 2 else 3 * period - 4 * k  # in [-period, period]
        env = min(t + 1, ramp)
        price = center + amplitude * env * tri // (ramp * period) + rng.randint(-jitter, jitter)
        out.append(min(center + amplitude, max(center - amplitude, price)))
    return out


def conservation(ex: Exchange) -> tuple[int, int, int]:
    """``(sum(collateral - cost) + fees, deposits - withdrawals, net BTC-PERP position)``."""
    cash = ex.fees_collected
    net = 0
    for acc in ex.accounts.values():
        cash += acc.collateral
        for symbol, pos in acc.positions.items():
            cash -= pos.cost
            if symbol == SYMBOL:
                net += pos.size
    return cash, ex.total_deposits - ex.total_withdrawals, net


def full_scan(ex: Exchange) -> int:
    """What an engine without the index would do per mark update: every account's equity and
    maintenance margin at the marks. Returns how many accounts are liquidatable."""
    marks = {s: (m.mark, m.factor, m.instrument.brackets) for s, m in ex.markets.items()}
    hits = 0
    for acc in ex.accounts.values():
        equity, mm = acc.collateral, 0
        for symbol, pos in acc.positions.items():
            if pos.size:
                mark, factor, brackets = marks[symbol]
                value = pos.size * mark * factor
                equity += value - pos.cost
                mm += maintenance_margin(brackets, abs(value))
        if mm and equity <= mm:
            hits += 1
    return hits


def _percentile(sorted_values: Sequence[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def time_updates(ex: Exchange, symbol: str, path: Sequence[int]) -> dict[str, Any]:
    """Submit ``SetMarkPrice(symbol, p)`` for each ``p``, timing each; count what happened."""
    cmds = [SetMarkPrice(symbol, p) for p in path]
    times = [0] * len(cmds)
    submit, clock = ex.submit, time.perf_counter_ns
    outcomes: list[list[Event]] = []
    for i, cmd in enumerate(cmds):
        t0 = clock()
        events = submit(cmd)
        times[i] = clock() - t0
        if len(events) > 1 or type(events[0]) is not MarkPriceSet:
            outcomes.append(events)
    counts: Counter[str] = Counter()
    for events in outcomes:
        for event in events:
            counts[type(event).__name__] += 1
    ordered = sorted(times)
    return {
        "updates": len(cmds),
        "mean_us": sum(times) / len(times) / 1e3,
        "median_us": _percentile(ordered, 0.5) / 1e3,
        "p99_us": _percentile(ordered, 0.99) / 1e3,
        "max_us": ordered[-1] / 1e3,
        "total_s": sum(times) / 1e9,
        "events": dict(counts),
    }


def run_population(
    accounts: int, at_risk: int, updates: int, seed: int, scans: int = 3
) -> dict[str, Any]:
    """Build one population, then time the BTC mark updates, the idle-market reference and the
    full-scan reference. Returns plain data (it crosses a process boundary)."""
    pop = build_population(accounts, at_risk=at_risk, seed=seed)
    ex = pop.exchange
    before = conservation(ex)
    idle_p0 = ex.markets[IDLE_SYMBOL].instrument.initial_price
    idle_path = mark_path(updates, idle_p0 * AMPLITUDE_BP // 10_000, center=idle_p0)
    path = mark_path(updates, P0 * AMPLITUDE_BP // 10_000)
    gc.collect()
    gc.freeze()  # the population is not the code under test: keep it out of GC passes
    time_updates(ex, IDLE_SYMBOL, idle_path[:WARMUP])  # warm up the interpreter, untimed
    ex.evaluations.clear()
    btc = time_updates(ex, SYMBOL, path)
    evaluated = dict(ex.evaluations)
    idle = time_updates(ex, IDLE_SYMBOL, idle_path)
    scan_s = []
    for _ in range(scans):
        t0 = time.perf_counter()
        full_scan(ex)
        scan_s.append(time.perf_counter() - t0)
    gc.unfreeze()
    after = conservation(ex)
    return {
        "accounts": pop.accounts,
        "all_accounts": len(ex.accounts),
        "indexed": len(ex.markets[SYMBOL].risk),
        "commands": pop.commands,
        "setup_s": pop.setup_s,
        "at_risk": pop.at_risk,
        "btc": btc,
        "idle": idle,
        "evaluated": evaluated,
        "scan_us": min(scan_s) * 1e6,
        "conserved": before[0] == before[1] and after[0] == after[1] and after[2] == 0,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def crash_price(drop_bp: int = CRASH_DROP_BP) -> int:
    return P0 - P0 * drop_bp // 10_000


def run_crash(accounts: int, fraction_pct: int, seed: int) -> dict[str, Any]:
    """Build a population with ``fraction_pct``% 50x longs, then crash the mark 1.8% in one
    ``SetMarkPrice``; time it and check the outcome."""
    pop = build_population(
        accounts, at_risk=0, high_leverage=accounts * fraction_pct // 100, seed=seed
    )
    ex = pop.exchange
    before = conservation(ex)
    ex.evaluations.clear()
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    events = ex.submit(SetMarkPrice(SYMBOL, crash_price()))
    seconds = time.perf_counter() - t0
    gc.unfreeze()
    result = crash_outcome(pop, events, before)
    result.update(
        accounts=pop.accounts,
        commands=pop.commands,
        setup_s=pop.setup_s,
        crash_s=seconds,
        maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return result


def crash_outcome(
    pop: Population, events: Sequence[Event], before: tuple[int, int, int]
) -> dict[str, Any]:
    """Counts and checks after the crash command returned ``events``."""
    ex = pop.exchange
    started = [e.account for e in events if isinstance(e, LiquidationStarted)]
    fills = [e for e in events if isinstance(e, LiquidationFill)]
    cash, expected, net = conservation(ex)
    fund = ex.accounts[ex.markets[SYMBOL].insurance]
    fund_pos = fund.positions.get(SYMBOL)
    return {
        "events": len(events),
        "rejected": sum(1 for e in events if isinstance(e, Rejected)),
        "liquidations": len(started),
        "expected_liquidations": len(pop.high_leverage),
        "liquidated_as_expected": sorted(started) == sorted(pop.high_leverage),
        "finished": sum(1 for e in events if isinstance(e, LiquidationFinished)),
        "backstop_steps": sum(1 for f in fills if f.mode == "BACKSTOP"),
        "book_lots": sum(f.book_qty for f in fills),
        "takeover_lots": sum(f.takeover_qty for f in fills),
        "adl_lots": sum(f.adl_qty for f in fills),
        "trades": sum(1 for e in events if isinstance(e, Trade)),
        "transfers": sum(1 for e in events if isinstance(e, PositionTransferred)),
        "margin_calls": sum(1 for e in events if isinstance(e, MarginCall)),
        "evaluations": sum(pop.exchange.evaluations.values()),
        "fund_lots": fund_pos.size if fund_pos else 0,
        "cash_before": before[0],
        "cash": cash,
        "expected_cash": expected,
        "net_position": net,
        "conserved": before[0] == before[1] and cash == expected and net == 0,
    }


def _job(args: tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]) -> dict[str, Any]:
    fn, fn_args = args
    return fn(*fn_args)


def run_isolated(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh interpreter (spawn)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_job, ((fn, args),))


# -- report --------------------------------------------------------------------------------------
def _usdt(units: int) -> str:
    return f"{units / USDT:,.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=1_000, help="accounts, small population")
    parser.add_argument("--large", type=int, default=100_000, help="accounts, large population")
    parser.add_argument("--updates", type=int, default=10_000, help="mark updates to time")
    parser.add_argument("--at-risk", type=int, default=50, help="near-liquidation accounts")
    parser.add_argument(
        "--crash-accounts", type=int, default=None, help="accounts in the crash (default --large)"
    )
    parser.add_argument("--crash-fraction", type=int, default=10, help="%% of accounts at 50x")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per population (best kept)")
    parser.add_argument(
        "--quick", action="store_true", help="200 vs 20,000 accounts, 1,000 updates, 1 run"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.small, args.large, args.updates, args.repeat = 200, 20_000, 1_000, 1
    crash_accounts = args.crash_accounts or args.large

    wall = time.perf_counter()
    print(
        f"mark updates vs accounts: {SYMBOL}, {args.at_risk} at-risk accounts "
        f"({RISK_LEVERAGE}x, half long, half short) in both populations, "
        f"{args.updates:,} SetMarkPrice within +-{AMPLITUDE_BP / 100:.2f}%, "
        f"Python {platform.python_version()}"
    )
    runs: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
    for _ in range(args.repeat):  # interleaved, each in a fresh process
        for name, n in (("small", args.small), ("large", args.large)):
            runs[name].append(
                run_isolated(run_population, n, args.at_risk, args.updates, args.seed)
            )
    best = {name: min(rs, key=lambda r: r["btc"]["mean_us"]) for name, rs in runs.items()}
    idle = {name: min(r["idle"]["mean_us"] for r in rs) for name, rs in runs.items()}
    small, large = best["small"], best["large"]
    deterministic = all(
        r["evaluated"] == rs[0]["evaluated"] and r["btc"]["events"] == rs[0]["btc"]["events"]
        for rs in runs.values()
        for r in rs
    )

    print()
    print(
        f"{'population':<11}{'accounts':>9}{'setup s':>9}{'cmds':>9}{'µs/upd':>9}"
        f"{'median':>8}{'p99':>8}{'re-evals':>9}{'per upd':>9}{'margin':>7}{'liq':>5}"
        f"{'idle µs':>9}{'scan µs':>10}{'RSS MiB':>9}"
    )
    for name in ("small", "large"):
        r = best[name]
        btc = r["btc"]
        evals = sum(r["evaluated"].values())
        print(
            f"{name:<11}{r['accounts']:>9,}{r['setup_s']:>9.1f}{r['commands']:>9,}"
            f"{btc['mean_us']:>9.2f}{btc['median_us']:>8.2f}{btc['p99_us']:>8.1f}"
            f"{evals:>9,}{evals / btc['updates']:>9.3f}"
            f"{btc['events'].get('MarginCall', 0):>7}"
            f"{btc['events'].get('LiquidationStarted', 0):>5}"
            f"{idle[name]:>9.2f}{r['scan_us']:>10,.0f}{r['maxrss_mib']:>9.0f}"
        )
    runs_text = "; ".join(
        f"{name} " + " ".join(f"{r['btc']['mean_us']:.2f}" for r in rs) for name, rs in runs.items()
    )
    print(
        f"  µs/upd: mean of {args.updates:,} timed SetMarkPrice (timer included), best of "
        f"{args.repeat} run(s): {runs_text}\n"
        "  re-evals: accounts evaluated by those updates; margin/liq: MarginCall and"
        " LiquidationStarted events\n"
        f"  idle: the same updates on {IDLE_SYMBOL} (no positions); scan: one naive pass over"
        " every account's equity and maintenance margin"
    )
    ratio = large["btc"]["mean_us"] / small["btc"]["mean_us"]
    median_ratio = large["btc"]["median_us"] / small["btc"]["median_us"]
    baseline = idle["large"] / idle["small"]
    scan_ratio = large["scan_us"] / small["scan_us"]
    verdict = "meets" if ratio <= 2 else "FAILS"
    print()
    print(
        f"ratio large/small, µs per mark update: {ratio:.2f}x mean, {median_ratio:.2f}x median "
        f"({verdict} the <= 2x bar, with {large['accounts'] / small['accounts']:.0f}x the "
        "accounts)"
    )
    print(
        f"baseline ratio (the same updates on {IDLE_SYMBOL}, no positions): {baseline:.2f}x;"
        f" full-scan reference: {scan_ratio:.1f}x"
        f" ({large['scan_us'] / 1e3:,.1f} ms vs {small['scan_us'] / 1e3:,.2f} ms per update)"
    )
    same_set = small["evaluated"] == large["evaluated"]
    only_risky = set(large["evaluated"]) <= set(large["at_risk"])
    print(
        f"re-evaluated accounts: {len(small['evaluated'])} small, {len(large['evaluated'])} "
        f"large; identical (account, count): {same_set}; all among the at-risk: {only_risky};"
        f" events identical: {small['btc']['events'] == large['btc']['events']};"
        f" identical across runs: {deterministic}"
    )
    print(
        "money conserved before and after the updates: "
        f"small {all(r['conserved'] for r in runs['small'])}, "
        f"large {all(r['conserved'] for r in runs['large'])}"
    )

    crash = run_isolated(run_crash, crash_accounts, args.crash_fraction, args.seed)
    print()
    print(
        f"crash: {crash['accounts']:,} accounts, {crash['expected_liquidations']:,} of them "
        f"0.1 BTC longs at {CRASH_LEVERAGE}x; one SetMarkPrice -{CRASH_DROP_BP / 100:.2f}% "
        f"({P0 / 10:,.1f} -> {crash_price() / 10:,.1f})"
    )
    per_liq = crash["crash_s"] / max(1, crash["liquidations"]) * 1e6
    rows = [
        ("setup", f"{crash['setup_s']:.1f} s ({crash['commands']:,} commands)"),
        ("crash command", f"{crash['crash_s'] * 1e3:,.1f} ms, {crash['events']:,} events"),
        (
            "liquidations",
            f"{crash['liquidations']:,} (expected {crash['expected_liquidations']:,},"
            f" exactly those accounts: {crash['liquidated_as_expected']})",
        ),
        ("per liquidation", f"{per_liq:,.1f} µs"),
        ("finished", f"{crash['finished']:,}"),
        ("backstop (deep) steps", f"{crash['backstop_steps']:,}"),
        (
            "lots: book/takeover/adl",
            f"{crash['book_lots']:,} / {crash['takeover_lots']:,} / {crash['adl_lots']:,}",
        ),
        ("evaluations (incl. fund)", f"{crash['evaluations']:,}"),
        ("insurance fund position", f"{crash['fund_lots']:,} lots"),
        (
            "money conserved",
            f"{crash['conserved']}: sum(collateral - cost) + fees = "
            f"{_usdt(crash['cash'])} USDT, deposits - withdrawals = "
            f"{_usdt(crash['expected_cash'])} USDT, net position {crash['net_position']}",
        ),
        ("peak RSS", f"{crash['maxrss_mib']:.0f} MiB"),
    ]
    for label, value in rows:
        print(f"  {label:<25}{value}")
    print()
    print(f"total wall time {time.perf_counter() - wall:.0f} s")
    ok = (
        ratio <= 2
        and same_set
        and only_risky
        and deterministic
        and all(r["conserved"] for rs in runs.values() for r in rs)
        and crash["conserved"]
        and crash["liquidated_as_expected"]
        and crash["rejected"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

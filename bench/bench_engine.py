"""Throughput of the full exchange engine against a bare price-time order book.

    .venv/bin/python bench/bench_engine.py [--ops N] [--seed S] [--markets 1|2|3]
                                           [--repeat R] [--quick] [--profile]
                                           [--instructions N] [--cache-misses N]
                                           [--cache-i1 BYTES] [--cache-ll BYTES]
                                           [--recent-orders K]

One seeded stream of commands is generated up front as plain tuples (~60% resting GTC limit
orders with client ids around a slowly random-walking mid, ~30% cancels of a random open order
by order id, ~10% marketable orders - half IOC limit, half market - sweeping levels). Resting
orders come from maker accounts and marketable ones from taker accounts, so self-trade
prevention never fires and both implementations do exactly the same matching work.

Every measurement runs in a fresh ``spawn`` subprocess. The inputs (engine command objects,
or the bare book's pre-bound calls) are built before the clock starts and the collector is
frozen, so only ``submit`` / the book calls are timed, in process CPU time. Throughput is the
best of ``--repeat`` runs, alternating bare and engine; with two or more rounds the report adds
the median of the engine/bare ratios within each round (less exposed to a machine whose load
drifts during the run than the ratio of the bests).

Peak memory comes from a separate, untimed pass under ``tracemalloc``: the peak of traced
allocations during the run above the pre-run baseline (book and account state plus transient
events; the pre-built input stream is excluded). That pass also checks the engine's events -
no rejection, every command answered for the order id the generator predicted - and the
traded quantity, compared with the bare book's along with every market's trade count, best
bid/ask, open order count and full-depth digest.

The engine is measured as installed - compiled with mypyc unless the install was pure
Python (see README, "The compiled engine") - and, when it is compiled, a second time from its
Python sources (``PERPBOT_PURE_PYTHON=1`` in that subprocess) in the same run.

``--instructions N`` also counts machine instructions per command over the first N commands
with ``valgrind --tool=callgrind`` (each implementation run twice, with 0 and N commands, so
the set-up is subtracted). Unlike CPU time, the counts do not move with the machine's load.

``--cache-misses N`` also simulates the caches (``valgrind --tool=callgrind --cache-sim=yes``)
for commands W+1..W+N of a stream of W+N (W = ``--cache-warm``, 150,000 by default: by then the
engine holds its full client-id history), and prints instructions and level-1 instruction,
level-1 data and last-level misses per command. Instrumentation is off for the first W commands
and switched on with ``callgrind_control`` for the N measured ones. Slow (minutes): opt-in.
``--cache-i1 BYTES`` simulates a level-1 instruction cache of that size (8-way, 64-byte lines)
instead of valgrind's model of this machine's: how the misses fall with a larger cache shows
how much hot machine code the implementation runs through. ``--cache-ll BYTES`` does the same
for the last level (8-way, 64-byte lines): valgrind takes the last level's size from the CPU's
description, which a virtual machine may get wrong (here: 256 MiB, direct-mapped), and then
counts little beyond the first touch of memory; ``--cache-ll 524288``, this machine's level-2
cache per core, counts what has to come from beyond it.

``--recent-orders K`` has the engine remember K finished orders per account instead of its
default 1,000 (the client-id history): it shows what that working set costs in time.

``--profile`` runs the engine once in-process under cProfile and prints the top entries.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import multiprocessing
import os
import platform
import pstats
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_book import BareBook
from perpbot._native import PURE_ENV, is_compiled
from perpbot.risk.margin import RATE_SCALE, ceil_div
from sandbox.engine import (
    CancelOrder,
    Command,
    Deposit,
    Exchange,
    ExchangeConfig,
    Instrument,
    ManualClock,
    OrderType,
    PlaceOrder,
    Rejected,
    Side,
    TimeInForce,
    Trade,
    default_instruments,
)

# op kinds in the stream: (kind, market, order_id, account, side, price, qty); cancels stop
# after account. For MARKET, ``price`` is the engine's protection limit (mark +- market band).
ADD, CANCEL, IOC, MARKET = 0, 1, 2, 3
KIND_NAMES = ("add", "cancel", "ioc", "market")

N_MAKERS = 40
N_TAKERS = 10
DEPOSIT = 10**17  # 1e9 USDT per account: margin never binds
START_MS = 1_700_000_000_000
MAX_OPEN_PER_ACCOUNT = 200  # ExchangeConfig.max_open_orders (per account and market)
MID_RANGE = 0.01  # the mid walks within +-1% of the initial price (the price band is 5%)

# CPU time of the measuring process: the loops are single-threaded and do no I/O, and on a
# shared machine this is far less disturbed by other processes than wall-clock time.
TIMER = time.process_time

Op = tuple[int, ...]


def account_names() -> list[str]:
    return [f"mm{i:02d}" for i in range(N_MAKERS)] + [f"tk{i:02d}" for i in range(N_TAKERS)]


def instruments_for(markets: int) -> tuple[Instrument, ...]:
    instruments = default_instruments()
    if not 1 <= markets <= len(instruments):
        raise SystemExit(f"--markets must be 1..{len(instruments)}")
    return instruments[:markets]


class _MarketGen:
    """Generator-side state of one market: a bare book that tracks what is resting."""

    def __init__(self, inst: Instrument) -> None:
        self.book = BareBook()
        self.mark = inst.initial_price
        self.mid = inst.initial_price
        span = int(inst.initial_price * MID_RANGE)
        self.lo, self.hi = inst.initial_price - span, inst.initial_price + span
        band = inst.market_band
        self.buy_limit = self.mark * (RATE_SCALE + band) // RATE_SCALE
        self.sell_limit = ceil_div(self.mark * (RATE_SCALE - band), RATE_SCALE)
        # Smallest size whose notional clears min_notional anywhere inside the price band.
        lowest = ceil_div(self.mark * (RATE_SCALE - inst.price_band), RATE_SCALE)
        self.min_lots = max(
            inst.min_qty, ceil_div(inst.min_notional, lowest * inst.notional_factor)
        )
        self.open_ids: list[int] = []  # may hold filled ids; pruned lazily
        self.maker_open: list[set[int]] = [set() for _ in range(N_MAKERS)]
        self.owner: dict[int, int] = {}

    def maker_with_room(self, rng: random.Random) -> int:
        while True:
            maker = rng.randrange(N_MAKERS)
            ids = self.maker_open[maker]
            if len(ids) >= MAX_OPEN_PER_ACCOUNT:  # drop the ones that filled, then recheck
                orders = self.book.orders
                ids.intersection_update(orders)
            if len(ids) < MAX_OPEN_PER_ACCOUNT:
                return maker

    def pick_open(self, rng: random.Random) -> int | None:
        """Remove and return a random resting order id (None if nothing rests)."""
        open_ids, orders = self.open_ids, self.book.orders
        while open_ids:
            i = rng.randrange(len(open_ids))
            order_id = open_ids[i]
            open_ids[i] = open_ids[-1]
            open_ids.pop()
            if order_id in orders:
                return order_id
        return None


def generate(ops: int, seed: int, markets: int = 1) -> list[Op]:
    """The seeded command stream, as plain tuples (see ADD/CANCEL/IOC/MARKET).

    Order ids are predicted: the engine numbers accepted orders 1, 2, ... in arrival order
    across all markets, and no command of this stream is ever rejected (checked by the verify
    pass), so the n-th order placed gets id n.
    """
    rng = random.Random(seed)
    gens = [_MarketGen(inst) for inst in instruments_for(markets)]
    stream: list[Op] = []
    next_id = 1
    for _ in range(ops):
        m = rng.randrange(len(gens))
        g = gens[m]
        book = g.book
        step = rng.random()
        if step < 0.2:
            g.mid = max(g.lo, g.mid - 1)
        elif step > 0.8:
            g.mid = min(g.hi, g.mid + 1)
        u = rng.random()
        if 0.6 <= u < 0.9:
            order_id = g.pick_open(rng)
            if order_id is not None:
                maker = g.owner.pop(order_id)
                g.maker_open[maker].discard(order_id)
                book.cancel(order_id)
                stream.append((CANCEL, m, order_id, maker))
                continue
            u = 0.0  # nothing to cancel: add instead
        order_id = next_id
        next_id += 1
        side = 1 if rng.random() < 0.5 else -1
        if u < 0.6:
            offset = 1 + min(int(rng.expovariate(0.1)), 200)
            if side > 0:
                price = g.mid - offset
                best_ask = book.best_ask()
                if best_ask is not None and price >= best_ask:
                    price = best_ask - 1
            else:
                price = g.mid + offset
                best_bid = book.best_bid()
                if best_bid is not None and price <= best_bid:
                    price = best_bid + 1
            qty = g.min_lots * rng.randint(1, 40)
            maker = g.maker_with_room(rng)
            book.add(order_id, side, price, qty)
            g.open_ids.append(order_id)
            g.maker_open[maker].add(order_id)
            g.owner[order_id] = maker
            stream.append((ADD, m, order_id, maker, side, price, qty))
        else:
            taker = N_MAKERS + rng.randrange(N_TAKERS)
            qty = g.min_lots * rng.randint(1, 120)
            if rng.random() < 0.5:
                best = book.best_ask() if side > 0 else book.best_bid()
                base = g.mid + 10 * side if best is None else best
                price = base + side * rng.randint(0, 10)
                kind = IOC
            else:
                price = g.buy_limit if side > 0 else g.sell_limit
                kind = MARKET
            book.take(side, price, qty)
            stream.append((kind, m, order_id, taker, side, price, qty))
    return stream


# -- the two implementations -------------------------------------------------------------------
def build_engine(
    stream: Sequence[Op], symbols: Sequence[str], recent_orders: int | None = None
) -> tuple[Exchange, list[Command], list[int]]:
    """A funded exchange, the stream as engine commands, and each command's expected order id.
    ``recent_orders``: finished orders remembered per account (the engine's default if None)."""
    insts = [i for i in default_instruments() if i.symbol in symbols]
    config = (
        ExchangeConfig() if recent_orders is None else ExchangeConfig(recent_orders=recent_orders)
    )
    ex = Exchange(insts, clock=ManualClock(START_MS), config=config)
    names = account_names()
    for name in names:
        ex.submit(Deposit(name, DEPOSIT))
    sides = {1: Side.BUY, -1: Side.SELL}
    gtc, ioc = TimeInForce.GTC, TimeInForce.IOC
    limit, market = OrderType.LIMIT, OrderType.MARKET
    cmds: list[Command] = []
    for op in stream:
        kind, m, order_id, acct = op[0], op[1], op[2], op[3]
        sym, name = symbols[m], names[acct]
        if kind == CANCEL:
            cmds.append(CancelOrder(name, sym, order_id=order_id))
        elif kind == ADD:
            cmds.append(
                PlaceOrder(name, sym, sides[op[4]], op[6], op[5], limit, gtc, False, f"c{order_id}")
            )
        elif kind == IOC:
            cmds.append(PlaceOrder(name, sym, sides[op[4]], op[6], op[5], limit, ioc))
        else:
            cmds.append(PlaceOrder(name, sym, sides[op[4]], op[6], None, market))
    return ex, cmds, [op[2] for op in stream]


def build_bare(
    stream: Sequence[Op], n_markets: int
) -> tuple[list[BareBook], list[tuple[Callable[..., Any], tuple[int, ...]]]]:
    """One book per market and the stream as pre-bound calls."""
    books = [BareBook() for _ in range(n_markets)]
    calls: list[tuple[Callable[..., Any], tuple[int, ...]]] = []
    for op in stream:
        kind, book = op[0], books[op[1]]
        if kind == CANCEL:
            calls.append((book.cancel, (op[2],)))
        elif kind == ADD:
            calls.append((book.add, (op[2], op[4], op[5], op[6])))
        else:
            calls.append((book.take, (op[4], op[5], op[6])))
    return books, calls


def _digest(depth: Any) -> str:
    return hashlib.sha256(repr(depth).encode()).hexdigest()[:12]


def engine_state(ex: Exchange, symbols: Sequence[str]) -> list[tuple[Any, ...]]:
    """Per market: (trades, best bid, best ask, open orders, depth digest)."""
    out = []
    for sym in symbols:
        book = ex.markets[sym].book
        snap = ex.book_snapshot(sym, depth=10**9)
        open_orders = sum(
            1 for a in ex.accounts.values() for o in a.open_orders.values() if o.market == sym
        )
        out.append(
            (
                ex.markets[sym].trade_id,
                book.best_bid(),
                book.best_ask(),
                open_orders,
                _digest((snap.bids, snap.asks)),
            )
        )
    return out


def bare_state(books: Sequence[BareBook]) -> list[tuple[Any, ...]]:
    return [
        (
            b.trades,
            b.best_bid(),
            b.best_ask(),
            len(b.orders),
            _digest((b.bids.depth(), b.asks.depth())),
        )
        for b in books
    ]


def measure(
    impl: str,
    stream: Sequence[Op],
    symbols: Sequence[str],
    *,
    verify: bool,
    trace: bool = False,
    recent_orders: int | None = None,
) -> dict[str, Any]:
    """Run the stream once. Timed when ``verify`` is False; otherwise untimed with checks (and,
    with ``trace``, the tracemalloc peak above the pre-run baseline)."""
    result: dict[str, Any] = {"impl": impl, "ops": len(stream)}
    if impl != "bare":
        impl = "engine"  # "engine-py" is the same code, imported from its Python sources
        ex, cmds, ids = build_engine(stream, symbols, recent_orders)
        submit = ex.submit
    else:
        books, calls = build_bare(stream, len(symbols))
    gc.collect()
    gc.freeze()  # the pre-built inputs are not the code under test: keep them out of GC passes
    if not verify:
        if impl == "engine":
            t0 = TIMER()
            for cmd in cmds:
                submit(cmd)
            seconds = TIMER() - t0
        else:
            t0 = TIMER()
            for fn, args in calls:
                fn(*args)
            seconds = TIMER() - t0
        result["seconds"] = seconds
        result["ops_per_s"] = len(stream) / seconds
    else:
        if trace:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
        if impl == "engine":
            traded = rejected = wrong_id = 0
            for cmd, order_id in zip(cmds, ids, strict=True):
                events = submit(cmd)
                first = events[0]
                if type(first) is Rejected:
                    rejected += 1
                    continue
                if getattr(first, "order_id", None) != order_id:
                    wrong_id += 1
                for event in events:
                    if type(event) is Trade:
                        traded += event.qty
            result.update(traded_qty=traded, rejected=rejected, wrong_id=wrong_id)
        else:
            for fn, args in calls:
                fn(*args)
            result["traded_qty"] = sum(b.traded_qty for b in books)
        if trace:
            result["peak_bytes"] = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
    result["state"] = engine_state(ex, symbols) if impl == "engine" else bare_state(books)
    gc.unfreeze()
    return result


def _job(args: tuple[str, list[Op], tuple[str, ...], bool, int | None]) -> dict[str, Any]:
    impl, stream, symbols, verify, recent_orders = args
    return measure(impl, stream, symbols, verify=verify, trace=verify, recent_orders=recent_orders)


def run_isolated(
    impl: str,
    stream: list[Op],
    symbols: tuple[str, ...],
    verify: bool,
    recent_orders: int | None = None,
) -> Any:
    """One measurement in a fresh interpreter (spawn); ``engine-py`` runs with
    ``PERPBOT_PURE_PYTHON=1`` so the engine is imported from its Python sources."""
    ctx = multiprocessing.get_context("spawn")
    saved = os.environ.get(PURE_ENV)
    if impl == "engine-py":
        os.environ[PURE_ENV] = "1"  # inherited by the spawned interpreter
    try:
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            return pool.apply(_job, ((impl, stream, symbols, verify, recent_orders),))
    finally:
        if saved is None:
            os.environ.pop(PURE_ENV, None)
        else:
            os.environ[PURE_ENV] = saved


def _runner(impl: str, ops: int, seed: int, markets: int) -> Callable[[int, int], None]:
    """Build the inputs of a stream of ``ops`` commands (then freeze the collector); return
    ``run(lo, hi)``, which applies commands ``lo .. hi - 1``."""
    symbols = tuple(i.symbol for i in instruments_for(markets))
    stream = generate(ops, seed, markets)
    if impl == "bare":
        _, calls = build_bare(stream, len(symbols))

        def run(lo: int, hi: int) -> None:
            for fn, args in calls[lo:hi]:
                fn(*args)

    else:
        ex, cmds, _ = build_engine(stream, symbols)
        submit = ex.submit

        def run(lo: int, hi: int) -> None:
            for cmd in cmds[lo:hi]:
                submit(cmd)

    gc.collect()
    gc.freeze()
    return run


def _count_run(impl: str, ops: int, seed: int, markets: int, run: int) -> None:
    """Body of one callgrind run: build the inputs of ``ops`` commands, run the first ``run``."""
    _runner(impl, ops, seed, markets)(0, run)


def count_instructions(impl: str, ops: int, seed: int, markets: int) -> float | None:
    """Instructions per command over the first ``ops`` commands (callgrind), or None when
    valgrind is not installed."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    env = dict(os.environ)
    if impl == "engine-py":
        env[PURE_ENV] = "1"
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in (0, ops):
            cmd = [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/out.%p",
                sys.executable,
                __file__,
                "--count-run",
                f"{impl},{ops},{seed},{markets},{run}",
            ]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            found = re.search(r"Collected : (\d+)", done.stderr)
            if found is None:
                raise RuntimeError(f"no callgrind total in: {done.stderr[-500:]}")
            totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / ops


# callgrind's cache-simulation events reported per command: instructions, level-1 instruction
# misses, level-1 data misses (reads, writes), last-level data misses (reads, writes).
CACHE_EVENTS = ("Ir", "I1mr", "D1mr", "D1mw", "DLmr", "DLmw")


def _wait_for(
    path: Path, proc: subprocess.Popen[bytes] | None = None, timeout: float = 3600
) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the measured process exited early ({proc.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path.name} after {timeout} s")
        time.sleep(0.05)


def _cache_run(impl: str, seed: int, markets: int, warm: int, n: int, signals: Path) -> None:
    """Body of one ``--cache-misses`` run: ``warm`` commands, then signal ``ready`` and wait for
    ``go`` (the parent switches instrumentation on), run ``n`` more, signal ``done`` and wait
    for ``stop`` (it switches instrumentation off)."""
    run = _runner(impl, warm + n, seed, markets)
    run(0, warm)
    (signals / "ready").touch()
    _wait_for(signals / "go")
    run(warm, warm + n)
    (signals / "done").touch()
    _wait_for(signals / "stop")


def count_cache_misses(
    impl: str,
    warm: int,
    n: int,
    seed: int,
    markets: int,
    i1_bytes: int | None = None,
    ll_bytes: int | None = None,
) -> dict[str, float] | None:
    """``CACHE_EVENTS`` per command over commands ``warm+1 .. warm+n`` (callgrind's cache
    simulation), or None when valgrind is not installed."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        return None
    env = dict(os.environ)
    if impl == "engine-py":
        env[PURE_ENV] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        signals = Path(tmp)
        out = signals / "callgrind.out"
        cmd = [
            valgrind,
            "--tool=callgrind",
            "--instr-atstart=no",
            "--cache-sim=yes",
            *([f"--I1={i1_bytes},8,64"] if i1_bytes else []),
            *([f"--LL={ll_bytes},8,64"] if ll_bytes else []),
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--cache-run",
            f"{impl},{seed},{markets},{warm},{n},{tmp}",
        ]
        with subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ) as proc:
            try:
                _wait_for(signals / "ready", proc)
                switch = [control, "-i", "on", str(proc.pid)]
                subprocess.run(switch, capture_output=True, check=True)
                (signals / "go").touch()
                _wait_for(signals / "done", proc)
                switch[2] = "off"
                subprocess.run(switch, capture_output=True, check=True)
                (signals / "stop").touch()
                proc.wait(timeout=600)
            finally:
                if proc.poll() is None:
                    proc.kill()
        names: list[str] = []
        totals: list[int] = []
        for line in out.read_text().splitlines():
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith("totals:") or (line.startswith("summary:") and not totals):
                totals = [int(v) for v in line.split()[1:]]
    found = dict(zip(names, totals, strict=False))
    return {event: found.get(event, 0) / n for event in CACHE_EVENTS}


def profile_engine(stream: Sequence[Op], symbols: Sequence[str], top: int = 25) -> None:
    ex, cmds, _ = build_engine(stream, symbols)
    submit = ex.submit
    profiler = cProfile.Profile()
    profiler.enable()
    for cmd in cmds:
        submit(cmd)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


# -- report --------------------------------------------------------------------------------------
def _fmt_rate(x: float) -> str:
    return f"{x:>12,.0f}"


def _print_cache_misses(
    impls: Sequence[str],
    warm: int,
    n: int,
    seed: int,
    markets: int,
    i1_bytes: int | None,
    ll_bytes: int | None,
) -> None:
    rows = {
        impl: count_cache_misses(impl, warm, n, seed, markets, i1_bytes, ll_bytes) for impl in impls
    }
    sizes = (f", {i1_bytes:,}-byte L1i" if i1_bytes else "") + (
        f", {ll_bytes:,}-byte last level" if ll_bytes else ""
    )
    print()
    print(
        f"cache simulation (callgrind --cache-sim=yes{sizes}), commands "
        f"{warm + 1:,}-{warm + n:,}, per command:"
    )
    print(f"{'impl':<10}{'instr':>9}{'L1i miss':>10}{'L1d miss':>10}{'LL miss':>9}")
    for impl, row in rows.items():
        if row is None:
            print(f"{impl:<10} valgrind is not installed, nothing counted")
            continue
        print(
            f"{impl:<10}{row['Ir']:>9,.0f}{row['I1mr']:>10,.1f}"
            f"{row['D1mr'] + row['D1mw']:>10,.1f}{row['DLmr'] + row['DLmw']:>9,.1f}"
        )


def paired_ratios(engine: Sequence[float], bare: Sequence[float]) -> list[float]:
    """The engine's rate over the bare book's in each round, sorted. A round runs the bare book
    and then the engine, back to back: their ratio within a round is less exposed to the
    machine's load drifting over the whole run than the ratio of the two bests."""
    return sorted(e / b for e, b in zip(engine, bare, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=500_000, help="commands in the stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markets", type=int, default=1, help="1..3 (BTC, ETH, SOL)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per implementation")
    parser.add_argument("--quick", action="store_true", help="20,000 ops, 1 repeat")
    parser.add_argument("--profile", action="store_true", help="cProfile the engine instead")
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count instructions per command over the first N commands (valgrind)",
    )
    parser.add_argument(
        "--cache-misses",
        type=int,
        default=0,
        metavar="N",
        help="also simulate the caches over N commands after --cache-warm (valgrind; minutes)",
    )
    parser.add_argument("--cache-warm", type=int, default=150_000, metavar="W")
    parser.add_argument(
        "--cache-i1",
        type=int,
        default=None,
        metavar="BYTES",
        help="with --cache-misses: simulate an L1 instruction cache of BYTES (8-way, 64 B lines)",
    )
    parser.add_argument(
        "--cache-ll",
        type=int,
        default=None,
        metavar="BYTES",
        help="with --cache-misses: simulate a last-level cache of BYTES (8-way, 64 B lines)",
    )
    parser.add_argument(
        "--recent-orders",
        type=int,
        default=None,
        metavar="K",
        help="the engine remembers K finished orders per account (default: the engine's, 1,000)",
    )
    parser.add_argument("--count-run", help=argparse.SUPPRESS)  # internal: one callgrind run
    parser.add_argument("--cache-run", help=argparse.SUPPRESS)  # internal: one cache-sim run
    args = parser.parse_args(argv)
    for option, size in (("--cache-i1", args.cache_i1), ("--cache-ll", args.cache_ll)):
        if size is not None and (size < 512 or size & (size - 1)):
            parser.error(f"{option} must be a power of two of at least 512 bytes, got {size}")
    if args.count_run:
        impl, *numbers = args.count_run.split(",")
        ops, seed, markets, run = (int(n) for n in numbers)
        _count_run(impl, ops, seed, markets, run)
        return 0
    if args.cache_run:
        impl, seed_s, markets_s, warm_s, n_s, signals = args.cache_run.split(",")
        _cache_run(impl, int(seed_s), int(markets_s), int(warm_s), int(n_s), Path(signals))
        return 0
    if args.quick:
        args.ops, args.repeat = 20_000, 1
    symbols = tuple(i.symbol for i in instruments_for(args.markets))

    t0 = time.perf_counter()
    stream = generate(args.ops, args.seed, args.markets)
    gen_s = time.perf_counter() - t0
    counts = [0, 0, 0, 0]
    for op in stream:
        counts[op[0]] += 1
    mix = ", ".join(f"{n:,} {KIND_NAMES[k]}" for k, n in enumerate(counts))
    print(
        f"engine vs bare book: {len(stream):,} ops, seed {args.seed}, {', '.join(symbols)}, "
        f"{N_MAKERS} maker + {N_TAKERS} taker accounts, Python {platform.python_version()}"
    )
    print(f"stream: {mix} (generated in {gen_s:.1f}s, not timed)")
    if args.recent_orders is not None:
        print(f"engine config: {args.recent_orders:,} finished orders remembered per account")
    if args.profile:
        profile_engine(stream, symbols)
        return 0

    compiled = is_compiled()
    impls = ("bare", "engine", "engine-py") if compiled else ("bare", "engine")
    print(
        "engine build: compiled with mypyc (engine-py: the same code from its Python sources)"
        if compiled
        else "engine build: pure Python (not compiled; see README, 'The compiled engine')"
    )
    runs: dict[str, list[float]] = {impl: [] for impl in impls}
    for _ in range(args.repeat):
        for impl in impls:
            runs[impl].append(
                run_isolated(impl, stream, symbols, False, args.recent_orders)["ops_per_s"]
            )
    checks = {impl: run_isolated(impl, stream, symbols, True, args.recent_orders) for impl in impls}
    instructions = {
        impl: count_instructions(impl, min(args.instructions, len(stream)), args.seed, args.markets)
        for impl in (impls if args.instructions else ())
    }

    best = {impl: max(rates) for impl, rates in runs.items()}
    print()
    header = f"{'impl':<10}{'best ops/s':>12}{'vs bare':>9}  {'runs (ops/s)':<36}{'peak mem':>10}"
    print(header + (f"{'instr/cmd':>11}{'vs bare':>9}" if instructions else ""))
    for impl in impls:
        rates = " ".join(f"{r:,.0f}" for r in runs[impl])
        mib = checks[impl]["peak_bytes"] / 2**20
        line = (
            f"{impl:<10}{_fmt_rate(best[impl])}{best[impl] / best['bare']:>8.3f}x  "
            f"{rates:<36}{mib:>7.1f} MiB"
        )
        count = instructions.get(impl)
        bare_count = instructions.get("bare")
        if count is not None and bare_count is not None:
            line += f"{count:>11,.0f}{bare_count / count:>8.3f}x"
        print(line)
    ratio = best["engine"] / best["bare"]
    verdict = "meets" if ratio >= 0.5 else "BELOW"
    print(f"ratio engine/bare: {ratio:.3f}x ({verdict} the 0.5x bar)")
    if args.repeat > 1:
        paired = paired_ratios(runs["engine"], runs["bare"])
        print(
            f"ratio within each round: median {statistics.median(paired):.3f}x "
            f"(range {paired[0]:.3f}-{paired[-1]:.3f}x over {len(paired)} rounds)"
        )
    print("ops/s: commands per second of process CPU time, each run in a fresh subprocess")
    print("peak mem: tracemalloc peak above the pre-run baseline, separate untimed pass")
    if instructions:
        counted = min(args.instructions, len(stream))
        if None in instructions.values():
            print("instr/cmd: valgrind is not installed, nothing counted")
        else:
            print(f"instr/cmd: callgrind, first {counted:,} commands, set-up subtracted")
    if compiled:
        py = checks["engine-py"]
        same = (
            py["traded_qty"] == checks["engine"]["traded_qty"]
            and py["state"] == checks["engine"]["state"]
        )
        print(f"compiled vs pure-Python engine: {'same results' if same else 'RESULTS DIFFER'}")
        if not same:
            return 1

    if args.cache_misses:
        measured = ("bare", "engine")  # (the pure-Python engine would take far longer)
        _print_cache_misses(
            measured,
            args.cache_warm,
            args.cache_misses,
            args.seed,
            args.markets,
            args.cache_i1,
            args.cache_ll,
        )

    bare, engine = checks["bare"], checks["engine"]
    print()
    print(f"{'check':<26}{'bare':>22}{'engine':>22}")
    rows: list[tuple[str, Any, Any]] = [
        ("traded qty (lots)", bare["traded_qty"], engine["traded_qty"]),
        ("rejected commands", 0, engine["rejected"]),
        ("unexpected order ids", 0, engine["wrong_id"]),
    ]
    labels = ("trades", "best bid", "best ask", "open orders", "depth sha256")
    for sym, b_state, e_state in zip(symbols, bare["state"], engine["state"], strict=True):
        for label, b_val, e_val in zip(labels, b_state, e_state, strict=True):
            rows.append((f"{sym} {label}", b_val, e_val))
    ok = True
    for label, b_val, e_val in rows:
        same = b_val == e_val
        ok &= same
        print(f"{label:<26}{b_val!s:>22}{e_val!s:>22}{'' if same else '  MISMATCH'}")
    print("agreement: OK" if ok else "agreement: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The training run of the engine's profile-guided build (see setup.py, ``PERPBOT_PGO``).

    python build_tools/pgo_training.py [COMMANDS]

setup.py first compiles the engine with ``-fprofile-generate``, runs this script against that
build, and compiles it again with the profile it wrote. The profile tells the C compiler which
branches and functions run often, so that it can lay the code out hot-first (fewer
instruction-cache misses) and inline where it pays; it does not change what the code computes.

The workload is deliberately not the benchmark's stream (bench/bench_engine.py): its own seeded
mix over three markets, with what that stream never does - amends, post-only and reduce-only
orders, cancels by client id, cancel-all, rejections (unknown and finished orders, off-band
prices), leverage changes, mark moves, funding ticks and liquidations. It uses only the public
engine API, the engine's margin arithmetic and the standard library, so it runs in the isolated
build environment (setup.py stubs the packages' ``__init__`` files).
"""

from __future__ import annotations

import random
import sys
from collections import Counter

from perpbot.risk.margin import RATE_SCALE, ceil_div
from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    Event,
    Exchange,
    ManualClock,
    OrderAccepted,
    OrderType,
    PlaceOrder,
    Rejected,
    SetLeverage,
    SetMarkPrice,
    Side,
    Tick,
    TimeInForce,
    default_instruments,
)

START_MS = 1_700_000_000_000
MAKERS = 24
TAKERS = 8


def run(commands: int, seed: int = 7) -> Counter[str]:
    """Run ``commands`` steps of the workload; return the events by kind."""
    rng = random.Random(seed)
    clock = ManualClock(START_MS)
    instruments = default_instruments()
    ex = Exchange(instruments, clock=clock)
    seen: Counter[str] = Counter()

    def submit(command: Command) -> list[Event]:
        """``ex.submit``, counting its events by kind (``Rejected:<code>``). (Not a subclass:
        compiled code calls an interpreted subclass's methods the slow, generic way.)"""
        events = ex.submit(command)
        for event in events:
            kind = type(event).__name__
            seen[f"{kind}:{event.code}" if isinstance(event, Rejected) else kind] += 1
        return events

    makers = [f"pm{i}" for i in range(MAKERS)]
    takers = [f"pt{i}" for i in range(TAKERS)]
    for name in makers + takers:
        submit(Deposit(name, 10**17))
    mids = {inst.symbol: inst.initial_price for inst in instruments}
    lots = {}
    for inst in instruments:
        low = inst.initial_price * (RATE_SCALE - inst.price_band) // RATE_SCALE
        # the smallest size whose notional clears min_notional anywhere inside the price band
        smallest = ceil_div(inst.min_notional, low * inst.notional_factor)
        lots[inst.symbol] = max(inst.min_qty, smallest)
    open_ids: dict[str, list[tuple[str, int, str | None]]] = {name: [] for name in makers + takers}
    serial = 0

    def place(name: str, command: PlaceOrder) -> None:
        events = submit(command)
        resting = command.order_type is OrderType.LIMIT and command.tif is not TimeInForce.IOC
        if resting and events and type(events[0]) is OrderAccepted:
            open_ids[name].append((command.market, events[0].order_id, command.client_id))

    for step in range(commands):
        inst = instruments[rng.randrange(len(instruments))]
        symbol, unit = inst.symbol, lots[inst.symbol]
        mid = mids[symbol] = max(
            inst.initial_price * 99 // 100,
            min(inst.initial_price * 101 // 100, mids[symbol] + rng.choice((-1, 0, 0, 1))),
        )
        u = rng.random()
        if u < 0.50:  # a resting limit order near the mid
            name = makers[rng.randrange(MAKERS)]
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            offset = 1 + min(int(rng.expovariate(0.08)), 300)
            price = mid - offset if side is Side.BUY else mid + offset
            serial += 1
            tif = TimeInForce.POST_ONLY if rng.random() < 0.1 else TimeInForce.GTC
            place(
                name,
                PlaceOrder(
                    name, symbol, side, unit * rng.randint(1, 30), price, OrderType.LIMIT, tif,
                    rng.random() < 0.03, f"p{serial}",
                ),
            )  # fmt: skip
        elif u < 0.75:  # cancel one (sometimes one that has already filled: a rejection)
            name = makers[rng.randrange(MAKERS)]
            ids = open_ids[name]
            if ids:
                market, order_id, client_id = ids.pop(rng.randrange(len(ids)))
                if client_id is not None and rng.random() < 0.3:
                    submit(CancelOrder(name, market, client_id=client_id))
                else:
                    submit(CancelOrder(name, market, order_id=order_id))
        elif u < 0.80:  # amend: a new price (loses priority) or a smaller size (keeps it)
            name = makers[rng.randrange(MAKERS)]
            ids = open_ids[name]
            if ids:
                market, order_id, _ = ids[rng.randrange(len(ids))]
                if rng.random() < 0.5:
                    step_ticks = rng.choice((-3, -2, -1, 1, 2, 3))
                    submit(AmendOrder(name, market, order_id=order_id, price=mid + step_ticks))
                else:
                    submit(AmendOrder(name, market, order_id=order_id, qty=unit))
        elif u < 0.88:  # a taker: IOC limit or market, sometimes reduce-only
            name = takers[rng.randrange(TAKERS)]
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            qty = unit * rng.randint(1, 6)
            reduce_only = rng.random() < 0.1
            if rng.random() < 0.5:
                price = mid + (1 if side is Side.BUY else -1) * rng.randint(0, 8)
                place(
                    name,
                    PlaceOrder(
                        name, symbol, side, qty, price, OrderType.LIMIT, TimeInForce.IOC,
                        reduce_only,
                    ),
                )  # fmt: skip
            else:
                kind = OrderType.MARKET
                place(name, PlaceOrder(name, symbol, side, qty, None, kind, None, reduce_only))
        elif u < 0.95:  # the mark follows the mid
            submit(SetMarkPrice(symbol, mid))
        elif u < 0.955:  # a new account levers up; a mark shock then liquidates it
            serial += 1
            name = f"pr{serial}"
            submit(Deposit(name, 10**11))
            submit(SetLeverage(name, symbol, 50))
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            qty = 15 * 10**11 // (mid * inst.notional_factor)  # 15x the deposit
            submit(PlaceOrder(name, symbol, side, max(unit, qty), None, OrderType.MARKET))
            shock = mid * rng.randint(6, 10) // 100
            submit(SetMarkPrice(symbol, mid - shock if side is Side.BUY else mid + shock))
            clock.advance(1_000)
            submit(Tick())
            submit(SetMarkPrice(symbol, mid))
        elif u < 0.97:  # bad input and unknown orders are rejected without a trace
            name = takers[rng.randrange(TAKERS)]
            submit(CancelOrder(name, symbol, order_id=10**12 + step))
            submit(PlaceOrder(name, symbol, Side.BUY, unit, mid * 2, OrderType.LIMIT))
        elif u < 0.972:
            name = makers[rng.randrange(MAKERS)]
            submit(CancelAll(name, symbol))
            open_ids[name] = [entry for entry in open_ids[name] if entry[0] != symbol]
        else:  # time passes: funding samples and settlements, liquidation steps
            clock.advance(rng.randint(1, 60_000))
            submit(Tick())
    return seen


def main(argv: list[str]) -> int:
    commands = int(argv[1]) if len(argv) > 1 else 150_000
    accepted = run(commands)["OrderAccepted"]
    if accepted < commands // 4:  # the workload itself broke: no useful profile
        print(f"pgo training: only {accepted:,} of {commands:,} steps placed an order")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

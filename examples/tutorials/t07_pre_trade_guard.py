"""Tutorial 7 — The pre-trade guard in a production bot.

Run: ``python -m examples.tutorials.t07_pre_trade_guard`` (real server over HTTP and
WebSocket, about ten seconds).

**What you will see.** The sandbox server on a loopback port with its simulated market (a
liquidity agent keeps a deep book around the index; small random flow trades), its clock under
the admin API's control. Two bots with 13,000 USDT each connect with the SDK and run the same
strategy: go long 4 BTC at 20x, and buy 0.5 BTC more on every dip.

* The **unguarded** bot sends its orders straight to ``AsyncClient``. Its liquidation price
  is about 4.8% under the entry.
* The **guarded** bot sends every order through ``perpbot.guard.Guard`` with a
  ``GuardPolicy`` that wants the liquidation price at least 3 daily standard deviations away
  (``min_liquidation_sigmas = 3`` at 60% annual volatility, i.e. about 9.4%), resizes what it
  can, and trips its kill switch after 3 rejections.

Then spot prices fall 5% in four simulated minutes (the admin API pins the three index sources
a step lower every 10 s) and stay there. The guard resized the entry to about 2.3 BTC; it
refuses every dip buy, because each would pull the liquidation price inside 3 sigmas; after
the third refusal its kill switch stops the bot. The unguarded bot's dip buys are refused by
the exchange for lack of margin, and its position is liquidated step by step (20% at a time,
every 30 s, docs/mechanics.md §14), each step arriving on its ``liquidations`` WebSocket
channel. The guarded bot ends the crash with its position intact.

**Why.** The guard computes the account after the order with the exchange's own margin
arithmetic (docs/risk.md §2: liquidation price, distance in sigmas, stress), so it knows
before sending what the exchange will do to that position on a given move. Sizing from a
volatility budget rather than from the leverage the venue allows leaves room for the move that
a 20x position cannot take.

**What to do in a bot.** Route every placement through one ``Guard`` (docs/risk.md §6); keep
the policy in TOML next to the bot; on ``KillSwitchTripped`` page a human and cancel orders
(cancels are never blocked); re-arm with ``guard.reset()`` only after a person has looked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from perpbot import AsyncClient
from perpbot.errors import APIError, RiskRejected
from perpbot.guard import Guard, GuardPolicy, KillSwitchTripped
from sandbox.charts import Chart, Marker, Panel, Series, save_chart
from sandbox.config import AccountSeed, SandboxSettings
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState

from .common import ADMIN_TOKEN, Admin, out_dir

MARKET = "BTC-PERP"
START_PRICE = Decimal(60000)
DROP = Decimal("0.05")
CRASH_STEPS = 24  # index steps of DROP / CRASH_STEPS, every STEP_MS
STEP_MS = 10_000
HOLD_STEPS = 18
WANT = "4"
DIP = "0.5"
DIP_AT = (3, 6, 9, 12, 15)  # crash steps at which both bots buy the dip
COLLATERAL = "13000"
BOTS = {
    "guarded": ("guarded-key-01", "guarded-secret-0123456789"),
    "unguarded": ("unguarded-key-01", "unguarded-secret-0123456789"),
}

POLICY = GuardPolicy.from_toml(
    """
resize = "resize"
stress = false
cache_ttl_s = 0

[risk]
min_liquidation_sigmas = "3"

[volatility]
"BTC-PERP" = "0.6"

[kill_switch]
max_rejections = 3
window_s = 600
"""
)


@dataclass(frozen=True, slots=True)
class Step:
    """One liquidation step as the bot's ``liquidations`` channel reported it. ``equity`` and
    ``maintenance_margin`` are the account's when the step ran (before it closed anything);
    ``remaining`` is the position left after it."""

    number: int
    ts: int
    qty: Decimal
    mark: Decimal
    bankruptcy_price: Decimal
    fee: Decimal
    equity: Decimal
    maintenance_margin: Decimal
    remaining: Decimal

    @property
    def margin_ratio(self) -> Decimal | None:
        """MM / equity when the step ran (>= 1: the account was still in liquidation)."""
        return self.maintenance_margin / self.equity if self.equity > 0 else None


@dataclass
class Samples:
    """What the bots saw over REST after every clock step (exchange ms, floats for charts)."""

    ts: list[int] = field(default_factory=list)
    index: list[float] = field(default_factory=list)
    mark: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    equity: dict[str, list[float]] = field(default_factory=lambda: {b: [] for b in BOTS})
    ratio: dict[str, list[float]] = field(default_factory=lambda: {b: [] for b in BOTS})
    size: dict[str, list[float]] = field(default_factory=lambda: {b: [] for b in BOTS})


@dataclass
class Story:
    """Everything the crash produced."""

    url: str = ""
    start_ts: int = 0
    entry: dict[str, Decimal] = field(default_factory=dict)  # BTC actually bought
    liquidation_price: dict[str, Decimal | None] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)  # the unguarded bot's
    guarded_steps: int = 0
    refusals: dict[str, list[str]] = field(default_factory=lambda: {b: [] for b in BOTS})
    kill_switch: str | None = None
    final_equity: dict[str, Decimal] = field(default_factory=dict)
    final_size: dict[str, Decimal] = field(default_factory=dict)
    samples: Samples = field(default_factory=Samples)


@dataclass(frozen=True, slots=True)
class Findings:
    guarded_entry: Decimal
    unguarded_entry: Decimal
    unguarded_steps: int
    unguarded_closed: Decimal
    guarded_liquidated: bool
    guard_refusals: int
    kill_switch_tripped: bool
    final_equity: dict[str, Decimal]
    charts: tuple[Path, ...]


Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@contextlib.asynccontextmanager
async def crash_venue(seed: int = 7) -> AsyncIterator[tuple[str, Admin]]:
    """The sandbox with its simulated market on a free port, clock paused (the admin API
    moves it), the two bots' accounts funded, the index pinned at 60,000."""
    settings = SandboxSettings(
        seed=seed,
        speed=Fraction(0),
        admin_token=ADMIN_TOKEN,
        accounts=tuple(AccountSeed(k, s, COLLATERAL, name) for name, (k, s) in BOTS.items()),
    )
    state = SandboxState(settings)
    async with serve(state) as url:
        admin = Admin(url)
        try:
            await admin.pin_index(MARKET, str(START_PRICE))
            await admin.advance(40_000)  # the agent quotes around the pinned index
            yield url, admin
        finally:
            await admin.aclose()


class StepListener:
    """Reads one bot's ``liquidations`` channel (and ``positions``, whose snapshot says the
    subscription is live) and keeps every liquidation step."""

    def __init__(self, client: AsyncClient, initial: Callable[[], Decimal]) -> None:
        self.client = client
        self.initial = initial
        self.records: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async with self.client.stream("positions", "liquidations") as stream:
            async for msg in stream:
                if msg.channel == "positions":
                    self.ready.set()
                elif msg.type == "update" and msg.data.get("kind") == "step":
                    self.records.append(msg.data)

    def steps(self) -> list[Step]:
        out: list[Step] = []
        remaining = self.initial()
        for i, rec in enumerate(self.records, 1):
            d = rec["details"]
            remaining -= Decimal(d["qty"])
            out.append(
                Step(
                    number=i,
                    ts=int(rec["ts"]),
                    qty=Decimal(d["qty"]),
                    mark=Decimal(d["mark"]),
                    bankruptcy_price=Decimal(d["bankruptcy_price"]),
                    fee=Decimal(d["fee"]),
                    equity=Decimal(d["equity"]),
                    maintenance_margin=Decimal(d["maintenance_margin"]),
                    remaining=remaining,
                )
            )
        return out

    async def caught_up(self, expected: int, timeout: float = 10.0) -> None:
        """Wait (bounded) until the stream has delivered ``expected`` steps."""
        async with asyncio.timeout(timeout):
            while len(self.records) < expected:
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _stamped(echo: Echo, offset_ms: int, line: str) -> None:
    """``line`` with the simulated time since the crash began, ``[+m:ss]``."""
    seconds = max(0, offset_ms) // 1000
    echo(f"  [+{seconds // 60}:{seconds % 60:02d}] {line.strip()}")


def _entry(story: Story, name: str) -> Decimal:
    return story.entry.get(name, Decimal(0))


def _size(account: Any) -> Decimal:
    return sum((Decimal(p.size) for p in account.positions if p.market == MARKET), Decimal(0))


def _liq(account: Any) -> Decimal | None:
    for p in account.positions:
        if p.market == MARKET and p.liquidation_price is not None:
            return Decimal(p.liquidation_price)
    return None


async def crash_story(echo: Echo = _quiet, *, pace_s: float = 0.0, seed: int = 7) -> Story:
    """Run the whole story; ``echo`` gets one line per event worth telling, ``pace_s`` real
    seconds are spent per clock step (0 for tests and tutorials; the demo paces itself)."""
    story = Story()
    async with crash_venue(seed) as (url, admin):
        story.url = url
        echo(f"sandbox on {url} (clock under the admin API's control: time-warped)")
        clients = {name: AsyncClient(url, k, s, timeout=10) for name, (k, s) in BOTS.items()}
        guard = Guard(clients["guarded"], POLICY)
        listeners: dict[str, StepListener] = {}
        try:
            for name, client in clients.items():  # leverage: the market's default, 20x
                listeners[name] = StepListener(client, functools.partial(_entry, story, name))
            async with asyncio.timeout(10):
                for listener in listeners.values():
                    await listener.ready.wait()
            await _enter(story, clients, guard, admin, echo)
            for name in BOTS:
                account = await clients[name].account()
                story.liquidation_price[name] = _liq(account)
            story.start_ts = (await clients["guarded"].server_time()).server_ts
            await _sample(story, clients)
            echo("")
            echo(
                f"the crash: spot prices fall {DROP:.0%} over {CRASH_STEPS * STEP_MS // 1000} "
                "simulated seconds, then hold"
            )
            shown = 0
            for i in range(1, CRASH_STEPS + HOLD_STEPS + 1):
                frac = DROP * min(i, CRASH_STEPS) / CRASH_STEPS
                price = (START_PRICE * (1 - frac)).quantize(Decimal("0.1"))
                await admin.pin_index(MARKET, str(price))
                now = await admin.advance(STEP_MS)
                say = functools.partial(_stamped, echo, now - story.start_ts)
                if i in DIP_AT:
                    await _buy_dip(story, clients, guard, say)
                history = await clients["unguarded"].liquidations(limit=500)
                expected = sum(1 for r in history if r.kind == "step")
                await listeners["unguarded"].caught_up(expected)
                steps = listeners["unguarded"].steps()
                for step in steps[shown:]:
                    ratio = step.margin_ratio
                    _stamped(
                        echo,
                        step.ts - story.start_ts,
                        f"LIQUIDATION step {step.number} (unguarded): closed {step.qty} BTC "
                        f"at mark {step.mark} (bankruptcy {step.bankruptcy_price}), fee "
                        f"{step.fee:.2f} USDT, {step.remaining} BTC left (margin ratio "
                        f"{'-' if ratio is None else f'{ratio:.1%}'} when it ran)",
                    )
                shown = len(steps)
                await _sample(story, clients)
                if i <= CRASH_STEPS and i % 4 == 0:
                    s = story.samples
                    say(
                        f"index {price}  mark {s.mark[-1]:.1f}  unguarded ratio "
                        f"{s.ratio['unguarded'][-1]:.1%}  guarded ratio "
                        f"{s.ratio['guarded'][-1]:.1%}"
                    )
                if pace_s:
                    await asyncio.sleep(pace_s)
            story.steps = listeners["unguarded"].steps()
            story.guarded_steps = len(listeners["guarded"].records)
            for name, client in clients.items():
                account = await client.account()
                story.final_equity[name] = Decimal(account.equity)
                story.final_size[name] = _size(account)
            status = guard.status()
            story.kill_switch = status.why if status.killed else None
        finally:
            for listener in listeners.values():
                await listener.stop()
            for client in clients.values():
                await client.aclose()
    return story


async def _enter(
    story: Story, clients: dict[str, AsyncClient], guard: Guard, admin: Admin, echo: Echo
) -> None:
    echo(f"both bots: BUY {WANT} BTC at market with {COLLATERAL} USDT at 20x")
    await clients["unguarded"].create_order(MARKET, "BUY", WANT, type="MARKET")
    await admin.advance(STEP_MS)  # the liquidity agent refills the book
    result = await guard.create_order(MARKET, "BUY", WANT, type="MARKET")
    for name, client in clients.items():
        account = await client.account()
        story.entry[name] = _size(account)
        liq = _liq(account)
        echo(
            f"  {name:<9} holds {story.entry[name]} BTC, liquidation price {liq}, "
            f"margin ratio {Decimal(account.margin_ratio or 0):.2%}"
        )
    if Decimal(result.order.qty) != Decimal(WANT):
        echo(
            f"  the guard resized the guarded bot's order from {WANT} to {result.order.qty} "
            "BTC (liquidation at least 3 sigmas away)"
        )


async def _buy_dip(story: Story, clients: dict[str, AsyncClient], guard: Guard, echo: Echo) -> None:
    try:
        await clients["unguarded"].create_order(MARKET, "BUY", DIP, type="MARKET")
        echo(f"unguarded bot bought the dip: +{DIP} BTC")
    except APIError as exc:
        story.refusals["unguarded"].append(exc.code)
        echo(f"unguarded bot's dip buy refused by the exchange: {exc.code}")
    if story.kill_switch is not None:
        return
    try:
        await guard.create_order(MARKET, "BUY", DIP, type="MARKET")
        echo(f"guarded bot bought the dip: +{DIP} BTC")
    except KillSwitchTripped as exc:
        story.kill_switch = str(exc.details.get("cause"))
        echo(f"guarded bot: KILL SWITCH tripped ({story.kill_switch}); it stops trading")
    except RiskRejected as exc:
        story.refusals["guarded"].append(exc.reason)
        echo(f"guarded bot's dip buy refused by the guard: {exc.reason}")


async def _sample(story: Story, clients: dict[str, AsyncClient]) -> None:
    s = story.samples
    ticker = await clients["guarded"].ticker(MARKET)
    s.ts.append((await clients["guarded"].server_time()).server_ts)
    s.index.append(float(ticker.index))
    s.mark.append(float(ticker.mark))
    s.last.append(float(ticker.last or ticker.mark))
    for name, client in clients.items():
        account = await client.account()
        s.equity[name].append(float(account.equity))
        s.ratio[name].append(float(account.margin_ratio) if account.margin_ratio else 1.5)
        s.size[name].append(float(_size(account)))


def story_charts(story: Story, out: Path, title: str) -> tuple[Path, ...]:
    """Prices; both bots' equity and margin ratio; the unguarded bot's liquidation steps."""
    s = story.samples
    t0 = story.start_ts

    def x(ts: int) -> float:
        return (ts - t0) / 60_000

    xs = [x(t) for t in s.ts]
    marks = [Marker(x(step.ts), "liquidation step") for step in story.steps]
    liq = story.liquidation_price
    hlines = [(float(p), f"{n} liquidation price") for n, p in liq.items() if p is not None]
    prices = save_chart(
        Chart(
            f"{title}: mark, index and last",
            [
                Panel(
                    "BTC-PERP (USDT)",
                    "USDT",
                    [
                        Series("index", xs, s.index),
                        Series("mark", xs, s.mark),
                        Series("last", xs, s.last, kind="step"),
                    ],
                    marks,
                    hlines,
                )
            ],
        ),
        out / "prices.png",
    )
    accounts = save_chart(
        Chart(
            f"{title}: the two bots",
            [
                Panel("Equity (USDT)", "USDT", [Series(n, xs, s.equity[n]) for n in BOTS], marks),
                Panel(
                    "Margin ratio (liquidation at 1)",
                    "ratio",
                    [Series(n, xs, s.ratio[n]) for n in BOTS],
                    marks,
                    [(1.0, "liquidation"), (0.8, "margin call")],
                ),
                Panel(
                    "Position (BTC)",
                    "BTC",
                    [Series(n, xs, s.size[n], kind="step") for n in BOTS],
                    marks,
                ),
            ],
        ),
        out / "bots.png",
    )
    steps = story.steps
    step_chart = save_chart(
        Chart(
            f"{title}: the unguarded bot's liquidation steps",
            [
                Panel(
                    "BTC closed per step",
                    "BTC",
                    [
                        Series(
                            "closed",
                            [float(p.number) for p in steps],
                            [float(p.qty) for p in steps],
                            kind="bar",
                        )
                    ],
                ),
                Panel(
                    "Position left after each step, and the margin ratio that triggered it",
                    "",
                    [
                        Series(
                            "BTC left",
                            [float(p.number) for p in steps],
                            [float(p.remaining) for p in steps],
                        ),
                        Series(
                            "margin ratio",
                            [float(p.number) for p in steps],
                            [float(p.margin_ratio or 0) for p in steps],
                        ),
                    ],
                ),
            ],
            xlabel="liquidation step",
        ),
        out / "liquidation_steps.png",
    )
    return prices, accounts, step_chart


def run(out: Path, *, quick: bool = False) -> Findings:
    """The crash story (the same in quick mode: it is already fast); charts go to ``out``."""
    story = asyncio.run(crash_story())
    charts = story_charts(story, out, "Tutorial 7")
    return Findings(
        guarded_entry=story.entry["guarded"],
        unguarded_entry=story.entry["unguarded"],
        unguarded_steps=len(story.steps),
        unguarded_closed=sum((s.qty for s in story.steps), Decimal(0)),
        guarded_liquidated=story.guarded_steps > 0,
        guard_refusals=len(story.refusals["guarded"]),
        kill_switch_tripped=story.kill_switch is not None,
        final_equity=story.final_equity,
        charts=charts,
    )


def main() -> None:
    f = run(out_dir(7))
    print("Tutorial 7: the same strategy with and without the pre-trade guard, same crash")
    print(f"  entry: unguarded {f.unguarded_entry} BTC, guarded {f.guarded_entry} BTC (resized)")
    print(
        f"  unguarded: liquidated in {f.unguarded_steps} steps, {f.unguarded_closed} BTC "
        f"closed; final equity {f.final_equity['unguarded']:,.2f} USDT"
    )
    print(
        f"  guarded: liquidated {f.guarded_liquidated}; {f.guard_refusals} orders refused, kill "
        f"switch tripped {f.kill_switch_tripped}; final equity "
        f"{f.final_equity['guarded']:,.2f} USDT"
    )
    for path in f.charts:
        print(f"  chart: {path}")


if __name__ == "__main__":
    main()

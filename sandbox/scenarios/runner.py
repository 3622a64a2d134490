"""Run a scenario against a real sandbox server, in accelerated simulated time.

:func:`run_scenario` starts the sandbox in-process on a free loopback port
(:func:`sandbox.server.runner.serve`) with an admin token and a manual clock, hands the
scenario's script a :class:`Context`, and writes the report (:mod:`sandbox.scenarios.report`).
Actors are bots using the ``perpbot`` SDK over HTTP; the script moves time, prices and faults
only through the admin API. Two numbers are read from the in-process state because the API
does not publish them: the insurance fund balances and the funding audit (every account's
payments, market makers included, against the settlement residue).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

import httpx

from perpbot import AsyncClient
from perpbot.retry import RetryPolicy
from perpbot.risk.margin import MONEY_SCALE
from sandbox.config import SandboxSettings
from sandbox.engine import Instrument, default_instruments
from sandbox.engine.events import Event, FundingPaid, FundingSettled
from sandbox.engine.funding import HOUR_MS, FundingConfig
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState

from .base import Outcome, Scenario, ScenarioResult, Venue

__all__ = ["ADMIN_TOKEN", "Context", "FundingAudit", "Progress", "Recorder", "run_scenario"]

ADMIN_TOKEN = "scenario-admin-token"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed start, so a seed replays exactly
ADMIN_HEADER = "X-PB-ADMIN-TOKEN"
# Scenarios sample a lot from one IP: the default budgets would throttle the observer itself.
# A scenario that is about throttling tightens them with a ``tighten_limits`` fault.
OBSERVER_LIMITS = {
    "weight_limit": 10_000_000,
    "key_weight_limit": 10_000_000,
    "order_limit": 1_000_000,
    "order_limit_long": 1_000_000,
}


class Progress:
    """A plain-text progress bar on ``stream`` (``\\r``-rewritten; None: silent)."""

    def __init__(self, label: str, total_ms: int, stream: TextIO | None, width: int = 30) -> None:
        self.label = label
        self.total_ms = max(1, total_ms)
        self.stream = stream
        self.width = width
        self.started = time.monotonic()
        self._shown = -1

    def update(self, done_ms: int) -> None:
        if self.stream is None:
            return
        share = min(1.0, max(0.0, done_ms / self.total_ms))
        permille = int(share * 1000)
        if permille == self._shown:
            return
        self._shown = permille
        filled = int(share * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {share * 100:5.1f}%  sim {_span(done_ms)} / "
            f"{_span(self.total_ms)}  wall {time.monotonic() - self.started:5.1f} s"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def _span(ms: int) -> str:
    seconds = ms // 1000
    days, rem = divmod(seconds, 86_400)
    hours, rem = divmod(rem, 3600)
    mins, secs = divmod(rem, 60)
    return f"{days}d{hours:02d}h{mins:02d}m" if days else f"{hours:02d}h{mins:02d}m{secs:02d}s"


class FundingAudit:
    """An engine event sink: every funding payment (all accounts) and settlement residue."""

    def __init__(self) -> None:
        self.paid_units = 0  # sum of FundingPaid.amount over every account (paid > 0)
        self.residue_units = 0
        self.settlements = 0

    def __call__(self, events: list[Event]) -> None:
        for ev in events:
            if type(ev) is FundingPaid:
                self.paid_units += ev.amount
            elif type(ev) is FundingSettled:
                self.settlements += 1
                self.residue_units += ev.residue

    @property
    def imbalance_units(self) -> int:
        """Paid minus received minus the residue the insurance fund took: 0 if zero-sum."""
        return self.paid_units - self.residue_units


@dataclass(slots=True)
class LiquidationEvent:
    ts: int
    actor: str
    market: str | None
    kind: str
    details: dict[str, Any]


@dataclass(slots=True)
class Recorder:
    """The time series a run collects, exact (the charts convert to floats)."""

    t0: int
    markets: tuple[str, ...]
    times: list[int] = field(default_factory=list)
    mark: dict[str, list[Decimal]] = field(default_factory=dict)
    index: dict[str, list[Decimal]] = field(default_factory=dict)
    last: dict[str, list[Decimal | None]] = field(default_factory=dict)
    insurance: dict[str, list[Decimal]] = field(default_factory=dict)
    equity: dict[str, list[Decimal | None]] = field(default_factory=dict)
    margin_ratio: dict[str, list[Decimal | None]] = field(default_factory=dict)
    notes: list[tuple[int, str]] = field(default_factory=list)
    liquidations: list[LiquidationEvent] = field(default_factory=list)
    funding: dict[str, list[tuple[int, Decimal]]] = field(default_factory=dict)

    def minutes(self, ts: int) -> float:
        return (ts - self.t0) / 60_000


@dataclass(slots=True)
class Actor:
    name: str
    key: str
    secret: str
    client: AsyncClient


class Context:
    """What a scenario script works with: actors, the admin API, the clock and the recorder."""

    def __init__(
        self,
        state: SandboxState,
        url: str,
        admin: httpx.AsyncClient,
        recorder: Recorder,
        progress: Progress,
        audit: FundingAudit | None = None,
    ) -> None:
        self.state = state
        self.funding_audit = audit or FundingAudit()
        self.url = url
        self.admin = admin
        self.recorder = recorder
        self.progress = progress
        self.t0 = state.core.now_ms()
        self.actors: dict[str, Actor] = {}
        self.instruments = state.core.instruments

    # -- time --------------------------------------------------------------------------------
    @property
    def now_ms(self) -> int:
        """Exchange time (simulated ms)."""
        return self.state.core.now_ms()

    @property
    def elapsed_ms(self) -> int:
        return self.now_ms - self.t0

    async def advance(self, ms: int, *, step_ms: int | None = None, sample: bool = True) -> None:
        """Advance simulated time by ``ms`` in admin ``advance`` calls of ``step_ms`` (default
        all at once), sampling after each."""
        step = ms if step_ms is None else max(1, step_ms)
        remaining = ms
        while remaining > 0:
            chunk = min(step, remaining)
            await self._admin("POST", "/v1/admin/clock", {"action": "advance", "ms": chunk})
            remaining -= chunk
            if sample:
                await self.sample()
            self.progress.update(self.elapsed_ms)

    # -- admin -------------------------------------------------------------------------------
    async def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.admin.request(method, path, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"admin {method} {path}: {response.status_code} {response.text}")
        return response.json()

    async def pin_index(self, market: str, price: Decimal) -> None:
        """Pin every source of ``market``'s index at ``price`` (rounded to the tick)."""
        inst = self.instruments[market]
        text = str(price.quantize(inst.tick_size))
        for source in inst.mechanics.index.weights:
            body = {"market": market, "source": source, "price": text}
            await self._admin("POST", "/v1/admin/index-price", body)

    async def release_index(self, market: str) -> None:
        """Hand ``market``'s sources back to the simulation."""
        for source in self.instruments[market].mechanics.index.weights:
            body = {"market": market, "source": source, "price": None}
            await self._admin("POST", "/v1/admin/index-price", body)

    async def fault_plan(self, faults: Sequence[dict[str, Any]], seed: int | None = None) -> Any:
        """Load a fault plan (``POST /v1/admin/fault-plan``); windows start now."""
        body: dict[str, Any] = {"faults": list(faults)}
        if seed is not None:
            body["seed"] = seed
        return (await self._admin("POST", "/v1/admin/fault-plan", body))["details"]

    async def fault_status(self) -> Any:
        return (await self._admin("GET", "/v1/admin/fault-plan"))["details"]

    def note(self, label: str) -> None:
        """Mark an event of the script (drawn on the charts, listed in the report)."""
        self.recorder.notes.append((self.now_ms, label))

    # -- actors ------------------------------------------------------------------------------
    async def actor(
        self,
        name: str,
        deposit: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        track: bool = True,
        local_address: str | None = None,
    ) -> AsyncClient:
        """Create an account with ``deposit`` USDT and return an SDK client for it.

        ``local_address`` (e.g. ``127.0.0.3``) makes the client connect from its own loopback
        IP, so the exchange's per-IP limits and bans treat it as another machine."""
        key = f"{name}-key-00000"
        secret = f"{name}-secret-0123456789"
        body = {"account": name, "api_key": key, "api_secret": secret, "deposit": deposit}
        await self._admin("POST", "/v1/admin/accounts", body)
        transport = (
            None if local_address is None else httpx.AsyncHTTPTransport(local_address=local_address)
        )
        client = AsyncClient(
            self.url, key, secret, retry=retry, timeout=timeout, transport=transport
        )
        if track:
            self.actors[name] = Actor(name, key, secret, client)
            self.recorder.equity[name] = [None] * len(self.recorder.times)
            self.recorder.margin_ratio[name] = [None] * len(self.recorder.times)
        return client

    @staticmethod
    async def set_leverage(client: AsyncClient, market: str, leverage: int) -> None:
        """Set ``market``'s leverage unless it already is ``leverage``."""
        current = await client.leverage(market)
        if not current or current[0].leverage != leverage:
            await client.set_leverage(market, leverage)

    # -- observation -------------------------------------------------------------------------
    async def sample(self) -> None:
        """One point of every series: prices per market, each actor's account, insurance."""
        rec = self.recorder
        tickers, accounts = await asyncio.gather(
            self.admin.get("/v1/tickers"),
            asyncio.gather(*(a.client.account() for a in self.actors.values())),
        )
        rec.times.append(self.now_ms)
        by_market = {t["market"]: t for t in tickers.json()}
        for market in rec.markets:
            t = by_market[market]
            rec.mark.setdefault(market, []).append(Decimal(t["mark"]))
            rec.index.setdefault(market, []).append(Decimal(t["index"]))
            last = None if t["last"] is None else Decimal(t["last"])
            rec.last.setdefault(market, []).append(last)
            units = self.state.core.exchange.prices(market).insurance_fund
            rec.insurance.setdefault(market, []).append(Decimal(units) / MONEY_SCALE)
        for actor, acct in zip(self.actors.values(), accounts, strict=True):
            rec.equity[actor.name].append(Decimal(acct.equity))
            ratio = acct.margin_ratio
            rec.margin_ratio[actor.name].append(None if ratio is None else Decimal(ratio))

    async def collect(self) -> None:
        """Read each actor's liquidation records and funding payments (end of run)."""
        rec = self.recorder
        for actor in self.actors.values():
            for r in await actor.client.liquidations(limit=1000):
                rec.liquidations.append(
                    LiquidationEvent(r.ts, actor.name, r.market, r.kind, dict(r.details))
                )
            payments = await actor.client.funding_payments(limit=1000)
            rec.funding[actor.name] = sorted((p.funding_ts, Decimal(p.amount)) for p in payments)
        rec.liquidations.sort(key=lambda e: (e.ts, e.actor))

    def liquidated(self, actor: str, market: str | None = None) -> list[LiquidationEvent]:
        """``actor``'s liquidation steps (in ``market`` if given), collected so far."""
        return [
            e
            for e in self.recorder.liquidations
            if e.actor == actor and e.kind == "step" and (market is None or e.market == market)
        ]

    async def close(self) -> None:
        for actor in self.actors.values():
            await actor.client.aclose()


def venue_instruments(venue: Venue) -> tuple[Instrument, ...]:
    """The default instruments named by ``venue``, with its funding interval."""
    by_symbol = {inst.symbol: inst for inst in default_instruments()}
    out = []
    for symbol in venue.markets:
        inst = by_symbol[symbol]
        hours = venue.funding_interval_hours
        if hours != 8:
            mech = inst.mechanics
            funding = FundingConfig(
                interval_ms=hours * HOUR_MS,
                interest_rate=mech.funding.interest_rate * hours // 8,
                clamp=mech.funding.clamp,
                cap=mech.funding.cap,
            )
            inst = replace(inst, mechanics=replace(mech, funding=funding))
        out.append(inst)
    return tuple(out)


def get_scenario(name: str) -> Scenario:
    from . import SCENARIOS

    try:
        return SCENARIOS[name]()
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


async def run_scenario(
    scenario: str | Scenario,
    *,
    params: Any = None,
    quick: bool = False,
    seed: int = 1,
    out_dir: str | Path | None = None,
    progress: TextIO | None = None,
) -> ScenarioResult:
    """Run ``scenario`` (a name or a :class:`Scenario`) and write its report to ``out_dir``
    (None: no report). ``params`` default to the scenario's full parameters (``quick``: its
    short ones). ``progress``: where the progress bar goes (e.g. ``sys.stderr``)."""
    scen = get_scenario(scenario) if isinstance(scenario, str) else scenario
    p = params if params is not None else (scen.quick if quick else scen.full)
    venue = scen.venue(p)
    settings = SandboxSettings(
        port=0,
        seed=seed,
        start_ms=START_MS,
        speed=Fraction(0),
        admin_token=ADMIN_TOKEN,
        simulate=True,
        depth=venue.depth,
        instruments=venue_instruments(venue),
        limits={**OBSERVER_LIMITS, **venue.limits},
    )
    state = SandboxState(settings)
    audit = FundingAudit()
    state.core.sinks.append(audit)
    bar = Progress(scen.name, scen.duration_ms(p), progress)
    recorder = Recorder(t0=state.core.now_ms(), markets=venue.markets)
    started = time.monotonic()
    async with (
        serve(state) as url,
        httpx.AsyncClient(base_url=url, headers={ADMIN_HEADER: ADMIN_TOKEN}, timeout=60) as admin,
    ):
        ctx = Context(state, url, admin, recorder, bar, audit)
        try:
            await ctx.sample()
            outcome: Outcome = await scen.script(ctx, p)
            await ctx.collect()
        finally:
            await ctx.close()
            bar.finish()
        sim_ms = ctx.elapsed_ms
    wall_s = time.monotonic() - started
    findings = {**outcome.findings, "simulated_ms": sim_ms, "wall_seconds": round(wall_s, 2)}
    params_data = asdict(p)
    files: tuple[Path, ...] = ()
    report_dir = None
    if out_dir is not None:
        from .report import write_report

        report_dir = Path(out_dir)
        files = write_report(
            report_dir, scen, params_data, seed, findings, outcome.checks, recorder
        )
    return ScenarioResult(
        name=scen.name,
        seed=seed,
        params=params_data,
        findings=findings,
        checks=dict(outcome.checks),
        report_dir=report_dir,
        files=files,
        sim_ms=sim_ms,
        wall_s=wall_s,
    )

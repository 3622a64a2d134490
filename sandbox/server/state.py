"""Everything one running sandbox holds, and the background loop that moves its market.

``SandboxState`` wires the core (engine + clock + histories), the WebSocket hub and publisher,
API keys, throttling, fault injection and the simulated market. The HTTP layer only reads it
and calls its methods; tests build one directly and drive it with a manual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from fractions import Fraction
from typing import Any

from sandbox.clock import SimClock
from sandbox.config import SandboxSettings
from sandbox.engine import Deposit, EngineError, money_units
from sandbox.engine.commands import Command, UpdateIndexSource
from sandbox.engine.events import Event, Rejected
from sandbox.market import THICK, THIN, MarketSimulator, NoiseFlow

from .auth import Authenticator, KeyStore
from .core import SandboxCore
from .faults import Agent, FaultPlan, Faults, load_specs
from .hub import Hub
from .publish import Publisher
from .throttle import Throttle, ThrottleConfig
from .wire import ApiError, engine_error, rejection_error

log = logging.getLogger(__name__)

MARKET_STEP_MS = 250  # real milliseconds between market-simulation steps
MAX_STEP_SIM_MS = 5_000  # simulated time per step (an advance is cut into such steps) ...
MAX_ADVANCE_STEPS = 500  # ... or into this many, for long jumps (8 h: ~1 min steps)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SandboxState:
    """One sandbox exchange: engine, clock, keys, limits, faults, hub and simulated market."""

    def __init__(
        self,
        settings: SandboxSettings,
        *,
        clock: SimClock | None = None,
        now_wall_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.settings = settings
        self.clock = clock or SimClock(start_ms=settings.start_ms, speed=settings.speed)
        self._resume_speed = settings.speed or Fraction(1)
        self.wall_ms = now_wall_ms
        self.core = SandboxCore(settings.instruments, clock=self.clock)
        self.hub = Hub(
            clock=self.core.now_ms,
            is_valid_channel=lambda name: self.publisher.is_valid_channel(name),
        )
        self.publisher = Publisher(self.core, self.hub)
        self.core.sinks.append(self.publisher)
        self.hub.register_snapshot("book", self.publisher.book_snapshot)
        self.hub.register_private_snapshot("account", self.publisher.account_snapshot)
        self.hub.register_private_snapshot("positions", self.publisher.positions_snapshot)
        self.hub.register_private_snapshot("orders", self.publisher.orders_snapshot)
        self.keys = KeyStore()
        self.auth = Authenticator(self.keys, now_ms=now_wall_ms, window_ms=settings.auth_window_ms)
        self.throttle = Throttle(_throttle_config(settings.limits), now_ms=now_wall_ms)
        self.faults = Faults()
        self.fault_plan = FaultPlan(self.core.now_ms, settings.seed)
        self.rng = random.Random(settings.seed)
        self.simulator: MarketSimulator | None = None
        self.pinned: dict[tuple[str, str], int] = {}  # (market, source) -> ticks set by admin
        self.flow: NoiseFlow | None = None
        if settings.simulate:
            self.simulator = _make_simulator(settings)
            self.flow = NoiseFlow(settings.instruments, settings.seed)
            for cmd in [*self.simulator.bootstrap_commands(), *self.flow.bootstrap_commands()]:
                self.apply(cmd)
        for seed in settings.accounts:
            self.create_account(seed.account_id, seed.key, seed.secret, seed.deposit)
        if self.simulator is not None:
            self.step_market(0)
        if settings.faults:
            self.fault_plan.load(self, load_specs(settings.faults))
        self._task: asyncio.Task[None] | None = None
        self._market_ms = 0  # exchange time the market was last stepped to
        self._stopping = asyncio.Event()

    # -- commands ------------------------------------------------------------------------------
    def apply(self, command: Command) -> list[Event]:
        """Submit; an engine rejection becomes an :class:`ApiError`."""
        events = self.core.submit(command)
        if events and type(events[0]) is Rejected:
            ev = events[0]
            assert isinstance(ev, Rejected)
            market = getattr(command, "market", None)
            inst = self.core.instruments.get(market) if isinstance(market, str) else None
            raise rejection_error(ev, inst)
        return events

    def create_account(self, account: str, key: str, secret: str, deposit: str) -> int:
        """Register an API key for ``account`` and deposit; returns the new collateral."""
        if self.keys.get(key) is not None:
            raise ApiError(409, "DUPLICATE_API_KEY", f"API key {key!r} already exists")
        if account in self.core.exchange.insurance_funds or account.startswith(("mm:", "flow:")):
            raise ApiError(403, "RESERVED_ACCOUNT", f"account {account!r} is reserved")
        try:
            amount = money_units(deposit)
        except EngineError as exc:
            raise engine_error(exc) from None
        if amount < 0:
            raise ApiError(400, "INVALID_AMOUNT", "deposit must be >= 0")
        if amount > 0:
            self.apply(Deposit(account, amount))
        try:
            self.keys.add(key, secret, account)
        except ValueError as exc:
            raise ApiError(400, "BAD_REQUEST", str(exc)) from None
        acct = self.core.exchange.accounts.get(account)
        return acct.collateral if acct is not None else 0

    # -- the simulated market -----------------------------------------------------------------
    def step_market(self, dt_ms: int) -> None:
        """Move the simulated sources by ``dt_ms``, let agents requote, then let time act."""
        sim = self.simulator
        plan = self.fault_plan
        plan.on_step()
        if sim is not None:
            pinned = self.pinned
            for cmd in sim.step(self.core.exchange, dt_ms):
                if type(cmd) is UpdateIndexSource and (cmd.market, cmd.source) in pinned:
                    cmd = UpdateIndexSource(
                        cmd.market, cmd.source, pinned[(cmd.market, cmd.source)]
                    )
                if plan.specs and type(cmd) is UpdateIndexSource:
                    ticks = plan.source_price(cmd.market, cmd.source, cmd.price)
                    if ticks is None:
                        continue  # a stale source: its last value stays
                    cmd = UpdateIndexSource(cmd.market, cmd.source, ticks)
                # An agent's refusal (say, a quote that a user's order just crossed) is
                # harmless: the agent re-reads the book on its next step.
                self.core.submit(cmd)
            if self.flow is not None:
                for cmd in self.flow.step(self.core.exchange, dt_ms):
                    self.core.submit(cmd)
        elif self.pinned:
            for (market, source), pinned_ticks in self.pinned.items():
                ticks_now = plan.source_price(market, source, pinned_ticks)
                if ticks_now is not None:
                    self.core.submit(UpdateIndexSource(market, source, ticks_now))
        self.core.tick()

    def set_index_price(self, market: str, source: str, price: str) -> None:
        inst = self.core.instruments.get(market)
        if inst is None:
            raise ApiError(404, "UNKNOWN_MARKET", f"unknown market {market!r}")
        try:
            ticks = inst.price_to_ticks(price)
        except EngineError as exc:
            raise engine_error(exc) from None
        self.apply(UpdateIndexSource(market, source, ticks))
        self.pinned[(market, source)] = ticks
        self.core.tick()

    def release_index_price(self, market: str, source: str) -> None:
        """Hand a pinned source back to the simulation (no-op if not pinned)."""
        self.pinned.pop((market, source), None)

    def advance(self, ms: int) -> int:
        """Move simulated time forward by ``ms``, stepping the market on the way."""
        remaining = ms
        # At most MAX_ADVANCE_STEPS market steps, however long the jump (a year stays fast).
        size = max(MAX_STEP_SIM_MS, -(-ms // MAX_ADVANCE_STEPS))
        while remaining > 0:
            step = min(remaining, size)
            self.clock.advance(step)
            self.step_market(step)
            remaining -= step
        if ms == 0:
            self.core.tick()
        self._market_ms = self.clock.now_ms()  # stepped already: the loop must not again
        return self.core.now_ms()

    def pause(self) -> None:
        if self.clock.speed:
            self._resume_speed = self.clock.speed
        self.clock.pause()

    def resume(self) -> None:
        self.clock.set_speed(self._resume_speed)

    def set_speed(self, speed: Fraction) -> None:
        if speed > 0:
            self._resume_speed = speed
        self.clock.set_speed(speed)

    def set_limits(self, changes: dict[str, int]) -> dict[str, Any]:
        config = replace(self.throttle.config, **changes)
        self.throttle.set_config(config)
        return self.throttle.snapshot()

    def set_faults(
        self, latency_ms: int, error_rate: Fraction, drop_rate: Fraction, ms: int
    ) -> None:
        self.faults = Faults(latency_ms, error_rate, drop_rate, self.wall_ms() + ms)

    def active_faults(self) -> Faults | None:
        f = self.faults
        return f if f.until_ms > self.wall_ms() else None

    def fault_agents(self, market: str) -> Sequence[Agent]:
        """The liquidity agents of ``market`` (all markets if empty), for fault injection."""
        sim = self.simulator
        if sim is None:
            return ()
        return [a for m, agents in sim.agents.items() if market in ("", m) for a in agents]

    # -- background ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.hub.start()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run_market(), name="sandbox-market")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.hub.stop()

    async def _run_market(self) -> None:
        self._market_ms = self.core.now_ms()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), MARKET_STEP_MS / 1000)
            now = self.clock.now_ms()
            if now > self._market_ms:
                dt = now - self._market_ms
                self._market_ms = now
                try:
                    self.step_market(dt)
                except Exception:  # a bug: keep the market alive, say so loudly
                    log.exception("market step failed")


def _throttle_config(limits: dict[str, int]) -> ThrottleConfig:
    known = {f.name for f in fields(ThrottleConfig)}
    unknown = set(limits) - known
    if unknown:
        raise ValueError(f"unknown limits {sorted(unknown)}; known: {sorted(known)}")
    return ThrottleConfig(**limits)


def _make_simulator(settings: SandboxSettings) -> MarketSimulator:
    profile = THIN if settings.depth == "thin" else THICK
    return MarketSimulator(
        settings.instruments,
        settings.seed,
        agents={inst.symbol: (profile,) for inst in settings.instruments},
    )

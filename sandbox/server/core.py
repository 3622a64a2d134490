"""The sandbox's state on one logical thread: the engine, the clock, histories and publishing.

Every state change goes through :meth:`SandboxCore.submit`, which is synchronous and called only
from the event loop's thread with no ``await`` inside, so commands are applied strictly one at a
time in arrival order (the engine task is the event loop itself; no lock, no queue hop on the hot
path). The engine sees a clock frozen for the duration of each command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sandbox.clock import SimClock
from sandbox.engine import Exchange, Instrument
from sandbox.engine.commands import Command, Tick
from sandbox.engine.events import Event, Rejected, Trade
from sandbox.engine.exchange import ExchangeConfig

from .records import Records


class EngineClock:
    """What the engine reads: the simulated time, fixed while one command runs."""

    __slots__ = ("now",)

    def __init__(self, now: int) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now


EventSink = Callable[[list[Event]], None]


class SandboxCore:
    """Owns the exchange; applies commands; records and announces their events."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        clock: SimClock,
        config: ExchangeConfig | None = None,
    ) -> None:
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in instruments}
        self.clock = clock
        self.engine_clock = EngineClock(clock.now_ms())
        self.exchange = Exchange(self.instruments.values(), clock=self.engine_clock, config=config)
        self.records = Records(self.instruments)
        self.sinks: list[EventSink] = []
        self.commands = 0

    def now_ms(self) -> int:
        """The simulated time (never earlier than what the engine last saw)."""
        now = self.clock.now_ms()
        return now if now > self.engine_clock.now else self.engine_clock.now

    def submit(self, command: Command) -> list[Event]:
        """Apply one command now; record and publish what it did. Never awaits."""
        self.engine_clock.now = self.now_ms()
        events = self.exchange.submit(command)
        self.commands += 1
        if events and type(events[0]) is not Rejected:
            self.records.apply(events, self._client_ids(events))
            for sink in self.sinks:
                sink(events)
        return events

    def tick(self) -> list[Event]:
        """Let time act up to now (funding, index/mark, due liquidation steps)."""
        return self.submit(Tick())

    def _client_ids(self, events: list[Event]) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        get = self.exchange.get_order
        for ev in events:
            if type(ev) is Trade:
                assert isinstance(ev, Trade)
                for account, oid in (
                    (ev.maker_account, ev.maker_order_id),
                    (ev.taker_account, ev.taker_order_id),
                ):
                    if oid not in out:
                        order = get(account, order_id=oid)
                        out[oid] = order.client_id if order is not None else None
        return out

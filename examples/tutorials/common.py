"""Small helpers shared by the numbered tutorials and the demo (not part of the SDK).

* :class:`EngineVenue`: the pure engine on a manual clock, with a simple market maker that
  re-centres a ladder of quotes on the index at every step (tutorials 1-4 and 6).
* :class:`Admin`: the sandbox's admin API over HTTP (clock, index sources, rate limits) for
  the tutorials and the demo that run the real server (5, 7 and ``examples/demo.py``).
* :class:`VirtualTime`: one clock for a server and its clients that moves only when someone
  sleeps, so a throttling story that takes minutes runs in a fraction of a second.
* Formatting of exact money units, and the default output directory of each tutorial.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from perpbot.risk.margin import money_to_decimal
from sandbox.engine import (
    CancelAll,
    Deposit,
    Event,
    Exchange,
    Instrument,
    ManualClock,
    OrderType,
    PlaceOrder,
    Rejected,
    SetLeverage,
    Side,
    Tick,
    TimeInForce,
    UpdateIndexSource,
    money_units,
)

REPORTS = Path("reports")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: funding settles at 00:00, 08:00, 16:00
SOURCES = ("spot-a", "spot-b", "spot-c")
MAKER = "maker"
ADMIN_TOKEN = "tutorial-admin-token"
ADMIN_HEADER = "X-PB-ADMIN-TOKEN"


def out_dir(number: int) -> Path:
    """The default output directory of tutorial ``number``: ``reports/tutorials/tNN``."""
    return REPORTS / "tutorials" / f"t{number:02d}"


def usdt(units: int) -> Decimal:
    """Money units (1e-8 USDT) -> exact USDT."""
    return money_to_decimal(units)


def fmt(units: int, places: int = 2) -> str:
    """Money units as USDT with thousands separators, rounded to ``places`` for display."""
    return f"{usdt(units).quantize(Decimal(1).scaleb(-places)):,}"


def fmt_ratio(rate_units: int | None) -> str:
    """A margin ratio in rate units (1e-8) as a percentage; ``-`` when equity <= 0."""
    return "-" if rate_units is None else f"{Decimal(rate_units) / 10**6:.1f}%"


def minutes(ts: int, start: int) -> float:
    """Chart x value: simulated minutes since ``start``."""
    return (ts - start) / 60_000


def check(events: list[Event]) -> list[Event]:
    """``events``, or raise if the engine refused the command (a tutorial bug)."""
    if events and isinstance(events[0], Rejected):
        raise RuntimeError(f"refused: {events[0].code} {events[0].message}")
    return events


class EngineVenue:
    """An in-process exchange on a manual clock, plus a market maker (account ``maker``).

    ``set_index`` moves all three index sources of a market together; ``quote`` replaces the
    maker's ladder with ``levels`` bids and asks ``step`` apart around a centre; ``advance``
    moves the clock and lets time act (``Tick``), returning the events.
    """

    def __init__(
        self, instruments: Iterable[Instrument], *, start_ms: int = START_MS, maker: str = "1e8"
    ) -> None:
        self.clock = ManualClock(start_ms)
        self.start_ms = start_ms
        self.ex = Exchange(instruments, clock=self.clock)
        self.deposit(MAKER, maker)

    def inst(self, symbol: str) -> Instrument:
        return self.ex.markets[symbol].instrument

    def now(self) -> int:
        return self.clock.now_ms()

    def submit(self, command: Any) -> list[Event]:
        return check(self.ex.submit(command))

    def deposit(self, account: str, amount: str) -> None:
        self.submit(Deposit(account, money_units(Decimal(amount))))

    def leverage(self, account: str, symbol: str, leverage: int) -> None:
        self.submit(SetLeverage(account, symbol, leverage))

    def set_index(self, symbol: str, price: Decimal) -> None:
        ticks = self.price(symbol, price)
        for source in SOURCES:
            self.submit(UpdateIndexSource(symbol, source, ticks))

    def price(self, symbol: str, price: Decimal) -> int:
        """``price`` rounded to the market's tick (the ticks)."""
        inst = self.inst(symbol)
        return int((price / inst.tick_size).to_integral_value())

    def quote(
        self,
        symbol: str,
        centre: Decimal,
        *,
        step: Decimal,
        qty: str,
        levels: int = 10,
        account: str = MAKER,
    ) -> None:
        """Replace ``account``'s quotes with a symmetric ladder around ``centre``."""
        inst = self.inst(symbol)
        self.submit(CancelAll(account, symbol))
        lots = inst.qty_to_lots(qty)
        mid = self.price(symbol, centre)
        gap = self.price(symbol, step)
        for i in range(1, levels + 1):
            for side, sign in ((Side.BUY, -1), (Side.SELL, 1)):
                self.submit(PlaceOrder(account, symbol, side, lots, price=mid + sign * gap * i))

    def rest(self, account: str, symbol: str, side: Side, qty: str, price: str) -> None:
        inst = self.inst(symbol)
        self.submit(
            PlaceOrder(
                account, symbol, side, inst.qty_to_lots(qty), price=inst.price_to_ticks(price)
            )
        )

    def take(self, account: str, symbol: str, side: Side, qty: str, price: str) -> list[Event]:
        """An IOC limit order (fills against what rests at ``price`` or better)."""
        inst = self.inst(symbol)
        return self.submit(
            PlaceOrder(
                account,
                symbol,
                side,
                inst.qty_to_lots(qty),
                price=inst.price_to_ticks(price),
                tif=TimeInForce.IOC,
            )
        )

    def market(self, account: str, symbol: str, side: Side, qty: str) -> list[Event]:
        inst = self.inst(symbol)
        return self.submit(
            PlaceOrder(account, symbol, side, inst.qty_to_lots(qty), order_type=OrderType.MARKET)
        )

    def tick(self) -> list[Event]:
        return self.submit(Tick())

    def advance(self, ms: int) -> list[Event]:
        self.clock.advance(ms)
        return self.tick()

    def size(self, account: str, symbol: str) -> int:
        """Signed position in lots (0 without one)."""
        pos = self.ex.accounts[account].positions.get(symbol)
        return 0 if pos is None else pos.size


def of_type(events: Iterable[Event], cls: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


# -- the real server ------------------------------------------------------------------------
class Admin:
    """The sandbox's admin API (docs/api.md, "Admin"): clock, index sources, rate limits."""

    def __init__(self, base_url: str, token: str = ADMIN_TOKEN) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers={ADMIN_HEADER: token}, timeout=30)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(path, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"admin {path}: {response.status_code} {response.text}")
        data: dict[str, Any] = response.json()
        return data

    async def advance(self, ms: int) -> int:
        """Move the exchange clock forward; returns the new exchange time (ms)."""
        data = await self._post("/v1/admin/clock", {"action": "advance", "ms": ms})
        return int(data["server_ts"])

    async def pin_index(self, market: str, price: str, sources: Sequence[str] = SOURCES) -> None:
        """Pin every index source of ``market`` to ``price`` (the index follows at once)."""
        for source in sources:
            await self._post(
                "/v1/admin/index-price", {"market": market, "source": source, "price": price}
            )

    async def limits(self, **changes: int) -> dict[str, Any]:
        return await self._post("/v1/admin/limits", changes)


class VirtualTime:
    """Seconds that pass only when someone sleeps: one clock for a server's throttle and auth
    (``wall_ms``) and its clients (``time``, ``monotonic``, ``sleep``). Every request a naive
    bot sends can also charge a fixed latency (``spend``)."""

    def __init__(self, start_s: float = START_MS / 1000) -> None:
        self.now = start_s

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return int(self.now * 1000)

    def spend(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

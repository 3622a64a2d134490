"""``make demo``: start the sandbox exchange, run a small bot against it, stop everything.

The sandbox runs in this process on 127.0.0.1 (a free port) with its simulated market: index
sources moving, liquidity agents quoting. The clock runs 60x faster and starts five minutes
before a funding settlement, so within the demo you see orders, fills, the mark and index
moving, and a funding payment. The bot uses the ``perpbot`` SDK like any other client: signed
REST requests and a WebSocket stream, nothing in-process.

Its strategy is deliberately simple: buy a small position at market, then keep a post-only bid
and ask a few basis points around the mark, re-quoting every couple of seconds. It prints what
the exchange tells it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeVar

from perpbot import AsyncClient
from perpbot.errors import APIError
from sandbox.config import DEMO_KEY, DEMO_SECRET, SandboxSettings
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState

T = TypeVar("T")
CENT = Decimal("0.01")
MARKET = "BTC-PERP"
SPEED = 60
# 07:55 UTC: the 08:00 funding settlement comes five simulated minutes (5 s) into the demo.
START_MS = int(datetime(2026, 1, 5, 7, 55, tzinfo=UTC).timestamp() * 1000)


def clock(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%H:%M:%S")


class Bot:
    """The SDK's client, a stream reader that prints, and a quoting loop."""

    def __init__(self, url: str) -> None:
        self.client = AsyncClient(url, DEMO_KEY, DEMO_SECRET, timeout=5)
        self.tickers = 0
        self.size = "0"

    async def call(self, what: Awaitable[T]) -> T | None:
        """Await a client call; print a refusal instead of raising (it is part of the show)."""
        try:
            return await what
        except APIError as exc:
            print(f"           ! {exc.status} {exc.code}: {exc.message}")
            return None

    async def listen(self) -> None:
        channels = (f"ticker:{MARKET}", f"funding:{MARKET}", "orders", "fills", "positions")
        async with self.client.stream(*channels) as stream:
            async for msg in stream:
                if msg.type == "update":
                    self.show(msg.channel, msg.ts, msg.data)

    def show(self, channel: str, ts: int, data: Any) -> None:
        at = clock(ts)
        if channel.startswith("ticker:"):
            self.tickers += 1
            if self.tickers % 8 == 1:
                print(
                    f"[{at}] ticker  mark {data['mark']}  index {data['index']}  "
                    f"last {data['last']}  predicted funding {data['predicted_funding_rate']}"
                )
        elif channel.startswith("funding:"):
            print(f"[{at}] FUNDING settled at rate {data['rate']} (mark {data['mark']})")
        elif channel == "orders" and data["update"] in ("accepted", "canceled", "expired"):
            if data["type"] == "LIMIT" and data["update"] == "canceled":
                return  # re-quotes cancel the previous quotes: not news
            print(
                f"[{at}] order   {data['update']:<8} {data['side']:<4} {data['qty']} @ "
                f"{data['price']} ({data['type']} {data['tif']})"
            )
        elif channel == "fills":
            print(
                f"[{at}] FILL    {data['side']:<4} {data['qty']} @ {data['price']} "
                f"{data['liquidity']}, fee {data['fee']} USDT"
            )
        elif channel == "positions":
            for p in data:
                if p["market"] == MARKET and p["size"] != self.size:
                    self.size = p["size"]
                    liq = p["liquidation_price"] or "none"
                    entry = p["entry_price"] and Decimal(p["entry_price"]).quantize(CENT)
                    print(
                        f"[{at}] position {p['size']} BTC, entry {entry}, "
                        f"uPnL {p['unrealized_pnl']}, liquidation price {liq}"
                    )

    async def trade(self, seconds: float) -> None:
        client = self.client
        market = next(m for m in await client.markets() if m.symbol == MARKET)
        tick = Decimal(market.tick_size)
        await self.call(client.set_leverage(MARKET, 10))
        await self.call(client.create_order(MARKET, "BUY", "0.05", type="MARKET"))
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            ticker = await client.ticker(MARKET)
            mark = Decimal(ticker.mark)
            spread = mark * Decimal("0.0003")
            bid = ((mark - spread) / tick).to_integral_value() * tick
            ask = ((mark + spread) / tick).to_integral_value() * tick
            # Post-only quotes must not cross the book (the exchange would refuse them).
            if ticker.best_ask is not None:
                bid = min(bid, Decimal(ticker.best_ask) - tick)
            if ticker.best_bid is not None:
                ask = max(ask, Decimal(ticker.best_bid) + tick)
            await client.cancel_all_orders(MARKET)
            for side, price in (("BUY", bid), ("SELL", ask)):
                await self.call(client.create_order(MARKET, side, "0.02", price, tif="POST_ONLY"))
            await asyncio.sleep(2)
        await client.cancel_all_orders()

    async def summary(self) -> None:
        account = await self.client.account()
        fills = await self.client.fills(limit=1000)
        funding = await self.client.funding_payments()
        fees = sum(Decimal(f.fee) for f in fills)
        paid = sum(Decimal(f.amount) for f in funding)
        print("\nSummary (every figure from the exchange's REST API):")
        print(f"  collateral {account.collateral} USDT, equity {account.equity} USDT")
        print(f"  margin ratio {account.margin_ratio}, available {account.available}")
        for p in account.positions:
            if p.size != "0":
                entry = Decimal(p.entry_price or 0).quantize(CENT)
                print(f"  {p.market}: {p.size} @ {entry}, uPnL {p.unrealized_pnl}")
        print(f"  {len(fills)} fills, fees {fees} USDT, funding paid {paid} USDT")


async def main(seconds: float) -> None:
    settings = SandboxSettings(seed=7, speed=Fraction(SPEED), start_ms=START_MS)
    state = SandboxState(settings.with_demo_account())
    async with serve(state) as url:
        print(f"sandbox on {url} (docs: {url}/docs), clock x{SPEED} from {clock(START_MS)} UTC")
        print(f"bot: {MARKET}, 0.05 BTC long at market, then post-only quotes around the mark\n")
        bot = Bot(url)
        listener = asyncio.create_task(bot.listen())
        try:
            await bot.trade(seconds)
            await asyncio.sleep(0.5)  # let the last messages arrive
            await bot.summary()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await bot.client.aclose()
    print("\nsandbox stopped; everything the demo started has exited")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16, help="how long the bot trades")
    asyncio.run(main(parser.parse_args().seconds))

"""A small market maker: two post-only quotes around the mid of a streamed local book, skewed
against its inventory, re-quoted every second, with client-side rate and size limits.

Run it against a sandbox (``perpbot-sandbox`` in another terminal)::

    .venv/bin/python -m examples.market_maker --seconds 60

What it shows: ``client.watch_book`` (a local book kept in sync from snapshot + diffs), the
private ``fills`` stream, ``SizeLimits`` refusing an order before it is sent, and refusals from
the exchange (a post-only quote that would cross) handled as ordinary outcomes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from decimal import Decimal

from perpbot import AsyncClient, InvalidOrder, LimitExceeded
from perpbot.limits import RateLimiter, SizeLimits

DEMO = ("http://127.0.0.1:8765", "demo-key", "demo-secret-0123456789")


class MarketMaker:
    def __init__(
        self,
        client: AsyncClient,
        market: str,
        *,
        size: Decimal,
        half_spread_bps: Decimal,
        max_position: Decimal,
    ) -> None:
        self.client = client
        self.market = market
        self.size = size
        self.half_spread = half_spread_bps / Decimal(10_000)
        self.max_position = max_position
        self.position = Decimal(0)
        self.quotes = 0
        self.fills = 0

    async def watch_fills(self) -> None:
        async with self.client.stream("fills") as fills:
            async for msg in fills:
                if msg.type != "update" or msg.data["market"] != self.market:
                    continue
                sign = 1 if msg.data["side"] == "BUY" else -1
                self.position += sign * Decimal(msg.data["qty"])
                self.fills += 1
                print(
                    f"fill  {msg.data['side']:<4} {msg.data['qty']} @ {msg.data['price']} "
                    f"({msg.data['liquidity']}, fee {msg.data['fee']}); position {self.position}"
                )

    async def quote(self, bid: Decimal, ask: Decimal, tick: Decimal) -> None:
        """Cancel the old quotes; place new ones, skewed against the inventory."""
        mid = (bid + ask) / 2
        skew = -self.position / self.max_position * self.half_spread  # lean against inventory
        our_bid = (mid * (1 - self.half_spread + skew) / tick).to_integral_value() * tick
        our_ask = (mid * (1 + self.half_spread + skew) / tick).to_integral_value() * tick
        await self.client.cancel_all_orders(self.market)
        for side, price in (("BUY", min(our_bid, ask - tick)), ("SELL", max(our_ask, bid + tick))):
            try:
                await self.client.create_order(self.market, side, self.size, price, tif="POST_ONLY")
                self.quotes += 1
            except LimitExceeded as exc:  # our own limits: e.g. the position cap
                print(f"skip  {side} {self.size} @ {price}: {exc.reason}")
            except InvalidOrder as exc:  # the book moved under us: next round
                print(f"miss  {side} {self.size} @ {price}: {exc.code}")

    async def run(self, seconds: float) -> None:
        market = next(m for m in await self.client.markets() if m.symbol == self.market)
        tick = Decimal(market.tick_size)
        fills = asyncio.create_task(self.watch_fills())
        loop = asyncio.get_running_loop()
        deadline, next_quote = loop.time() + seconds, 0.0
        try:
            async for book in self.client.watch_book(self.market):
                now = loop.time()
                if now >= deadline:
                    break
                if now < next_quote or book.best_bid is None or book.best_ask is None:
                    continue
                next_quote = now + 1.0
                await self.quote(book.best_bid[0], book.best_ask[0], tick)
        finally:
            await self.client.cancel_all_orders(self.market)
            fills.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fills
        print(f"done: {self.quotes} quotes, {self.fills} fills, position {self.position}")


async def main(url: str, key: str, secret: str, market: str, seconds: float) -> None:
    size, max_position = Decimal("0.01"), Decimal("0.05")
    limits = SizeLimits(max_position=max_position, price_band=Decimal("0.01"))
    async with AsyncClient(url, key, secret, limiter=RateLimiter(), size_limits=limits) as client:
        maker = MarketMaker(
            client, market, size=size, half_spread_bps=Decimal(3), max_position=max_position
        )
        await maker.run(seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEMO[0])
    parser.add_argument("--key", default=DEMO[1])
    parser.add_argument("--secret", default=DEMO[2])
    parser.add_argument("--market", default="BTC-PERP")
    parser.add_argument("--seconds", type=float, default=30)
    a = parser.parse_args()
    asyncio.run(main(a.url, a.key, a.secret, a.market, a.seconds))

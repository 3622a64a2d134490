"""A trend follower: a fast/slow EMA crossover on the mark price from the ticker stream; goes
long or short a fixed size with market orders, guarded by a slippage limit walked on the book.

Run it against a sandbox (``perpbot-sandbox --speed 60`` makes trends come sooner)::

    .venv/bin/python -m examples.trend_follower --seconds 60

What it shows: ``client.stream`` on a public channel, ``SizeLimits(max_slippage=...)`` walking
the order book before a market order is sent, reduce-only exits, and the position read back.
"""

from __future__ import annotations

import argparse
import asyncio
from decimal import Decimal

from perpbot import AsyncClient, InvalidOrder, LimitExceeded
from perpbot.limits import RateLimiter, SizeLimits

DEMO = ("http://127.0.0.1:8765", "demo-key", "demo-secret-0123456789")


class Ema:
    def __init__(self, periods: int) -> None:
        self.alpha = Decimal(2) / (periods + 1)
        self.value: Decimal | None = None

    def update(self, x: Decimal) -> Decimal:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)
        return self.value


async def follow(client: AsyncClient, market: str, size: Decimal, seconds: float) -> int:
    """Trade the crossover for ``seconds``; returns the number of orders placed."""
    fast, slow = Ema(5), Ema(20)
    position, orders, seen = Decimal(0), 0, 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with client.stream(f"ticker:{market}") as tickers:
        async for msg in tickers:
            if loop.time() >= deadline:
                break
            if msg.type != "update":
                continue
            mark = Decimal(msg.data["mark"])
            f, s = fast.update(mark), slow.update(mark)
            seen += 1
            if seen < 20:  # let the slow average settle
                continue
            target = size if f > s else -size
            if target == position:
                continue
            closing = abs(target) < abs(position) or target * position < 0
            qty = abs(target - position)
            side = "BUY" if target > position else "SELL"
            try:
                result = await client.create_order(market, side, qty, type="MARKET")
            except (LimitExceeded, InvalidOrder) as exc:
                print(f"no trade ({exc}); staying {position}")
                continue
            filled = sum(Decimal(fl.qty) for fl in result.fills)
            position += filled if side == "BUY" else -filled
            orders += 1
            avg = (
                sum(Decimal(fl.price) * Decimal(fl.qty) for fl in result.fills) / filled
                if filled
                else None
            )
            print(
                f"{'flip' if closing else 'open'}  {side} {qty} at market, filled {filled} "
                f"@ avg {avg:.2f}; fast {f:.2f} {'>' if f > s else '<'} slow {s:.2f}; "
                f"position {position}"
                if avg is not None
                else f"{side} {qty}: nothing filled"
            )
    if position:
        side = "SELL" if position > 0 else "BUY"
        await client.create_order(market, side, abs(position), type="MARKET", reduce_only=True)
        print(f"exit  {side} {abs(position)} reduce-only")
    return orders


async def main(url: str, key: str, secret: str, market: str, seconds: float) -> None:
    limits = SizeLimits(max_position=Decimal("0.1"), max_slippage=Decimal("0.002"))
    async with AsyncClient(url, key, secret, limiter=RateLimiter(), size_limits=limits) as client:
        orders = await follow(client, market, Decimal("0.02"), seconds)
        positions = [p for p in await client.positions(market) if p.size != "0"]
        account = await client.account()
        print(
            f"done: {orders} orders; open positions {[(p.market, p.size) for p in positions]}; "
            f"equity {account.equity} USDT"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEMO[0])
    parser.add_argument("--key", default=DEMO[1])
    parser.add_argument("--secret", default=DEMO[2])
    parser.add_argument("--market", default="BTC-PERP")
    parser.add_argument("--seconds", type=float, default=60)
    a = parser.parse_args()
    asyncio.run(main(a.url, a.key, a.secret, a.market, a.seconds))

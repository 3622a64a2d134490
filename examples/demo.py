"""``make demo``: start the sandbox exchange, run a small bot against it, stop everything.

The sandbox runs in this process on 127.0.0.1 (a free port) with its simulated market: index
sources moving, liquidity agents quoting. The clock runs 60x faster and starts five minutes
before a funding settlement, so within the demo you see orders, fills, the mark and index
moving, and a funding payment. The bot talks to the exchange like any other client: signed
REST requests and the WebSocket, nothing in-process.

Its strategy is deliberately simple: buy a small position at market, then keep a post-only bid
and ask a few basis points around the mark, re-quoting every couple of seconds. It prints what
the exchange tells it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import orjson
import websockets

from perpbot.signing import sign_ws_login, signed_headers
from sandbox.config import DEMO_KEY, DEMO_SECRET, SandboxSettings
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState

MARKET = "BTC-PERP"
SPEED = 60
# 07:55 UTC: the 08:00 funding settlement comes five simulated minutes (5 s) into the demo.
START_MS = int(datetime(2026, 1, 5, 7, 55, tzinfo=UTC).timestamp() * 1000)


def clock(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%H:%M:%S")


class Bot:
    """A signed REST client, a WebSocket reader that prints, and a quoting loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=5)
        self.tickers = 0
        self.size = "0"

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        raw = b"" if body is None else orjson.dumps(body)
        headers = signed_headers(DEMO_KEY, DEMO_SECRET, method, path, raw, int(time.time() * 1000))
        r = await self.http.request(method, path, content=raw or None, headers=headers)
        data = r.json()
        if r.status_code >= 400:
            print(
                f"           ! {method} {path}: {r.status_code} {data['code']}: {data['message']}"
            )
        return data

    async def listen(self) -> None:
        ws_url = self.url.replace("http", "ws", 1) + "/v1/ws"
        async with websockets.connect(ws_url) as ws:
            ts = str(int(time.time() * 1000))
            login = {"key": DEMO_KEY, "timestamp": ts, "signature": sign_ws_login(DEMO_SECRET, ts)}
            await ws.send(orjson.dumps({"op": "login", **login}))
            channels = [f"ticker:{MARKET}", f"funding:{MARKET}", "orders", "fills", "positions"]
            await ws.send(orjson.dumps({"op": "subscribe", "channels": channels}))
            async for raw in ws:
                self.show(orjson.loads(raw))

    def show(self, msg: dict[str, Any]) -> None:
        channel, data = msg.get("channel"), msg.get("data")
        if channel is None or msg.get("type") == "snapshot":
            return
        at = clock(msg["ts"])
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
                    print(
                        f"[{at}] position {p['size']} BTC, entry {p['entry_price']}, "
                        f"uPnL {p['unrealized_pnl']}, liquidation price {liq}"
                    )

    async def trade(self, seconds: float) -> None:
        market = next(m for m in await self.call("GET", "/v1/markets") if m["symbol"] == MARKET)
        tick = Decimal(market["tick_size"])
        await self.call("POST", f"/v1/leverage/{MARKET}", {"leverage": 10})
        await self.call(
            "POST", "/v1/orders", {"market": MARKET, "side": "BUY", "type": "MARKET", "qty": "0.05"}
        )
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            ticker = await self.call("GET", f"/v1/markets/{MARKET}/ticker")
            mark = Decimal(ticker["mark"])
            spread = mark * Decimal("0.0003")
            bid = ((mark - spread) / tick).to_integral_value() * tick
            ask = ((mark + spread) / tick).to_integral_value() * tick
            # Post-only quotes must not cross the book (the exchange would refuse them).
            if ticker["best_ask"] is not None:
                bid = min(bid, Decimal(ticker["best_ask"]) - tick)
            if ticker["best_bid"] is not None:
                ask = max(ask, Decimal(ticker["best_bid"]) + tick)
            await self.call("DELETE", f"/v1/orders?market={MARKET}")
            for side, price in (("BUY", bid), ("SELL", ask)):
                await self.call(
                    "POST",
                    "/v1/orders",
                    {
                        "market": MARKET,
                        "side": side,
                        "qty": "0.02",
                        "price": str(price),
                        "tif": "POST_ONLY",
                    },
                )
            await asyncio.sleep(2)
        await self.call("DELETE", "/v1/orders")

    async def summary(self) -> None:
        account = await self.call("GET", "/v1/account")
        fills = await self.call("GET", "/v1/fills?limit=1000")
        funding = await self.call("GET", "/v1/funding-payments")
        fees = sum(Decimal(f["fee"]) for f in fills)
        paid = sum(Decimal(f["amount"]) for f in funding)
        print("\nSummary (every figure from the exchange's REST API):")
        print(f"  collateral {account['collateral']} USDT, equity {account['equity']} USDT")
        print(f"  margin ratio {account['margin_ratio']}, available {account['available']}")
        for p in account["positions"]:
            if p["size"] != "0":
                print(
                    f"  {p['market']}: {p['size']} @ {p['entry_price']}, uPnL {p['unrealized_pnl']}"
                )
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
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await listener
            await bot.http.aclose()
    print("\nsandbox stopped; everything the demo started has exited")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16, help="how long the bot trades")
    asyncio.run(main(parser.parse_args().seconds))

"""The Binance-style WebSocket protocol with a plain client: paths, SUBSCRIBE/UNSUBSCRIBE,
combined streams, market-data events, the user-data stream and listen-key expiry."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import websockets

from sandbox.engine import PlaceOrder, SetLeverage
from sandbox.engine.commands import OrderType, Side
from sandbox.server.binance import compat_of

from .conftest import ALICE, BOB, Sandbox

TIMEOUT = 10.0


class Inbox:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def next(self, pred: Any = lambda m: True) -> Any:
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = orjson.loads(await self.ws.recv())
                if pred(msg):
                    return msg

    async def send(self, data: Any) -> None:
        await self.ws.send(orjson.dumps(data).decode())


def ws_url(sandbox: Sandbox, path: str) -> str:
    return sandbox.url.replace("http://", "ws://", 1) + "/fstream" + path


async def listen_key(sandbox: Sandbox, key: str) -> str:
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        r = await http.post("/fapi/v1/listenKey", headers={"X-MBX-APIKEY": key})
        return str(r.json()["listenKey"])


async def test_subscribe_protocol_and_market_streams(sandbox: Sandbox) -> None:
    state = sandbox.state
    async with websockets.connect(ws_url(sandbox, "/public/ws/0")) as ws:
        inbox = Inbox(ws)
        await inbox.send(
            {
                "method": "SUBSCRIBE",
                "params": ["btcusdt@depth@100ms", "btcusdt@bookTicker"],
                "id": 7,
            }
        )
        assert await inbox.next() == {"result": None, "id": 7}
        await inbox.send({"method": "LIST_SUBSCRIPTIONS", "id": 8})
        assert await inbox.next() == {
            "result": ["btcusdt@bookTicker", "btcusdt@depth@100ms"],
            "id": 8,
        }
        await inbox.send({"method": "SUBSCRIBE", "params": ["dogeusdt@depth"], "id": 9})
        assert (await inbox.next())["error"]["code"] == 2
        await ws.send("not json")
        assert (await inbox.next())["error"]["code"] == 3
        state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 10, 599000))
        state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 5, 599000))
        first = await inbox.next(lambda m: m.get("e") == "depthUpdate")
        ticker = await inbox.next(lambda m: m.get("e") == "bookTicker")
        second = await inbox.next(lambda m: m.get("e") == "depthUpdate")
        assert (first["b"], first["a"], first["s"]) == ([["59900", "0.01"]], [], "BTCUSDT")
        assert (ticker["b"], ticker["B"]) == ("59900", "0.01")
        assert second["b"] == [["59900", "0.015"]]
        assert second["pu"] == first["u"] and second["U"] == first["u"] + 1
        await inbox.send({"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 10})
        assert await inbox.next(lambda m: "id" in m) == {"result": None, "id": 10}


async def test_combined_streams_wrap_payloads(sandbox: Sandbox) -> None:
    state = sandbox.state
    names = "btcusdt@aggTrade/btcusdt@markPrice@1s/btcusdt@depth5/!markPrice@arr"
    async with websockets.connect(ws_url(sandbox, f"/market/stream?streams={names}")) as ws:
        inbox = Inbox(ws)
        state.apply(PlaceOrder("alice", "BTC-PERP", Side.SELL, 100, 600000))
        state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 40, None, OrderType.MARKET))
        agg = await inbox.next(lambda m: m["stream"] == "btcusdt@aggTrade")
        assert agg["data"]["e"] == "aggTrade"
        assert (agg["data"]["p"], agg["data"]["q"], agg["data"]["m"]) == ("60000", "0.04", False)
        partial = await inbox.next(lambda m: m["stream"] == "btcusdt@depth5")
        assert partial["data"]["a"] == [["60000", "0.06"]]  # after the trade
        state.advance(2_000)  # index and mark updates
        mark = await inbox.next(lambda m: m["stream"] == "btcusdt@markPrice@1s")
        prices = state.core.exchange.prices("BTC-PERP")
        assert mark["data"]["e"] == "markPriceUpdate"
        assert mark["data"]["T"] == prices.next_funding_ts
        arr = await inbox.next(lambda m: m["stream"] == "!markPrice@arr")
        assert [d["s"] for d in arr["data"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


async def test_unknown_paths_and_listen_keys_are_refused(sandbox: Sandbox) -> None:
    for path in ("/private/ws?listenKey=nope", "/nowhere", "/ws/btcusdt@nothing"):
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(ws_url(sandbox, path)):
                pass


async def test_user_stream_margin_call_and_expiry(sandbox: Sandbox) -> None:
    state = sandbox.state
    streams = compat_of(state).streams  # type: ignore[union-attr]
    key = await listen_key(sandbox, BOB[0])
    other = await listen_key(sandbox, ALICE[0])
    assert key != other
    async with websockets.connect(ws_url(sandbox, f"/private/ws?listenKey={key}")) as ws:
        inbox = Inbox(ws)
        async with asyncio.timeout(TIMEOUT):
            while "bob" not in streams.private:
                await asyncio.sleep(0.01)
        state.apply(SetLeverage("bob", "BTC-PERP", 100))
        config = await inbox.next(lambda m: m["e"] == "ACCOUNT_CONFIG_UPDATE")
        assert config["ac"] == {"s": "BTCUSDT", "l": 100}
        state.apply(PlaceOrder("alice", "BTC-PERP", Side.SELL, 10_000, 600000))
        state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 10_000, None, OrderType.MARKET))
        new = await inbox.next(lambda m: m["e"] == "ORDER_TRADE_UPDATE" and m["o"]["x"] == "NEW")
        fill = await inbox.next(lambda m: m["e"] == "ORDER_TRADE_UPDATE")
        assert (new["o"]["S"], new["o"]["o"], new["o"]["ps"]) == ("BUY", "MARKET", "BOTH")
        assert (fill["o"]["x"], fill["o"]["X"], fill["o"]["z"], fill["o"]["ap"]) == (
            "TRADE",
            "FILLED",
            "10",
            "60000",
        )
        assert (fill["o"]["n"], fill["o"]["m"]) == ("300", False)
        update = await inbox.next(lambda m: m["e"] == "ACCOUNT_UPDATE")
        assert update["a"]["m"] == "ORDER"
        assert update["a"]["B"][0]["wb"] == "99700"
        assert update["a"]["P"][0] | {"up": None} == {
            "s": "BTCUSDT",
            "pa": "10",
            "ep": "60000",
            "bep": "60000",
            "cr": "0",
            "up": None,
            "mt": "cross",
            "iw": "0",
            "ps": "BOTH",
        }
        # Walk the index down until the engine calls margin (before it liquidates).
        liq = state.core.exchange.liquidation_price("bob", "BTC-PERP")
        assert liq is not None
        price = Decimal(liq) / 10 + 80
        while not any(
            r["kind"] == "margin_call" for r in state.core.records.liquidations("bob", 10)
        ):
            price -= 5
            for source in ("spot-a", "spot-b", "spot-c"):
                state.set_index_price("BTC-PERP", source, str(price))
            state.advance(1_000)
        call = await inbox.next(lambda m: m["e"] == "MARGIN_CALL")
        assert call["p"][0]["s"] == "BTCUSDT" and call["p"][0]["pa"] == "10"
        assert Decimal(call["cw"]) == Decimal("99700")
        # The key expires on wall-clock time (60 min after its last keepalive).
        sandbox.wall.offset += 61 * 60 * 1000
        expired = await inbox.next(lambda m: m.get("e") == "listenKeyExpired")
        assert expired["listenKey"] == key
        async with asyncio.timeout(TIMEOUT):
            await ws.wait_closed()
    assert "bob" not in streams.private

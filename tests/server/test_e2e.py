"""End to end over real sockets: uvicorn on 127.0.0.1 (free port), HTTP + WebSocket together."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import websockets

from perpbot.signing import sign_ws_login, signed_headers
from sandbox.server.runner import serve
from sandbox.server.state import wall_ms

from .conftest import FakeWall, make_state

TIMEOUT = 10.0


class Wall(FakeWall):
    def __call__(self) -> int:
        return wall_ms()


class Inbox:
    """Messages of one socket; ``next`` takes the first one matching, keeping the others."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.kept: list[dict[str, Any]] = []

    async def next(self, pred: Any) -> dict[str, Any]:
        for i, msg in enumerate(self.kept):
            if pred(msg):
                return self.kept.pop(i)
        while True:
            msg = dict(orjson.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT)))
            if pred(msg):
                return msg
            if msg.get("op") != "heartbeat":
                self.kept.append(msg)


def _signed(key: str, secret: str, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    return signed_headers(key, secret, method, path, body, int(time.time() * 1000))


async def test_book_stream_matches_rest_and_private_streams_see_own_orders() -> None:
    state = make_state(Wall())
    async with serve(state) as url:
        ws_url = url.replace("http", "ws", 1) + "/v1/ws"
        async with httpx.AsyncClient(base_url=url) as http, websockets.connect(ws_url) as ws:
            inbox = Inbox(ws)
            await ws.send(orjson.dumps({"op": "subscribe", "channels": ["book:BTC-PERP"]}))
            snapshot = await inbox.next(lambda m: m.get("type") == "snapshot")
            assert snapshot["channel"] == "book:BTC-PERP"
            rest = (await http.get("/v1/markets/BTC-PERP/book")).json()
            assert rest["seq"] == snapshot["seq"]

            secret = "alice-secret-0123456789"
            ts = str(int(time.time() * 1000))
            login = {"op": "login", "key": "alice-key", "timestamp": ts}
            await ws.send(orjson.dumps({**login, "signature": sign_ws_login(secret, ts)}))
            assert (await inbox.next(lambda m: m.get("op") == "login"))["account"] == "alice"
            await ws.send(
                orjson.dumps({"op": "subscribe", "channels": ["orders", "fills", "account"]})
            )
            await inbox.next(lambda m: m.get("op") == "subscribed")
            # Private snapshots: no open orders yet, and the funded account.
            orders0 = await inbox.next(lambda m: m.get("channel") == "orders")
            assert (orders0["type"], orders0["data"]) == ("snapshot", [])
            acct0 = await inbox.next(lambda m: m.get("channel") == "account")
            assert (acct0["type"], acct0["data"]["collateral"]) == ("snapshot", "100000")

            body = orjson.dumps(
                {"market": "BTC-PERP", "side": "SELL", "qty": "0.5", "price": "60000"}
            )
            headers = _signed("alice-key", secret, "POST", "/v1/orders", body)
            r = await http.post("/v1/orders", content=body, headers=headers)
            assert r.status_code == 200, r.text
            diff = await inbox.next(lambda m: m.get("channel") == "book:BTC-PERP")
            assert diff["seq"] == snapshot["seq"] + 1
            assert diff["data"]["asks"] == [["60000", "0.5"]]
            order = await inbox.next(lambda m: m.get("channel") == "orders")
            assert order["data"]["status"] == "NEW" and order["data"]["update"] == "accepted"
            assert order["seq"] == orders0["seq"] + 1
            acct1 = await inbox.next(lambda m: m.get("channel") == "account")
            assert acct1["data"]["order_margin"] == "1500"  # 0.5 x 60000 / 20x

            body = orjson.dumps(
                {"market": "BTC-PERP", "side": "BUY", "qty": "0.2", "type": "MARKET"}
            )
            headers = _signed("bob-key", "bob-secret-0123456789", "POST", "/v1/orders", body)
            assert (await http.post("/v1/orders", content=body, headers=headers)).status_code == 200
            fill = await inbox.next(lambda m: m.get("channel") == "fills")
            assert (fill["data"]["liquidity"], fill["data"]["qty"]) == ("MAKER", "0.2")
            diff2 = await inbox.next(lambda m: m.get("channel") == "book:BTC-PERP")
            assert diff2["seq"] == diff["seq"] + 1
            assert diff2["data"]["asks"] == [["60000", "0.3"]]
    # Everything stopped: the port no longer accepts connections.
    async with httpx.AsyncClient() as http:
        try:
            await http.get(url + "/v1/time", timeout=2)
            raise AssertionError("server still running")
        except httpx.TransportError:
            pass

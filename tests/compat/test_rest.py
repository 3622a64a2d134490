"""The /fapi REST layer in-process (httpx ASGI transport, manual clocks): signatures, errors,
weights and throttling, listen keys, and the market/account data the clients read."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from sandbox.engine import PlaceOrder
from sandbox.engine.commands import Side
from sandbox.server.app import create_app
from sandbox.server.binance import BinanceCompat
from sandbox.server.binance.listen_keys import LISTEN_KEY_TTL_MS
from sandbox.server.state import SandboxState
from sandbox.server.throttle import ThrottleConfig
from tests.server.conftest import FakeWall, make_state

from .conftest import ALICE, BOB


@dataclass
class Signer:
    http: httpx.AsyncClient
    wall: FakeWall
    key: str
    secret: str

    def sign(self, params: dict[str, Any]) -> str:
        query = urlencode(params)
        sig = hmac.new(self.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        return f"{query}&signature={sig}"

    async def call(self, method: str, path: str, **params: Any) -> httpx.Response:
        params = {**params, "timestamp": self.wall.now}
        signed = self.sign(params)
        headers = {"X-MBX-APIKEY": self.key}
        if method in ("POST", "PUT"):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return await self.http.request(method, path, content=signed, headers=headers)
        return await self.http.request(method, f"{path}?{signed}", headers=headers)


@pytest.fixture
def wall() -> FakeWall:
    return FakeWall()


@pytest.fixture
def state(wall: FakeWall) -> SandboxState:
    return make_state(wall)


@pytest.fixture
async def http(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(state, background=False)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


@pytest.fixture
def alice(http: httpx.AsyncClient, wall: FakeWall) -> Signer:
    return Signer(http, wall, *ALICE)


@pytest.fixture
def bob(http: httpx.AsyncClient, wall: FakeWall) -> Signer:
    return Signer(http, wall, *BOB)


def compat(http: httpx.AsyncClient) -> BinanceCompat:
    app = http._transport.app  # type: ignore[attr-defined]
    result: BinanceCompat = app.state.binance
    return result


def code(r: httpx.Response) -> tuple[int, int]:
    return r.status_code, int(r.json()["code"])


async def test_exchange_info_describes_usdt_perpetuals(http: httpx.AsyncClient) -> None:
    info = (await http.get("/fapi/v1/exchangeInfo")).json()
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert (btc["contractType"], btc["marginAsset"], btc["quoteAsset"]) == (
        "PERPETUAL",
        "USDT",
        "USDT",
    )
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.1"
    assert filters["PRICE_FILTER"]["maxPrice"] == "214748364.7"  # MAX_TICKS ticks
    assert filters["LOT_SIZE"]["stepSize"] == "0.001"
    assert filters["MARKET_LOT_SIZE"]["maxQty"] == "120"
    assert filters["MIN_NOTIONAL"]["notional"] == "100"
    assert {r["rateLimitType"] for r in info["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert (await http.get("/fapi/v1/ping")).json() == {}


async def test_signature_over_raw_query_and_body_in_any_order(
    alice: Signer, http: httpx.AsyncClient, wall: FakeWall
) -> None:
    # Alphabetical (python-binance) and timestamp-first (ccxt) orders both verify.
    for params in (
        {"recvWindow": 5000, "symbol": "BTCUSDT", "timestamp": wall.now},
        {"timestamp": wall.now, "symbol": "BTCUSDT", "recvWindow": 5000},
    ):
        r = await http.get(
            f"/fapi/v2/positionRisk?{alice.sign(params)}", headers={"X-MBX-APIKEY": ALICE[0]}
        )
        assert r.status_code == 200, r.text
    # Split between query and body: signed over query + body, as received.
    query = "symbol=BTCUSDT&leverage=100"
    body = f"timestamp={wall.now}"
    sig = hmac.new(ALICE[1].encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    r = await http.post(
        f"/fapi/v1/leverage?{query}",
        content=f"{body}&signature={sig}",
        headers={"X-MBX-APIKEY": ALICE[0], "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.json() == {"leverage": 100, "maxNotionalValue": "600000", "symbol": "BTCUSDT"}
    # Re-encoding changes the bytes: "%2D" is not "-", so the signature no longer matches.
    tampered = alice.sign({"symbol": "BTCUSDT", "timestamp": wall.now}).replace("BTC", "%42TC")
    r = await http.get(f"/fapi/v3/positionRisk?{tampered}", headers={"X-MBX-APIKEY": ALICE[0]})
    assert code(r) == (400, -1022)


async def test_auth_failures_use_binance_codes(
    alice: Signer, http: httpx.AsyncClient, wall: FakeWall
) -> None:
    q = alice.sign({"timestamp": wall.now})
    assert code(await http.get(f"/fapi/v3/account?{q}")) == (401, -2014)
    r = await http.get(f"/fapi/v3/account?{q}", headers={"X-MBX-APIKEY": "nope"})
    assert code(r) == (401, -2015)
    bad = Signer(http, wall, ALICE[0], "wrong-secret")
    assert code(await bad.call("GET", "/fapi/v3/account")) == (400, -1022)
    r = await http.get("/fapi/v3/account?recvWindow=5000", headers={"X-MBX-APIKEY": ALICE[0]})
    assert code(r) == (400, -1102)
    stale = alice.sign({"timestamp": wall.now - 5001})
    r = await http.get(f"/fapi/v3/account?{stale}", headers={"X-MBX-APIKEY": ALICE[0]})
    assert code(r) == (400, -1021)
    ok = alice.sign({"timestamp": wall.now - 5001, "recvWindow": 6000})
    r = await http.get(f"/fapi/v3/account?{ok}", headers={"X-MBX-APIKEY": ALICE[0]})
    assert r.status_code == 200
    ahead = alice.sign({"timestamp": wall.now + 1000})
    r = await http.get(f"/fapi/v3/account?{ahead}", headers={"X-MBX-APIKEY": ALICE[0]})
    assert code(r) == (400, -1021)
    wide = alice.sign({"timestamp": wall.now, "recvWindow": 60001})
    r = await http.get(f"/fapi/v3/account?{wide}", headers={"X-MBX-APIKEY": ALICE[0]})
    assert code(r) == (400, -1131)
    dup = alice.sign({"timestamp": wall.now}) + "&timestamp=1"
    r = await http.get(f"/fapi/v3/account?{dup}", headers={"X-MBX-APIKEY": ALICE[0]})
    assert code(r) == (400, -1101)


async def test_unknown_paths_and_symbols_answer_json(http: httpx.AsyncClient) -> None:
    r = await http.get("/fapi/v1/nope")
    assert code(r) == (404, -5000)
    r = await http.get("/fapi/v1/depth?symbol=DOGEUSDT")
    assert code(r) == (400, -1121)
    r = await http.get("/fapi/v1/depth?symbol=BTCUSDT&limit=7")
    assert code(r) == (400, -1130)
    r = await http.get("/fapi/v1/klines?symbol=BTCUSDT&interval=7m")
    assert code(r) == (400, -1120)
    r = await http.get("/fapi/v1/depth")
    assert code(r) == (400, -1102)
    # /v1 keeps its own envelope.
    assert (await http.get("/v1/nope")).json()["code"] == "NOT_FOUND"


async def test_orders_and_rejections(
    alice: Signer, bob: Signer, state: SandboxState, http: httpx.AsyncClient
) -> None:
    r = await alice.call(
        "POST",
        "/fapi/v1/order",
        symbol="BTCUSDT",
        side="SELL",
        type="LIMIT",
        quantity="0.5",
        price="60000",
        timeInForce="GTC",
        newClientOrderId="x-abc/1:2.3_4",
        newOrderRespType="RESULT",
    )
    assert r.status_code == 200, r.text
    resting = r.json()
    assert (resting["status"], resting["clientOrderId"], resting["origQty"]) == (
        "NEW",
        "x-abc/1:2.3_4",
        "0.5",
    )
    r = await bob.call(
        "POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.2"
    )
    taken = r.json()
    assert (taken["status"], taken["executedQty"], taken["avgPrice"], taken["cumQuote"]) == (
        "FILLED",
        "0.2",
        "60000",
        "12000",
    )
    assert taken["clientOrderId"].startswith("sbx-auto-")
    got = (
        await alice.call(
            "GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="x-abc/1:2.3_4"
        )
    ).json()
    assert (got["status"], got["executedQty"], got["cumQuote"]) == (
        "PARTIALLY_FILLED",
        "0.2",
        "12000",
    )

    before = state.core.exchange.account_view("alice")
    rejections: list[tuple[dict[str, Any], int]] = [
        ({"side": "SELL", "type": "LIMIT", "quantity": "1000", "price": "60000"}, -2019),
        (
            {
                "side": "SELL",
                "type": "LIMIT",
                "quantity": "1",
                "price": "61000",
                "reduceOnly": "true",
            },
            -2022,
        ),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.01",
                "price": "60000",
                "timeInForce": "GTX",
            },
            -5022,
        ),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "5",
                "price": "60000",
                "timeInForce": "FOK",
            },
            -5021,
        ),
        ({"side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "59000"}, -4164),
        ({"side": "BUY", "type": "LIMIT", "quantity": "0.0001", "price": "59000"}, -1111),
        ({"side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "59000.05"}, -4014),
        ({"side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "70000"}, -4016),
        ({"side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000"}, -4024),
        ({"side": "BUY", "type": "MARKET", "quantity": "121"}, -1013),
        ({"side": "BUY", "type": "LIMIT", "quantity": "1001", "price": "59000"}, -1013),
        ({"side": "BUY", "type": "STOP_MARKET", "quantity": "1"}, -1116),
        ({"side": "UP", "type": "LIMIT", "quantity": "1", "price": "59000"}, -1117),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "1",
                "price": "59000",
                "timeInForce": "GTD",
            },
            -1115,
        ),
        ({"side": "BUY", "type": "LIMIT", "quantity": "1"}, -1102),
        ({"side": "BUY", "type": "MARKET", "quantity": "1", "price": "1"}, -1106),
        ({"side": "BUY", "type": "LIMIT", "quantity": "abc", "price": "59000"}, -1130),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "1",
                "price": "59000",
                "positionSide": "LONG",
            },
            -4061,
        ),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "1",
                "price": "59000",
                "newClientOrderId": "x-abc/1:2.3_4",
            },
            -4116,
        ),
        (
            {
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "1",
                "price": "59000",
                "newClientOrderId": "bad id!",
            },
            -1100,
        ),
    ]
    for fields, expected in rejections:
        r = await alice.call("POST", "/fapi/v1/order", symbol="BTCUSDT", **fields)
        assert r.status_code == 400 and r.json().get("code") == expected, (fields, r.text)
    # Refused requests change nothing.
    assert state.core.exchange.account_view("alice") == before
    opened = (await alice.call("GET", "/fapi/v1/openOrders", symbol="BTCUSDT")).json()
    assert [o["clientOrderId"] for o in opened] == ["x-abc/1:2.3_4"]

    r = await alice.call("GET", "/fapi/v1/order", symbol="BTCUSDT", orderId=999)
    assert code(r) == (400, -2013)
    r = await alice.call("DELETE", "/fapi/v1/order", symbol="BTCUSDT", orderId=999)
    assert code(r) == (400, -2011)
    r = await alice.call("DELETE", "/fapi/v1/order", symbol="BTCUSDT")
    assert code(r) == (400, -1102)
    r = await alice.call("DELETE", "/fapi/v1/order", symbol="BTCUSDT", orderId=resting["orderId"])
    assert (r.json()["status"], r.json()["executedQty"]) == ("CANCELED", "0.2")
    r = await alice.call("DELETE", "/fapi/v1/order", symbol="BTCUSDT", orderId=resting["orderId"])
    assert code(r) == (400, -2011)
    assert (await alice.call("GET", "/fapi/v1/openOrders")).json() == []

    # all orders, then cancel-all.
    for px in ("59000", "59100"):
        await alice.call(
            "POST",
            "/fapi/v1/order",
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            quantity="0.01",
            price=px,
        )
    assert len((await alice.call("GET", "/fapi/v1/allOrders", symbol="BTCUSDT")).json()) == 3
    r = await alice.call("DELETE", "/fapi/v1/allOpenOrders", symbol="BTCUSDT")
    assert r.json()["code"] == 200
    assert state.core.exchange.open_orders("alice") == []


async def test_account_positions_and_history(
    alice: Signer, bob: Signer, state: SandboxState, http: httpx.AsyncClient
) -> None:
    await alice.call("POST", "/fapi/v1/leverage", symbol="BTCUSDT", leverage=10)
    await alice.call(
        "POST",
        "/fapi/v1/order",
        symbol="BTCUSDT",
        side="SELL",
        type="LIMIT",
        quantity="1",
        price="60000",
    )
    await bob.call(
        "POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="1"
    )
    view = state.core.exchange.account_view("alice")
    acct = (await alice.call("GET", "/fapi/v3/account")).json()
    assert Decimal(acct["totalWalletBalance"]) == Decimal(view.collateral) / 10**8
    assert Decimal(acct["totalWalletBalance"]) == Decimal("100000") - Decimal("12")  # maker fee
    assert [p["symbol"] for p in acct["positions"]] == ["BTCUSDT"]
    v2 = (await alice.call("GET", "/fapi/v2/account")).json()
    assert len(v2["positions"]) == 3 and v2["canTrade"] is True
    rows = (await alice.call("GET", "/fapi/v3/positionRisk")).json()
    assert len(rows) == 1
    row = rows[0]
    assert (row["positionAmt"], row["entryPrice"], row["leverage"]) == ("-1", "60000", "10")
    assert (await alice.call("GET", "/fapi/v2/positionRisk")).json()[1]["entryPrice"] == "0"
    bal = (await alice.call("GET", "/fapi/v3/balance")).json()
    assert bal[0]["balance"] == acct["totalWalletBalance"]
    brackets = (await alice.call("GET", "/fapi/v1/leverageBracket", symbol="BTCUSDT")).json()
    assert brackets[0]["brackets"][0]["notionalFloor"] == 0
    trades = (await alice.call("GET", "/fapi/v1/userTrades", symbol="BTCUSDT")).json()
    assert [(t["side"], t["qty"], t["maker"], t["commission"]) for t in trades] == [
        ("SELL", "1", True, "12")
    ]
    # Funding: advance past the 8 h settlement; income shows what the records hold.
    state.advance(8 * 3600 * 1000)
    paid = state.core.records.funding_payments("alice", None, 10)
    assert paid
    income = (await alice.call("GET", "/fapi/v1/income", incomeType="FUNDING_FEE")).json()
    assert [Decimal(i["income"]) for i in income] == [-Decimal(p["amount"]) for p in paid]
    rates = (await http.get("/fapi/v1/fundingRate?symbol=BTCUSDT")).json()
    assert rates[-1]["fundingRate"] == paid[0]["rate"]
    commissions = (await alice.call("GET", "/fapi/v1/income", incomeType="COMMISSION")).json()
    assert [c["income"] for c in commissions] == ["-12"]
    # Market data built from the same trade.
    assert (await http.get("/fapi/v1/trades?symbol=BTCUSDT")).json()[0]["price"] == "60000"
    agg = (await http.get("/fapi/v1/aggTrades?symbol=BTCUSDT")).json()
    assert (agg[0]["p"], agg[0]["q"], agg[0]["m"]) == ("60000", "1", False)
    kl = (await http.get("/fapi/v1/klines?symbol=BTCUSDT&interval=1h")).json()
    assert kl[0][1:6] == ["60000", "60000", "60000", "60000", "1"]
    t24 = (await http.get("/fapi/v1/ticker/24hr?symbol=BTCUSDT")).json()
    assert (t24["lastPrice"], t24["volume"], t24["count"]) == ("60000", "1", 1)
    assert (await http.get("/fapi/v2/ticker/price?symbol=BTCUSDT")).json()["price"] == "60000"
    prem = (await http.get("/fapi/v1/premiumIndex?symbol=BTCUSDT")).json()
    prices = state.core.exchange.prices("BTC-PERP")
    assert prem["nextFundingTime"] == prices.next_funding_ts
    assert Decimal(prem["markPrice"]) * 10 == prices.mark
    r = await alice.call("POST", "/fapi/v1/marginType", symbol="BTCUSDT", marginType="CROSSED")
    assert code(r) == (400, -4046)
    r = await alice.call("POST", "/fapi/v1/marginType", symbol="BTCUSDT", marginType="ISOLATED")
    assert code(r) == (400, -4168)
    r = await alice.call("POST", "/fapi/v1/leverage", symbol="BTCUSDT", leverage=126)
    assert code(r) == (400, -4028)
    assert (await alice.call("GET", "/fapi/v1/positionSide/dual")).json() == {
        "dualSidePosition": False
    }


async def test_depth_update_id_counts_book_changes(
    http: httpx.AsyncClient, state: SandboxState
) -> None:
    first = (await http.get("/fapi/v1/depth?symbol=BTCUSDT&limit=5")).json()
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 10, 590000))
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.SELL, 10, 610000))
    state.apply(PlaceOrder("bob", "ETH-PERP", Side.SELL, 10, 310000))  # another market
    snap = (await http.get("/fapi/v1/depth?symbol=BTCUSDT&limit=5")).json()
    assert snap["lastUpdateId"] == first["lastUpdateId"] + 2
    assert (snap["bids"], snap["asks"]) == ([["59000", "0.01"]], [["61000", "0.01"]])
    bt = (await http.get("/fapi/v1/ticker/bookTicker?symbol=BTCUSDT")).json()
    assert (bt["bidPrice"], bt["askQty"], bt["lastUpdateId"]) == ("59000", "0.01", 2)


async def test_weights_429_then_418(alice: Signer, http: httpx.AsyncClient, wall: FakeWall) -> None:
    throttle = compat(http).rest.throttle
    r = await http.get("/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "20"
    r = await http.get("/fapi/v1/depth?symbol=BTCUSDT&limit=50")
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "22"
    throttle.set_config(ThrottleConfig(weight_limit=30, strikes_to_ban=2, ban_base_ms=120_000))
    r = await http.get("/fapi/v1/ticker/24hr")  # weight 40 > 30
    assert code(r) == (429, -1003)
    retry = int(r.headers["Retry-After"])
    assert 0 < retry <= 60
    assert code(await http.get("/fapi/v1/ping")) == (429, -1003)
    r = await http.get("/fapi/v1/ping")
    assert code(r) == (418, -1003) and int(r.headers["Retry-After"]) == 120
    wall.now += 121_000
    assert (await http.get("/fapi/v1/ping")).status_code == 200
    # The order-count budget: -1015.
    throttle.set_config(ThrottleConfig(order_limit=2))
    for _i in range(3):
        r = await alice.call(
            "POST",
            "/fapi/v1/order",
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            quantity="0.01",
            price="59000",
        )
    assert code(r) == (429, -1015)
    assert r.headers["X-MBX-ORDER-COUNT-10S"] == "2"


async def test_listen_keys_live_on_wall_time(
    alice: Signer, http: httpx.AsyncClient, wall: FakeWall
) -> None:
    headers = {"X-MBX-APIKEY": ALICE[0]}
    key = (await http.post("/fapi/v1/listenKey", headers=headers)).json()["listenKey"]
    assert (await http.post("/fapi/v1/listenKey", headers=headers)).json()["listenKey"] == key
    keys = compat(http).listen_keys
    assert keys.account_of(key) == "alice"
    wall.now += LISTEN_KEY_TTL_MS - 1
    assert (await http.put("/fapi/v1/listenKey", headers=headers)).status_code == 200
    wall.now += LISTEN_KEY_TTL_MS - 1
    assert keys.account_of(key) == "alice"  # extended by the PUT
    wall.now += 1
    assert keys.account_of(key) is None
    assert code(await http.put("/fapi/v1/listenKey", headers=headers)) == (400, -1125)
    fresh = (await http.post("/fapi/v1/listenKey", headers=headers)).json()["listenKey"]
    assert fresh != key
    assert (await http.delete("/fapi/v1/listenKey", headers=headers)).json() == {}
    assert code(await http.delete("/fapi/v1/listenKey", headers=headers)) == (400, -1125)
    assert code(await http.post("/fapi/v1/listenKey")) == (401, -2014)


async def test_fapi_routes_stay_out_of_the_openapi_schema(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    assert not [p for p in schema["paths"] if p.startswith(("/fapi", "/fstream"))]


async def test_modify_order(alice: Signer, state: SandboxState) -> None:
    placed = (
        await alice.call(
            "POST",
            "/fapi/v1/order",
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            quantity="0.5",
            price="59000",
            newClientOrderId="mod-1",
        )
    ).json()
    fields = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.5", "price": "59000"}
    r = await alice.call("PUT", "/fapi/v1/order", orderId=placed["orderId"], **fields)
    assert code(r) == (400, -5027)
    r = await alice.call(
        "PUT", "/fapi/v1/order", orderId=placed["orderId"], **fields | {"side": "SELL"}
    )
    assert code(r) == (400, -1130)
    r = await alice.call("PUT", "/fapi/v1/order", orderId=12345, **fields)
    assert code(r) == (400, -2013)
    r = await alice.call(
        "PUT", "/fapi/v1/order", origClientOrderId="mod-1", **fields | {"price": "59100"}
    )
    assert (r.json()["orderId"], r.json()["price"], r.json()["clientOrderId"]) == (
        placed["orderId"],
        "59100",
        "mod-1",
    )
    assert state.core.exchange.markets["BTC-PERP"].book.bids.depth(2) == [(591000, 500)]
    assert r.headers["X-MBX-ORDER-COUNT-10S"] == "5"  # one POST and four PUTs


async def test_ioc_fills_what_it_can_and_expires(alice: Signer, bob: Signer) -> None:
    await alice.call(
        "POST",
        "/fapi/v1/order",
        symbol="BTCUSDT",
        side="SELL",
        type="LIMIT",
        quantity="0.3",
        price="60000",
    )
    r = await bob.call(
        "POST",
        "/fapi/v1/order",
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        quantity="0.5",
        price="60100",
        timeInForce="IOC",
        newOrderRespType="RESULT",
    )
    o = r.json()
    assert (o["status"], o["timeInForce"], o["executedQty"], o["avgPrice"], o["cumQuote"]) == (
        "EXPIRED",
        "IOC",
        "0.3",
        "60000",
        "18000",
    )
    assert (await bob.call("GET", "/fapi/v1/openOrders", symbol="BTCUSDT")).json() == []

"""Public market data: markets, ticker, book (with its channel seq), trades, candles, funding."""

from __future__ import annotations

import httpx

from sandbox.server.state import SandboxState

from .conftest import Api, admin_headers


async def test_markets_describe_filters_and_brackets(http: httpx.AsyncClient) -> None:
    markets = {m["symbol"]: m for m in (await http.get("/v1/markets")).json()}
    assert set(markets) == {"BTC-PERP", "ETH-PERP", "SOL-PERP"}
    btc = markets["BTC-PERP"]
    assert (btc["tick_size"], btc["lot_size"], btc["min_notional"]) == ("0.1", "0.001", "100")
    assert (btc["maker_fee"], btc["taker_fee"]) == ("0.0002", "0.0005")
    assert btc["brackets"][0] == {
        "notional_cap": "50000",
        "max_leverage": 125,
        "maintenance_rate": "0.004",
        "maintenance_amount": "0",
    }
    assert btc["funding_interval_ms"] == 8 * 3600 * 1000


async def test_book_trades_ticker_and_candles_follow_trading(
    alice: Api, bob: Api, http: httpx.AsyncClient, state: SandboxState
) -> None:
    await alice.order(side="SELL", qty="0.5", price="60010")
    await alice.order(side="SELL", qty="0.25", price="60010")
    await alice.order(side="BUY", qty="1", price="59990")
    book = (await http.get("/v1/markets/BTC-PERP/book?depth=5")).json()
    assert book["asks"] == [["60010", "0.75"]]
    assert book["bids"] == [["59990", "1"]]
    assert book["seq"] == state.hub.seq("book:BTC-PERP")
    await bob.order(side="BUY", qty="0.6", type="MARKET")
    after = (await http.get("/v1/markets/BTC-PERP/book")).json()
    assert after["asks"] == [["60010", "0.15"]]
    assert after["seq"] > book["seq"]
    trades = (await http.get("/v1/markets/BTC-PERP/trades?limit=10")).json()
    assert [(t["qty"], t["taker_side"]) for t in trades] == [("0.1", "BUY"), ("0.5", "BUY")]
    ticker = (await http.get("/v1/markets/BTC-PERP/ticker")).json()
    assert ticker["last"] == "60010"
    assert (ticker["best_bid"], ticker["best_ask"]) == ("59990", "60010")
    assert ticker["volume_24h"] == "0.6"
    assert ticker["quote_volume_24h"] == "36006"
    candles = (await http.get("/v1/markets/BTC-PERP/candles?interval=1m")).json()
    assert len(candles) == 1
    assert (candles[0]["open"], candles[0]["close"], candles[0]["trades"]) == ("60010", "60010", 2)
    assert len((await http.get("/v1/tickers")).json()) == 3


async def test_candles_aggregate_across_minutes(
    alice: Api, bob: Api, http: httpx.AsyncClient
) -> None:
    for price in ("60000", "60100", "59900"):
        await alice.order(side="SELL", qty="0.1", price=price)
        await bob.order(side="BUY", qty="0.1", type="MARKET")
        await http.post(
            "/v1/admin/clock", json={"action": "advance", "ms": 60_000}, headers=admin_headers()
        )
    ones = (await http.get("/v1/markets/BTC-PERP/candles?interval=1m")).json()
    assert [c["close"] for c in ones] == ["60000", "60100", "59900"]
    hour = (await http.get("/v1/markets/BTC-PERP/candles?interval=1h")).json()
    assert sum(c["trades"] for c in hour) == 3
    assert max(c["high"] for c in hour) == "60100"
    r = await http.get("/v1/markets/BTC-PERP/candles?interval=7m")
    assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_ERROR")


async def test_unknown_things_are_404_and_bad_params_422(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/markets/NOPE-PERP/ticker")
    assert (r.status_code, r.json()["code"]) == (404, "UNKNOWN_MARKET")
    r = await http.get("/v1/nowhere")
    assert (r.status_code, r.json()["code"]) == (404, "NOT_FOUND")
    r = await http.put("/v1/markets")
    assert (r.status_code, r.json()["code"]) == (405, "METHOD_NOT_ALLOWED")
    r = await http.get("/v1/markets/BTC-PERP/book?depth=0")
    assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_ERROR")
    r = await http.get("/v1/markets/BTC-PERP/trades?limit=abc")
    assert r.status_code == 422


async def test_docs_are_served_without_a_cdn(http: httpx.AsyncClient) -> None:
    page = (await http.get("/docs")).text
    assert "cdn" not in page.lower() and "/static/swagger-ui-bundle.js" in page
    assert (await http.get("/static/swagger-ui-bundle.js")).status_code == 200
    assert "/static/redoc.standalone.js" in (await http.get("/redoc")).text
    spec = (await http.get("/openapi.json")).json()
    assert "OrderRequest" in spec["components"]["schemas"]
    body = spec["paths"]["/v1/orders"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/OrderRequest")

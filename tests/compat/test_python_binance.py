"""Unmodified python-binance (AsyncClient, BinanceSocketManager) against the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException

from sandbox.clients import point_binance_at
from sandbox.engine import PlaceOrder
from sandbox.engine.commands import Side

from .conftest import ALICE, Sandbox, assert_loopback

TIMEOUT = 10.0


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[AsyncClient]:
    c = point_binance_at(AsyncClient(*ALICE), sandbox.url)
    try:
        yield c
    finally:
        await c.close_connection()


async def test_rest_round_trip(sandbox: Sandbox, client: AsyncClient) -> None:
    state = sandbox.state
    assert abs((await client.futures_time())["serverTime"] - sandbox.wall()) < 5_000
    info = await client.futures_exchange_info()
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    lev = await client.futures_change_leverage(symbol="BTCUSDT", leverage=5)
    assert lev["leverage"] == 5
    order = await client.futures_create_order(
        symbol="BTCUSDT",
        side="SELL",
        type="LIMIT",
        quantity="0.5",
        price="60000",
        timeInForce="GTC",
        newClientOrderId="pb-1",
    )
    assert (order["status"], order["clientOrderId"]) == ("NEW", "pb-1")
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 200, 600000))  # takes 0.2
    got = await client.futures_get_order(symbol="BTCUSDT", origClientOrderId="pb-1")
    assert (got["status"], got["executedQty"], got["avgPrice"]) == (
        "PARTIALLY_FILLED",
        "0.2",
        "60000",
    )
    book = await client.futures_order_book(symbol="BTCUSDT", limit=5)
    assert book["asks"] == [["60000", "0.3"]]
    assert (await client.futures_symbol_ticker(symbol="BTCUSDT"))["price"] == "60000"
    mark = await client.futures_mark_price(symbol="BTCUSDT")
    assert mark["nextFundingTime"] == state.core.exchange.prices("BTC-PERP").next_funding_ts
    account = await client.futures_account()
    balance = await client.futures_account_balance()
    positions = await client.futures_position_information(symbol="BTCUSDT")
    collateral = Decimal(state.core.exchange.accounts["alice"].collateral) / 10**8
    assert Decimal(account["totalWalletBalance"]) == collateral == Decimal(balance[0]["balance"])
    assert [(p["positionAmt"], p["entryPrice"]) for p in positions] == [("-0.2", "60000")]
    trades = await client.futures_account_trades(symbol="BTCUSDT")
    assert [(t["qty"], t["maker"]) for t in trades] == [("0.2", True)]
    income = await client.futures_income_history(incomeType="COMMISSION")
    assert [i["income"] for i in income] == ["-2.4"]
    canceled = await client.futures_cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert canceled["status"] == "CANCELED"
    with pytest.raises(BinanceAPIException) as err:
        await client.futures_cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert err.value.code == -2011
    with pytest.raises(BinanceAPIException) as err:
        await client.futures_create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            quantity="1000",
            price="59000",
            timeInForce="GTC",
        )
    assert err.value.code == -2019
    key = await client.futures_stream_get_listen_key()
    assert isinstance(key, str) and len(key) == 64
    await client.futures_stream_keepalive(key)
    await client.futures_stream_close(key)


async def test_socket_manager_depth_and_user_streams(sandbox: Sandbox, client: AsyncClient) -> None:
    state = sandbox.state
    bm = BinanceSocketManager(client)
    point_binance_at(client, sandbox.url, bm)
    assert_loopback({n: getattr(bm, n) for n in dir(bm) if n.endswith("_URL")})
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 10, 599000))
    # python-binance's read loop leaves only after its recv timeout (10 s): shorten it.
    depth_socket = bm.futures_depth_socket("BTCUSDT", depth="10")
    depth_socket.TIMEOUT = 0.2
    async with depth_socket as depth:
        state.apply(PlaceOrder("bob", "BTC-PERP", Side.SELL, 20, 601000))
        msg = await asyncio.wait_for(depth.recv(), TIMEOUT)
        data: dict[str, Any] = msg.get("data", msg)
        assert (data["b"], data["a"]) == ([["59900", "0.01"]], [["60100", "0.02"]])
    user_socket = bm.futures_user_socket()
    user_socket.TIMEOUT = 0.2
    async with user_socket as user:
        await asyncio.sleep(0.3)  # the socket connects on entry; give the server a moment
        state.apply(PlaceOrder("alice", "BTC-PERP", Side.SELL, 10, 600000, client_id="pb-ws"))
        event = await asyncio.wait_for(user.recv(), TIMEOUT)
        assert event["e"] == "ORDER_TRADE_UPDATE"
        assert (event["o"]["c"], event["o"]["X"]) == ("pb-ws", "NEW")

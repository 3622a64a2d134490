"""Unmodified ccxt.pro ``binanceusdm`` over the sandbox's Binance-style WebSocket streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.pro as ccxt_pro
import pytest

from sandbox.engine import CancelOrder, PlaceOrder
from sandbox.engine.commands import OrderType, Side
from sandbox.server.binance import BinanceCompat, compat_of

from .conftest import ALICE, BOB, BTC, Sandbox, ccxt_client

TIMEOUT = 10.0


@pytest.fixture
async def alice(sandbox: Sandbox) -> AsyncIterator[Any]:
    ex = ccxt_client(ccxt_pro, sandbox.url, ALICE)
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


def layer(sandbox: Sandbox) -> BinanceCompat:
    compat = compat_of(sandbox.state)
    assert compat is not None
    return compat


def engine_book(sandbox: Sandbox) -> tuple[list[list[Decimal]], list[list[Decimal]]]:
    book = sandbox.state.core.exchange.markets["BTC-PERP"].book
    inst = sandbox.state.core.instruments["BTC-PERP"]

    def side(rows: list[tuple[int, int]]) -> list[list[Decimal]]:
        return [[inst.price_to_decimal(p), inst.qty_to_decimal(q)] for p, q in rows]

    return side(book.bids.depth(1000)), side(book.asks.depth(1000))


def client_book(ob: Any) -> tuple[list[list[Decimal]], list[list[Decimal]]]:
    def side(rows: list[list[float]]) -> list[list[Decimal]]:
        return [[Decimal(str(p)), Decimal(str(q))] for p, q in rows]

    return side(ob["bids"]), side(ob["asks"])


async def synced_book(ex: Any, nonce: int) -> Any:
    """Watch until the client's book has applied update ``nonce``."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            ob = await ex.watch_order_book(BTC)
            if ob["nonce"] is not None and ob["nonce"] >= nonce:
                return ob


async def test_watch_order_book_equals_the_sandbox_book(sandbox: Sandbox, alice: Any) -> None:
    state = sandbox.state
    ids = layer(sandbox).streams.update_id
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.SELL, 500, 601000))
    await synced_book(alice, ids["BTC-PERP"])
    placed: list[int] = []
    checked = 0
    for i in range(25):
        # A mix of book changes: new levels, more size at a level, cancels and trades.
        if i % 5 == 4 and placed:
            state.apply(CancelOrder("bob", "BTC-PERP", placed.pop(0)))
        elif i % 7 == 6:
            state.apply(PlaceOrder("alice", "BTC-PERP", Side.BUY, 120, None, OrderType.MARKET))
        else:
            side = Side.BUY if i % 2 else Side.SELL
            price = 599000 - 10 * (i % 4) if side is Side.BUY else 601000 + 10 * (i % 3)
            events = state.apply(PlaceOrder("bob", "BTC-PERP", side, 10 + i, price))
            placed.append(events[0].order_id)  # type: ignore[attr-defined]
        ob = await synced_book(alice, ids["BTC-PERP"])
        assert ob["nonce"] == ids["BTC-PERP"]
        assert client_book(ob) == engine_book(sandbox)
        checked += 1
    assert checked == 25 and ids["BTC-PERP"] >= 25


async def test_a_sequence_gap_makes_ccxt_resync(sandbox: Sandbox, alice: Any) -> None:
    state = sandbox.state
    streams = layer(sandbox).streams
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 10, 599000))
    await synced_book(alice, streams.update_id["BTC-PERP"])
    streams.gap_next.add("BTC-PERP")  # the next depth event skips one update id
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 20, 598000))
    with pytest.raises(ccxt.ChecksumError):
        async with asyncio.timeout(TIMEOUT):
            while True:
                await alice.watch_order_book(BTC)
    # The next watch re-subscribes and re-snapshots; the book is whole again.
    task = asyncio.create_task(synced_book(alice, streams.update_id["BTC-PERP"] + 1))
    await asyncio.sleep(0.3)
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.SELL, 30, 602000))
    ob = await task
    assert client_book(ob) == engine_book(sandbox)


async def test_user_data_orders_trades_positions_balance(sandbox: Sandbox, alice: Any) -> None:
    state = sandbox.state
    orders = asyncio.create_task(alice.watch_orders(BTC))
    # ccxt authenticates (POST listenKey) and connects: wait until the stream is attached.
    streams = layer(sandbox).streams
    async with asyncio.timeout(TIMEOUT):
        while "alice" not in streams.private:
            await asyncio.sleep(0.02)
    created = await alice.create_order(BTC, "limit", "sell", 0.5, 60000, {"clientOrderId": "ws-1"})
    got = await asyncio.wait_for(orders, TIMEOUT)
    assert [(o["id"], o["status"], o["clientOrderId"]) for o in got] == [
        (created["id"], "open", "ws-1")
    ]
    trades = asyncio.create_task(alice.watch_my_trades(BTC))
    positions = asyncio.create_task(alice.watch_positions([BTC]))
    balance = asyncio.create_task(alice.watch_balance())
    await asyncio.sleep(0.3)
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 200, None, OrderType.MARKET))
    (trade,) = await asyncio.wait_for(trades, TIMEOUT)
    assert (trade["side"], trade["price"], trade["amount"], trade["takerOrMaker"]) == (
        "sell",
        60000,
        0.2,
        "maker",
    )
    assert trade["fee"]["cost"] == 2.4  # maker 0.02% of 12000
    pos = await asyncio.wait_for(positions, TIMEOUT)
    assert [(p["side"], p["contracts"], p["entryPrice"]) for p in pos] == [("short", 0.2, 60000)]
    bal = await asyncio.wait_for(balance, TIMEOUT)
    collateral = state.core.exchange.accounts["alice"].collateral
    assert Decimal(str(bal["USDT"]["total"])) == Decimal(collateral) / 10**8
    bob = ccxt_client(ccxt_pro, sandbox.url, BOB)
    try:  # another account's stream never sees Alice's orders
        await bob.load_markets()
        bob_orders = asyncio.create_task(bob.watch_orders(BTC))
        async with asyncio.timeout(TIMEOUT):
            while "bob" not in streams.private:
                await asyncio.sleep(0.02)
        alice_next = asyncio.create_task(alice.watch_orders(BTC))
        await asyncio.sleep(0.2)
        await alice.cancel_order(created["id"], BTC)
        (canceled,) = [o for o in await asyncio.wait_for(alice_next, TIMEOUT)]
        assert canceled["status"] == "canceled"
        assert not bob_orders.done()
        bob_orders.cancel()
    finally:
        await bob.close()

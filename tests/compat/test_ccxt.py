"""Unmodified ccxt (async ``binanceusdm``) against a sandbox on a free loopback port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import pytest

from sandbox.engine import PlaceOrder
from sandbox.engine.commands import Side
from sandbox.server.binance import compat_of

from .conftest import ALICE, BOB, BTC, Sandbox, assert_loopback, ccxt_client


@pytest.fixture
async def alice(sandbox: Sandbox) -> AsyncIterator[Any]:
    ex = ccxt_client(ccxt_async, sandbox.url, ALICE)
    try:
        yield ex
    finally:
        await ex.close()


@pytest.fixture
async def bob(sandbox: Sandbox) -> AsyncIterator[Any]:
    ex = ccxt_client(ccxt_async, sandbox.url, BOB)
    try:
        yield ex
    finally:
        await ex.close()


def test_the_guard_refuses_a_real_venue() -> None:
    ex = ccxt.binanceusdm()
    with pytest.raises(RuntimeError, match="refusing to run"):
        assert_loopback(ex.urls["api"])
    ex = ccxt_client(ccxt, "http://127.0.0.1:1", ALICE)
    assert_loopback(ex.urls["api"])  # every API and stream URL is now on loopback
    assert_loopback(ex.urls["test"])
    ex.urls["api"]["fapiPrivateV3"] = "https://fapi.binance.com/fapi/v3"
    with pytest.raises(RuntimeError, match="fapiPrivateV3"):
        assert_loopback(ex.urls["api"], "urls['api']")


async def test_the_socket_guard_refuses_other_hosts() -> None:
    raw = ccxt_async.binanceusdm({"options": {"fetchCurrencies": False}})  # real URLs
    try:
        with pytest.raises(RuntimeError, match=r"refusing to resolve 'fapi\.binance\.com'"):
            await raw.fetch_time()
    finally:
        await raw.close()
    with pytest.raises(RuntimeError, match="refusing to connect"), socket.socket() as sock:
        sock.connect(("93.184.216.34", 443))
    with pytest.raises(RuntimeError, match="refusing to resolve"):
        socket.create_connection(("93.184.216.34", 443), timeout=1)


async def test_markets_ticker_book_and_funding(sandbox: Sandbox, alice: Any, bob: Any) -> None:
    state = sandbox.state
    markets = await alice.load_markets()
    assert sorted(markets) == ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
    btc = markets[BTC]
    assert (btc["swap"], btc["linear"], btc["settle"], btc["id"]) == (True, True, "USDT", "BTCUSDT")
    assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.1, 0.001)
    assert btc["limits"]["cost"]["min"] == 100
    await alice.create_order(BTC, "limit", "sell", 0.5, 60000)
    await bob.create_order(BTC, "market", "buy", 0.2)
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 300, 599000))
    ticker = await alice.fetch_ticker(BTC)
    assert (ticker["last"], ticker["baseVolume"], ticker["quoteVolume"]) == (60000, 0.2, 12000)
    book = await alice.fetch_order_book(BTC, 5)
    assert book["asks"] == [[60000.0, 0.3]] and book["bids"] == [[59900.0, 0.3]]
    compat = compat_of(state)
    assert compat is not None
    assert book["nonce"] == compat.streams.update_id["BTC-PERP"]
    funding = await alice.fetch_funding_rate(BTC)
    prices = state.core.exchange.prices("BTC-PERP")
    assert funding["fundingTimestamp"] == prices.next_funding_ts
    assert (
        Decimal(funding["info"]["lastFundingRate"])
        == Decimal(prices.predicted_funding_rate) / 10**8
    )
    assert Decimal(funding["info"]["markPrice"]) == Decimal(prices.mark) / 10
    trades = await alice.fetch_trades(BTC)
    assert [(t["side"], t["price"], t["amount"]) for t in trades] == [("buy", 60000, 0.2)]
    assert await alice.fetch_time() > 0


async def test_orders_balance_positions_leverage(sandbox: Sandbox, alice: Any, bob: Any) -> None:
    state = sandbox.state
    await alice.load_markets()
    await bob.load_markets()
    assert (await alice.set_leverage(10, BTC))["leverage"] == 10
    assert state.core.exchange.accounts["alice"].positions["BTC-PERP"].leverage == 10
    resting = await alice.create_order(BTC, "limit", "sell", 1, 60000, {"clientOrderId": "ask-1"})
    assert (resting["status"], resting["clientOrderId"]) == ("open", "ask-1")
    assert (await alice.fetch_order(resting["id"], BTC))["clientOrderId"] == "ask-1"
    by_cid = await alice.fetch_order(None, BTC, {"origClientOrderId": "ask-1"})
    assert by_cid["id"] == resting["id"]
    post = await alice.create_order(BTC, "limit", "sell", 0.5, 61000, {"postOnly": True})
    assert post["postOnly"] is True
    assert len(await alice.fetch_open_orders(BTC)) == 2
    canceled = await alice.cancel_order(post["id"], BTC)
    assert canceled["status"] == "canceled"

    filled = await bob.create_order(BTC, "market", "buy", 0.4, None, {"clientOrderId": "bob-mkt"})
    assert (filled["status"], filled["filled"], filled["average"], filled["cost"]) == (
        "closed",
        0.4,
        60000,
        24000,
    )
    assert filled["clientOrderId"] == "bob-mkt"
    partial = await alice.fetch_order(resting["id"], BTC)
    assert (partial["status"], partial["filled"], partial["remaining"]) == ("open", 0.4, 0.6)

    positions = await bob.fetch_positions([BTC])
    assert len(positions) == 1
    pos = positions[0]
    assert (pos["side"], pos["contracts"], pos["entryPrice"]) == ("long", 0.4, 60000)
    view = state.core.exchange.account_view("bob")
    assert Decimal(pos["info"]["unRealizedProfit"]) == Decimal(view.unrealized_pnl) / 10**8
    balance = await bob.fetch_balance()
    # 100000 - taker fee 0.05% of 24000.
    assert Decimal(balance["info"]["totalWalletBalance"]) == Decimal("99988")
    assert balance["USDT"]["total"] == 99988 + float(view.unrealized_pnl) / 10**8

    await alice.create_order(BTC, "limit", "buy", 0.4, 59900)
    closing = await bob.create_order(BTC, "market", "sell", 0.4, None, {"reduceOnly": True})
    assert (closing["reduceOnly"], closing["status"]) == (True, "closed")
    assert await bob.fetch_positions([BTC]) == []


async def test_errors_map_to_ccxt_exceptions(sandbox: Sandbox, alice: Any, bob: Any) -> None:
    await alice.load_markets()
    await alice.create_order(BTC, "limit", "sell", 0.5, 60000)
    with pytest.raises(ccxt.InsufficientFunds):
        await alice.create_order(BTC, "limit", "sell", 1000, 60000)
    with pytest.raises(ccxt.OrderNotFound):
        await alice.fetch_order("424242", BTC)
    with pytest.raises(ccxt.InvalidOrder):
        await alice.create_order(BTC, "limit", "buy", 0.01, 60000, {"postOnly": True})
    with pytest.raises(ccxt.InvalidOrder):
        await alice.create_order(BTC, "market", "buy", 121)  # MARKET_LOT_SIZE
    with pytest.raises(ccxt.InvalidOrder):  # -2022
        await alice.create_order(BTC, "limit", "sell", 1, 61000, {"reduceOnly": True})
    with pytest.raises(ccxt.MarginModeAlreadySet):
        await alice.set_margin_mode("cross", BTC)
    wrong = ccxt_client(ccxt_async, sandbox.url, (ALICE[0], "not-the-secret"))
    try:
        with pytest.raises(ccxt.AuthenticationError):
            await wrong.fetch_balance()
    finally:
        await wrong.close()
    # Nothing above changed Alice's one open order.
    assert len(sandbox.state.core.exchange.open_orders("alice")) == 1


async def test_a_liquidation_shows_in_positions_and_balance(
    sandbox: Sandbox, alice: Any, bob: Any
) -> None:
    state = sandbox.state
    await bob.load_markets()
    await bob.set_leverage(100, BTC)
    # Bob goes 10 BTC long at 60000 on 100,000 USDT; liquidity below for the unwind.
    await alice.create_order(BTC, "limit", "sell", 10, 60000)
    await bob.create_order(BTC, "market", "buy", 10)
    await alice.create_order(BTC, "limit", "buy", 10, 57000)
    before = await bob.fetch_balance()
    (pos,) = await bob.fetch_positions([BTC])
    assert pos["contracts"] == 10
    liq_price = Decimal(pos["info"]["liquidationPrice"])
    assert Decimal("50000") < liq_price < Decimal("51000")
    # The index (hence the mark) just below the liquidation price: the engine closes part of
    # the position into the book (Alice's bid at 57000).
    target = str((liq_price - 50).quantize(Decimal("0.1")))
    for source in ("spot-a", "spot-b", "spot-c"):
        state.set_index_price("BTC-PERP", source, target)
    state.advance(60_000)
    kinds = [r["kind"] for r in state.core.records.liquidations("bob", 100)]
    assert "started" in kinds and "step" in kinds
    after = await bob.fetch_balance()
    assert after["USDT"]["total"] < before["USDT"]["total"]
    view = state.core.exchange.account_view("bob")
    assert Decimal(after["info"]["totalWalletBalance"]) == Decimal(view.collateral) / 10**8
    remaining = await bob.fetch_positions([BTC])
    size = state.core.exchange.accounts["bob"].positions["BTC-PERP"].size
    assert 0 < size < 10_000  # lots: part of the 10 BTC was closed
    assert [p["contracts"] for p in remaining] == ([size / 1000] if size else [])
    fills = await bob.fetch_my_trades(BTC)
    closing = [t for t in fills if t["side"] == "sell"]
    assert sum(t["amount"] for t in closing) == 10 - size / 1000
    assert {t["price"] for t in closing} == {57000}
    liq_order = await bob.fetch_order(closing[0]["order"], BTC)
    assert liq_order["clientOrderId"].startswith("autoclose-")
    assert liq_order["info"]["type"] == "LIQUIDATION"


async def test_history_config_and_edits(sandbox: Sandbox, alice: Any, bob: Any) -> None:
    state = sandbox.state
    await alice.load_markets()
    await bob.load_markets()
    ask = await alice.create_order(BTC, "limit", "sell", 1, 60000)
    await bob.create_order(BTC, "market", "buy", 0.25)
    edited = await alice.edit_order(ask["id"], BTC, "limit", "sell", 0.5, 60100)
    assert (edited["id"], edited["price"], edited["amount"], edited["filled"]) == (
        ask["id"],
        60100,
        0.5,
        0.25,
    )
    assert state.core.exchange.markets["BTC-PERP"].book.asks.depth(5) == [(601000, 250)]
    mine = await alice.fetch_my_trades(BTC)
    assert [(t["side"], t["amount"], t["takerOrMaker"]) for t in mine] == [("sell", 0.25, "maker")]
    assert (await alice.fetch_open_interest(BTC))["openInterestAmount"] == 0.25
    leverage = await alice.fetch_leverage(BTC)
    assert (leverage["marginMode"], leverage["longLeverage"]) == ("cross", 20)
    assert (await alice.fetch_margin_mode(BTC))["marginMode"] == "cross"
    assert (await alice.fetch_position_mode(BTC))["hedged"] is False
    fee = await alice.fetch_trading_fee(BTC)
    assert (fee["maker"], fee["taker"]) == (0.0002, 0.0005)
    tiers = await alice.fetch_leverage_tiers([BTC])
    assert tiers[BTC][0]["maxLeverage"] == 125
    candles = await alice.fetch_ohlcv(BTC, "1m")
    assert [c[1:] for c in candles] == [[60000, 60000, 60000, 60000, 0.25]]
    state.advance(8 * 3600 * 1000)  # one funding settlement
    rates = await alice.fetch_funding_rate_history(BTC)
    history = await alice.fetch_funding_history(BTC)
    assert len(rates) == 1 and len(history) == 1
    paid = state.core.records.funding_payments("alice", "BTC-PERP", 1)[0]
    assert Decimal(history[0]["info"]["income"]) == -Decimal(paid["amount"])
    assert Decimal(rates[0]["info"]["fundingRate"]) == Decimal(paid["rate"])
    await alice.cancel_all_orders(BTC)
    assert state.core.exchange.open_orders("alice") == []

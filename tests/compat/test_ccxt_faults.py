"""A fault plan aimed at /fapi: an unmodified ccxt bot sees Binance-shaped 503s (nothing
applied) and "execution status unknown" timeouts (applied), and can find the order after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import httpx
import pytest

from sandbox.engine import PlaceOrder
from sandbox.engine.commands import Side
from tests.server.conftest import ADMIN

from .conftest import ALICE, BTC, Sandbox, ccxt_client


@pytest.fixture
async def alice(sandbox: Sandbox) -> AsyncIterator[Any]:
    ex = ccxt_client(ccxt_async, sandbox.url, ALICE)
    try:
        yield ex
    finally:
        await ex.close()


async def load_plan(sandbox: Sandbox, faults: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        r = await http.post(
            "/v1/admin/fault-plan",
            json={"faults": faults, "seed": 7},
            headers={"X-PB-ADMIN-TOKEN": ADMIN},
        )
        assert r.status_code == 200, r.text


def open_orders(sandbox: Sandbox) -> list[Any]:
    return list(sandbox.state.core.exchange.open_orders("alice"))


async def test_injected_503_and_dropped_response_on_fapi(sandbox: Sandbox, alice: Any) -> None:
    sandbox.state.apply(PlaceOrder("bob", "BTC-PERP", Side.SELL, 1_000, 610_000))  # liquidity
    await alice.load_markets()
    await load_plan(
        sandbox,
        [{"kind": "http_error", "status": 503, "route": "/fapi/v1/order", "methods": ["POST"]}],
    )
    with pytest.raises(ccxt.OperationFailed) as refused:  # ccxt's class for -1000 / -1001
        await alice.create_order(BTC, "limit", "buy", 0.01, 59_000, {"clientOrderId": "a-1"})
    assert not isinstance(refused.value, ccxt.RequestTimeout)  # a clear failure, not unknown
    assert open_orders(sandbox) == []  # a 503 is refused before anything happens
    assert (await alice.fetch_ticker(BTC))["symbol"] == BTC  # other routes are untouched

    await load_plan(
        sandbox,
        [{"kind": "drop_response", "hold_ms": 10, "route": "/fapi/v1/order", "methods": ["POST"]}],
    )
    with pytest.raises(ccxt.RequestTimeout):
        await alice.create_order(BTC, "limit", "buy", 0.01, 59_000, {"clientOrderId": "a-2"})
    await load_plan(sandbox, [])
    # It was applied: a bot that looks it up by client id finds it instead of placing again.
    found = await alice.fetch_order(None, BTC, {"origClientOrderId": "a-2"})
    assert (found["clientOrderId"], found["status"], found["amount"]) == ("a-2", "open", 0.01)
    assert len(open_orders(sandbox)) == 1

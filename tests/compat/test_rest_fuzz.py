"""Malformed parameters on every /fapi route get a Binance-style error, never a 500.

Each route of the compat layer is called with a well-formed base query (correctly signed where
the route needs it) in which one parameter at a time is replaced by a malformed value: empty,
not a number, negative, huge, NaN/Infinity, too many decimals, unknown enum names, control
characters and non-ASCII text. The answer must be a 2xx or a 4xx whose body is Binance's
``{"code": <negative int>, "msg": ...}``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from sandbox.server.app import create_app
from sandbox.server.binance import BinanceCompat
from sandbox.server.state import SandboxState
from tests.server.conftest import FakeWall, make_state

from .conftest import ALICE

BASE: dict[str, str] = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "quantity": "0.010",
    "price": "59000",
    "timeInForce": "GTC",
    "orderId": "1",
    "origClientOrderId": "c1",
    "newClientOrderId": "n1",
    "leverage": "5",
    "limit": "10",
    "interval": "1m",
    "startTime": "1700000000000",
    "endTime": "1700000600000",
    "fromId": "1",
    "marginType": "CROSSED",
    "dualSidePosition": "false",
    "reduceOnly": "false",
    "closePosition": "false",
    "positionSide": "BOTH",
    "newOrderRespType": "RESULT",
    "incomeType": "REALIZED_PNL",
}
MALFORMED = [
    "",
    "abc",
    "-1",
    "0",
    "1e309",
    "NaN",
    "Infinity",
    "99999999999999999999999999999999",
    "0.00000000000000000001",
    "1.5.5",
    "%00\x01",
    "é✓",
]
LIMITS = {k: 10**9 for k in ("weight_limit", "key_weight_limit", "order_limit", "order_limit_long")}


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, FakeWall, BinanceCompat]]:
    wall = FakeWall()
    state: SandboxState = make_state(wall, limits=LIMITS)
    app = create_app(state, background=False)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        yield http, wall, app.state.binance


def _query(params: dict[str, Any], signed: bool) -> str:
    query = urlencode(params)
    if not signed:
        return query
    sig = hmac.new(ALICE[1].encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={sig}"


async def test_no_malformed_parameter_gets_a_server_error(
    client: tuple[httpx.AsyncClient, FakeWall, BinanceCompat],
) -> None:
    http, wall, compat = client
    specs = compat.rest.specs()
    assert len(specs) > 30
    calls = 0
    for spec in specs:
        for name in BASE:
            for bad in MALFORMED:
                params: dict[str, Any] = {**BASE, name: bad}
                if spec.path.endswith("listenKey"):
                    params = {name: bad}
                signed = spec.auth == "signed"
                if signed:
                    params["timestamp"] = wall.now
                headers = {"X-MBX-APIKEY": ALICE[0]}
                query = _query(params, signed)
                if spec.method in ("POST", "PUT"):
                    headers["Content-Type"] = "application/x-www-form-urlencoded"
                    r = await http.request(spec.method, spec.path, content=query, headers=headers)
                else:
                    r = await http.request(spec.method, f"{spec.path}?{query}", headers=headers)
                calls += 1
                where = f"{spec.method} {spec.path} {name}={bad!r}: {r.status_code} {r.text[:200]}"
                assert r.status_code < 500, where
                if r.status_code >= 400:
                    body = r.json()
                    assert isinstance(body.get("code"), int) and body["code"] < 0, where
                    assert isinstance(body.get("msg"), str), where
    assert calls == len(specs) * len(BASE) * len(MALFORMED)

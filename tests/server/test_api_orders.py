"""Private trading routes over HTTP: every order operation, its errors, and its numbers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.server.app import create_app
from sandbox.server.state import SandboxState

from .conftest import Api, FakeWall


async def test_place_limit_order_rests_and_is_listed(alice: Api) -> None:
    r = await alice.order(side="BUY", qty="0.010", price="59000.0", client_order_id="a-1")
    assert r.status_code == 200, r.text
    order = r.json()["order"]
    assert order["status"] == "NEW"
    assert (order["price"], order["qty"], order["remaining_qty"]) == ("59000", "0.01", "0.01")
    assert r.json()["fills"] == []
    listed = (await alice.get("/v1/orders")).json()
    assert [o["order_id"] for o in listed] == [order["order_id"]]
    by_id = (await alice.get(f"/v1/orders/{order['order_id']}")).json()
    by_cid = (await alice.get("/v1/orders/by-client-id/a-1")).json()
    assert by_id == by_cid == order
    # Order margin: 59000 * 0.01 / 20x leverage = 29.5 USDT reserved.
    account = (await alice.get("/v1/account")).json()
    assert account["order_margin"] == "29.5"
    assert account["available"] == "99970.5"


async def test_taker_fills_are_in_the_response_with_fees(alice: Api, bob: Api) -> None:
    await alice.order(side="SELL", qty="0.5", price="60000", client_order_id="ask")
    r = await bob.order(side="BUY", qty="0.2", type="MARKET", client_order_id="lift")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["order"]["status"] == "FILLED"
    [fill] = body["fills"]
    # 0.2 * 60000 = 12000 notional; taker fee 0.05% = 6 USDT.
    assert (fill["price"], fill["qty"], fill["fee"], fill["liquidity"]) == (
        "60000",
        "0.2",
        "6",
        "TAKER",
    )
    assert fill["client_order_id"] == "lift"
    maker_fills = (await alice.get("/v1/fills")).json()
    assert maker_fills[0]["liquidity"] == "MAKER"
    assert maker_fills[0]["fee"] == "2.4"  # 0.02% of 12000
    assert maker_fills[0]["client_order_id"] == "ask"
    positions = (await bob.get("/v1/positions")).json()
    assert positions[0]["size"] == "0.2" and positions[0]["side"] == "LONG"
    assert positions[0]["entry_price"] == "60000"
    # 100,000 USDT behind 0.2 BTC long: no price liquidates it.
    assert positions[0]["liquidation_price"] is None
    alice_pos = (await alice.get("/v1/positions?market=BTC-PERP")).json()
    assert alice_pos[0]["size"] == "-0.2"
    # The short is liquidated when the mark is far enough above entry (about +100000/0.2).
    assert 500_000 < float(alice_pos[0]["liquidation_price"]) < 560_000


async def test_amend_keeps_or_loses_priority(alice: Api) -> None:
    first = (await alice.order(side="BUY", qty="0.5", price="59000")).json()["order"]
    oid = first["order_id"]
    r = await alice.patch(f"/v1/orders/{oid}", {"qty": "0.3"})
    assert r.status_code == 200, r.text
    assert r.json()["qty"] == "0.3"
    r = await alice.patch(f"/v1/orders/{oid}", {"price": "59100"})
    assert r.json()["price"] == "59100"
    r = await alice.patch(f"/v1/orders/{oid}", {"price": "59100"})
    assert (r.status_code, r.json()["code"]) == (400, "AMEND_NO_CHANGE")
    r = await alice.patch(f"/v1/orders/{oid}", {})
    assert r.status_code == 422


async def test_cancel_by_id_client_id_and_all(alice: Api) -> None:
    a = (await alice.order(side="BUY", qty="0.1", price="59000", client_order_id="x")).json()
    await alice.order(side="BUY", qty="0.1", price="58000")
    await alice.order(market="ETH-PERP", side="BUY", qty="0.1", price="2900")
    r = await alice.delete("/v1/orders/by-client-id/x")
    assert r.status_code == 200 and r.json()["status"] == "CANCELED"
    r = await alice.delete(f"/v1/orders/{a['order']['order_id']}")
    assert (r.status_code, r.json()["code"]) == (400, "ORDER_NOT_OPEN")
    r = await alice.delete("/v1/orders?market=BTC-PERP")
    assert len(r.json()["canceled"]) == 1
    assert len((await alice.get("/v1/orders")).json()) == 1  # the ETH order remains
    r = await alice.delete("/v1/orders")
    assert len(r.json()["canceled"]) == 1
    history = (await alice.get("/v1/orders/history")).json()
    assert [o["status"] for o in history] == ["CANCELED"] * 3


async def test_duplicate_client_id_returns_the_existing_order(alice: Api) -> None:
    first = await alice.order(side="BUY", qty="0.1", price="59000", client_order_id="dup")
    again = await alice.order(side="BUY", qty="0.1", price="59000", client_order_id="dup")
    assert again.status_code == 409
    body = again.json()
    assert body["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    assert body["details"]["existing_order"]["order_id"] == first.json()["order"]["order_id"]
    assert body["details"]["existing_order"]["price"] == "59000"
    assert len((await alice.get("/v1/orders")).json()) == 1


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"side": "BUY", "qty": "0.0101", "price": "59000"}, 400, "INVALID_QUANTITY"),
        ({"side": "BUY", "qty": "0.01", "price": "59000.05"}, 400, "INVALID_PRICE"),
        ({"side": "BUY", "qty": "0.01", "price": "NaN"}, 422, "VALIDATION_ERROR"),
        ({"side": "BUY", "qty": "1e3", "price": "59000"}, 422, "VALIDATION_ERROR"),
        ({"side": "BUY", "qty": 0.01, "price": "59000"}, 422, "VALIDATION_ERROR"),
        ({"side": "HOLD", "qty": "0.01", "price": "59000"}, 422, "VALIDATION_ERROR"),
        ({"side": "BUY", "qty": "0.01", "price": "59000", "x": 1}, 422, "VALIDATION_ERROR"),
        ({"side": "BUY", "qty": "0.01"}, 400, "INVALID_ORDER"),
        ({"side": "BUY", "qty": "0.001", "price": "59000"}, 400, "NOTIONAL_BELOW_MIN"),
        ({"side": "BUY", "qty": "0.01", "price": "10000"}, 400, "PRICE_OUT_OF_BAND"),
        ({"side": "BUY", "qty": "100", "price": "59000"}, 400, "INSUFFICIENT_MARGIN"),
        (
            {"side": "SELL", "qty": "0.01", "price": "61000", "reduce_only": True},
            400,
            "REDUCE_ONLY_WOULD_INCREASE",
        ),
        ({"market": "DOGE-PERP", "side": "BUY", "qty": "1", "price": "1"}, 404, "UNKNOWN_MARKET"),
        (
            {"side": "BUY", "qty": "0.01", "price": "59000", "client_order_id": "bad id!"},
            422,
            "VALIDATION_ERROR",
        ),
    ],
)
async def test_bad_orders_are_refused_with_a_code_and_change_nothing(
    alice: Api, state: SandboxState, fields: dict[str, object], status: int, code: str
) -> None:
    before = (await alice.get("/v1/account")).json()
    seq_before = state.core.exchange.markets["BTC-PERP"].seq
    r = await alice.order(**fields)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.json()["message"]
    assert (await alice.get("/v1/account")).json() == before
    assert (await alice.get("/v1/orders")).json() == []
    assert state.core.exchange.markets["BTC-PERP"].seq == seq_before


async def test_malformed_bodies(alice: Api, http: object) -> None:
    for raw in (b"{", b"[]", b"null", b'"x"', b"\xff\xfe"):
        headers = alice.headers("POST", "/v1/orders", raw)
        r = await alice.http.post("/v1/orders", content=raw, headers=headers)
        assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_ERROR"), raw


async def test_huge_body_is_413(alice: Api) -> None:
    raw = b'{"market": "' + b"A" * 70_000 + b'"}'
    r = await alice.http.post(
        "/v1/orders", content=raw, headers=alice.headers("POST", "/v1/orders", raw)
    )
    assert (r.status_code, r.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")


async def test_leverage_get_and_set(alice: Api) -> None:
    levels = (await alice.get("/v1/leverage")).json()
    assert {x["market"] for x in levels} == {"BTC-PERP", "ETH-PERP", "SOL-PERP"}
    r = await alice.post("/v1/leverage/BTC-PERP", {"leverage": 5})
    assert r.json() == {"market": "BTC-PERP", "leverage": 5, "max_leverage": 125}
    r = await alice.post("/v1/leverage/BTC-PERP", {"leverage": 500})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_LEVERAGE")
    r = await alice.post("/v1/leverage/BTC-PERP", {"leverage": "5"})
    assert r.status_code == 422
    await alice.order(side="BUY", qty="0.1", price="59000")
    account = (await alice.get("/v1/account")).json()
    assert account["order_margin"] == "1180"  # 5900 / 5x


async def test_rejection_messages_quote_wire_units(alice: Api, bob: Api) -> None:
    await bob.order(side="SELL", qty="0.1", price="60000")
    r = await alice.order(side="BUY", qty="0.01", price="60000", tif="POST_ONLY")
    assert r.json()["message"] == "a post-only order at this price would take the resting 60000"
    assert r.json()["details"] == {"best_price": "60000"}
    r = await alice.order(side="BUY", qty="0.01", price="10000")
    body = r.json()
    assert body["details"] == {"mark": "60000", "min_price": "57000", "max_price": "63000"}
    assert body["message"].endswith("the mark 60000: [57000, 63000]")
    r = await alice.order(side="BUY", qty="100", price="59000")
    assert r.json()["message"].startswith("order needs 295000")
    assert r.json()["details"]["available"] == "100000"


async def test_client_ids_with_slashes_and_colons_are_reachable(alice: Api) -> None:
    r = await alice.order(side="BUY", qty="0.01", price="59000", client_order_id="grid/1:a")
    assert r.status_code == 200, r.text
    path = "/v1/orders/by-client-id/grid%2F1:a"
    got = await alice.get(path)
    assert (got.status_code, got.json()["client_order_id"]) == (200, "grid/1:a")
    assert "x-pb-used-weight-1m" in got.headers  # throttled like any other route
    assert (await alice.delete(path)).json()["status"] == "CANCELED"


async def test_order_entry_skips_the_framework_layers_but_not_ours(state: SandboxState) -> None:
    """POST /v1/orders enters at the sandbox's metrics middleware (SandboxApp); every other
    request still goes through the whole Starlette/FastAPI stack."""
    app = create_app(state, background=False)
    framework_calls: list[str] = []
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        api = Api(client, FakeWall(), "alice-key", "alice-secret-0123456789")
        assert (await api.order(side="BUY", qty="0.010", price="59000.0")).status_code == 200
        stack = app.middleware_stack  # built by the first order, which found its entry in it
        assert stack is not None

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            framework_calls.append(f"{scope['method']} {scope['path']}")
            await stack(scope, receive, send)

        app.middleware_stack = counting
        r = await api.order(side="BUY", qty="0.010", price="59000.0", client_order_id="x-1")
        assert r.status_code == 200, r.text
        bad = await api.order(side="BUY", qty="abc", price="59000.0")  # still the envelope
        assert bad.status_code == 422 and bad.json()["code"] == "VALIDATION_ERROR"
        assert (await api.get("/v1/orders")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert framework_calls == ["GET /v1/orders", "GET /metrics"]
    # ... and the monitor still counted both orders, by route and status
    for status in (200, 422):
        line = f'sandbox_http_requests_total{{method="POST",route="/v1/orders",status="{status}"}}'
        assert f"{line} {2.0 if status == 200 else 1.0}" in metrics

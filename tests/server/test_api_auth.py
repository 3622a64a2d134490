"""Authentication failures over HTTP, and account isolation on every private route."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute

from perpbot.signing import signed_headers
from sandbox.server.app import WEIGHTS, create_app
from sandbox.server.state import SandboxState

from .conftest import Api, FakeWall


def _private_routes(state: SandboxState) -> set[str]:
    app = create_app(state, background=False)
    out = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and (route.openapi_extra or {}).get("security") == [
            {"ApiKey": [], "Timestamp": [], "Signature": []}
        ]:
            for method in route.methods:
                out.add(f"{method} {route.path_format}")
    return out


async def test_each_auth_failure_has_its_code(alice: Api, wall: FakeWall) -> None:
    http = alice.http
    path = "/v1/account"

    async def code(headers: dict[str, str]) -> str:
        r = await http.get(path, headers=headers)
        assert r.status_code == 401, r.text
        return str(r.json()["code"])

    good = signed_headers("alice-key", "alice-secret-0123456789", "GET", path, b"", wall.now)
    assert await code({}) == "MISSING_API_KEY"
    assert await code({**good, "X-PB-APIKEY": "nobody"}) == "UNKNOWN_API_KEY"
    no_ts = {k: v for k, v in good.items() if k != "X-PB-TIMESTAMP"}
    assert await code(no_ts) == "MISSING_TIMESTAMP"
    assert await code({**good, "X-PB-TIMESTAMP": "soon"}) == "INVALID_TIMESTAMP"
    assert await code({**good, "X-PB-TIMESTAMP": str(wall.now - 60_000)}) == (
        "TIMESTAMP_OUTSIDE_WINDOW"
    )
    no_sig = {k: v for k, v in good.items() if k != "X-PB-SIGNATURE"}
    assert await code(no_sig) == "MISSING_SIGNATURE"
    assert await code({**good, "X-PB-SIGNATURE": "0" * 64}) == "INVALID_SIGNATURE"
    # Signed for another path, or with another secret: invalid.
    other = signed_headers(
        "alice-key", "alice-secret-0123456789", "GET", "/v1/fills", b"", wall.now
    )
    assert await code(other) == "INVALID_SIGNATURE"
    r = await http.get(path, headers=good)
    assert r.status_code == 200
    assert await code(good) == "REPLAYED_REQUEST"


async def test_signature_covers_the_query_and_body(alice: Api, wall: FakeWall) -> None:
    headers = alice.headers("GET", "/v1/orders?market=BTC-PERP", b"")
    r = await alice.http.get("/v1/orders?market=ETH-PERP", headers=headers)
    assert r.json()["code"] == "INVALID_SIGNATURE"
    body = b'{"market":"BTC-PERP","side":"BUY","qty":"0.01","price":"59000"}'
    headers = alice.headers("POST", "/v1/orders", body)
    tampered = body.replace(b"0.01", b"0.02")
    r = await alice.http.post("/v1/orders", content=tampered, headers=headers)
    assert r.json()["code"] == "INVALID_SIGNATURE"


async def test_every_private_route_requires_a_signature(
    state: SandboxState, http: httpx.AsyncClient
) -> None:
    routes = _private_routes(state)
    assert len(routes) == 17
    for route in routes:
        method, path = route.split(" ", 1)
        path = path.replace("{order_id}", "1").replace("{client_order_id}", "c1")
        path = path.replace("{market}", "BTC-PERP")
        r = await http.request(method, path)
        assert (r.status_code, r.json()["code"]) == (401, "MISSING_API_KEY"), route


async def test_every_throttled_route_has_a_weight(state: SandboxState) -> None:
    app = create_app(state, background=False)
    routes = {
        f"{method} {r.path_format}"
        for r in app.routes
        if isinstance(r, APIRoute) and r.path.startswith("/v1/") and "admin" not in r.path
        for method in r.methods
    }
    assert routes == set(WEIGHTS)


async def test_accounts_cannot_see_or_touch_each_other(alice: Api, bob: Api) -> None:
    """Every private route, from bob's side, against alice's order, fill and position."""
    ask = (
        await alice.order(side="SELL", qty="0.5", price="60000", client_order_id="secret")
    ).json()
    resting = ask["order"]["order_id"]
    await bob.order(side="BUY", qty="0.1", type="MARKET")
    # Bob has his own state; alice's order and client id are invisible to him.
    for path in (f"/v1/orders/{resting}", "/v1/orders/by-client-id/secret"):
        r = await bob.get(path)
        assert (r.status_code, r.json()["code"]) == (404, "UNKNOWN_ORDER"), path
        r = await bob.delete(path)
        assert (r.status_code, r.json()["code"]) == (404, "UNKNOWN_ORDER"), path
        r = await bob.patch(path, {"qty": "0.2"})
        assert (r.status_code, r.json()["code"]) == (404, "UNKNOWN_ORDER"), path
    assert (await bob.get("/v1/orders")).json() == []
    assert all(o["order_id"] != resting for o in (await bob.get("/v1/orders/history")).json())
    assert (await bob.delete("/v1/orders")).json() == {"canceled": []}
    bob_fills = (await bob.get("/v1/fills")).json()
    assert [f["liquidity"] for f in bob_fills] == ["TAKER"]
    assert (await bob.get("/v1/account")).json()["account"] == "bob"
    bob_positions = (await bob.get("/v1/positions")).json()
    assert [p["size"] for p in bob_positions] == ["0.1"]
    assert (await bob.get("/v1/funding-payments")).json() == []
    assert (await bob.get("/v1/liquidations")).json() == []
    # Bob's leverage change is his alone.
    await bob.post("/v1/leverage/BTC-PERP", {"leverage": 3})
    alice_lev = {x["market"]: x["leverage"] for x in (await alice.get("/v1/leverage")).json()}
    assert alice_lev["BTC-PERP"] == 20
    # Alice's order is untouched by all of the above.
    mine = (await alice.get(f"/v1/orders/{resting}")).json()
    assert (mine["status"], mine["remaining_qty"]) == ("PARTIALLY_FILLED", "0.4")


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_admin_needs_its_token(http: httpx.AsyncClient, token: str | None) -> None:
    headers = {} if token is None else {"X-PB-ADMIN-TOKEN": token}
    r = await http.post("/v1/admin/clock", json={"action": "pause"}, headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_ADMIN_TOKEN")


async def test_admin_is_off_without_a_token(wall: FakeWall) -> None:
    from .conftest import make_state

    state = make_state(wall, admin_token=None)
    app = create_app(state, background=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c:
        r = await c.post(
            "/v1/admin/clock", json={"action": "pause"}, headers={"X-PB-ADMIN-TOKEN": ""}
        )
        assert r.status_code == 404

"""Throttling over HTTP (429 -> 418 -> served again), and the admin API driving the sandbox."""

from __future__ import annotations

import httpx

from sandbox.server.state import SandboxState

from .conftest import Api, FakeWall, admin_headers


async def test_throttle_429_then_418_then_recovery(http: httpx.AsyncClient, wall: FakeWall) -> None:
    r = await http.post(
        "/v1/admin/limits", json={"weight_limit": 5, "strikes_to_ban": 2}, headers=admin_headers()
    )
    assert r.status_code == 200, r.text
    limits = {(x["type"], x["scope"]): x["limit"] for x in r.json()["rate_limits"]}
    assert limits[("REQUEST_WEIGHT", "IP")] == 5
    wall.now = wall.now - wall.now % 60_000 + 1_000  # 59 s left in the window
    for used in range(1, 6):
        r = await http.get("/v1/time")
        assert r.status_code == 200
        assert r.headers["x-pb-used-weight-1m"] == str(used)
    r = await http.get("/v1/time")
    assert (r.status_code, r.json()["code"]) == (429, "RATE_LIMITED")
    assert r.headers["retry-after"] == "59"
    # Hammering on while throttled: strikes, then a ban.
    for _ in range(2):
        r = await http.get("/v1/time")
    assert (r.status_code, r.json()["code"]) == (418, "BANNED")
    ban = int(r.headers["retry-after"])
    assert ban >= 1
    wall.now += ban * 1000 + 60_000
    r = await http.get("/v1/time")
    assert r.status_code == 200
    # Relaxing the limits live is an admin call too.
    r = await http.post("/v1/admin/limits", json={"weight_limit": 1000}, headers=admin_headers())
    assert r.status_code == 200


async def test_order_count_limit_is_per_key(alice: Api, bob: Api, http: httpx.AsyncClient) -> None:
    await http.post("/v1/admin/limits", json={"order_limit": 2}, headers=admin_headers())
    for _ in range(2):
        r = await alice.order(side="BUY", qty="0.01", price="59000")
        assert r.status_code == 200
        assert "x-pb-order-count-10s" in r.headers
    r = await alice.order(side="BUY", qty="0.01", price="59000")
    assert (r.status_code, r.json()["code"]) == (429, "RATE_LIMITED")
    assert r.json()["details"]["limit"] == "ORDER_COUNT_10S"
    # Another key is not affected (the IP weight budget is large).
    assert (await bob.order(side="BUY", qty="0.01", price="59000")).status_code == 200


async def test_admin_creates_accounts_and_deposits(http: httpx.AsyncClient, wall: FakeWall) -> None:
    body = {
        "account": "carol",
        "api_key": "carol-key",
        "api_secret": "carol-secret-0123456789",
        "deposit": "2500.5",
    }
    r = await http.post("/v1/admin/accounts", json=body, headers=admin_headers())
    assert r.json() == {"account": "carol", "api_key": "carol-key", "collateral": "2500.5"}
    r = await http.post("/v1/admin/accounts", json=body, headers=admin_headers())
    assert (r.status_code, r.json()["code"]) == (409, "DUPLICATE_API_KEY")
    r = await http.post(
        "/v1/admin/accounts/carol/deposit", json={"amount": "0.5"}, headers=admin_headers()
    )
    assert r.json()["details"]["collateral"] == "2501"
    carol = Api(http, wall, "carol-key", "carol-secret-0123456789")
    assert (await carol.get("/v1/account")).json()["collateral"] == "2501"
    r = await http.post(
        "/v1/admin/accounts/carol/deposit", json={"amount": "1e5"}, headers=admin_headers()
    )
    assert r.status_code == 422
    r = await http.post(
        "/v1/admin/accounts",
        json={**body, "api_key": "other-key", "account": "insurance:BTC-PERP"},
        headers=admin_headers(),
    )
    assert r.status_code == 422  # not a valid account name


async def test_clock_control(http: httpx.AsyncClient, state: SandboxState) -> None:
    t0 = (await http.get("/v1/time")).json()
    assert t0["paused"] is True
    r = await http.post(
        "/v1/admin/clock", json={"action": "advance", "ms": 90_000}, headers=admin_headers()
    )
    assert r.json()["server_ts"] == t0["server_ts"] + 90_000
    r = await http.post(
        "/v1/admin/clock", json={"action": "set_speed", "speed": "10"}, headers=admin_headers()
    )
    assert (r.json()["speed"], r.json()["paused"]) == ("10", False)
    r = await http.post("/v1/admin/clock", json={"action": "pause"}, headers=admin_headers())
    assert r.json()["paused"] is True
    r = await http.post("/v1/admin/clock", json={"action": "resume"}, headers=admin_headers())
    assert r.json()["speed"] == "10"
    r = await http.post("/v1/admin/clock", json={"action": "rewind"}, headers=admin_headers())
    assert r.status_code == 422
    r = await http.post(
        "/v1/admin/clock", json={"action": "advance", "ms": -5}, headers=admin_headers()
    )
    assert r.status_code == 422


async def test_funding_is_paid_after_advancing_past_settlement(
    alice: Api, bob: Api, http: httpx.AsyncClient, state: SandboxState
) -> None:
    await alice.order(side="SELL", qty="1", price="60000")
    await bob.order(side="BUY", qty="1", type="MARKET")
    funding = (await http.get("/v1/markets/BTC-PERP/funding")).json()
    until = funding["next_funding_ts"] - state.core.now_ms() + 1_000
    r = await http.post(
        "/v1/admin/clock", json={"action": "advance", "ms": until}, headers=admin_headers()
    )
    assert r.status_code == 200
    bob_paid = (await bob.get("/v1/funding-payments")).json()
    alice_paid = (await alice.get("/v1/funding-payments")).json()
    assert len(bob_paid) == len(alice_paid) == 1
    # Zero-sum between the two (any rounding residue goes to the insurance fund).
    assert bob_paid[0]["size"] == "1" and alice_paid[0]["size"] == "-1"
    assert abs(float(bob_paid[0]["amount"]) + float(alice_paid[0]["amount"])) < 1e-8
    history = (await http.get("/v1/markets/BTC-PERP/funding/history")).json()
    assert history[0]["rate"] == bob_paid[0]["rate"]


async def test_index_price_moves_mark_and_liquidates(
    alice: Api, bob: Api, http: httpx.AsyncClient
) -> None:
    await bob.post("/v1/leverage/BTC-PERP", {"leverage": 100})
    await http.post("/v1/admin/accounts/bob/deposit", json={"amount": "0"}, headers=admin_headers())
    # Bob goes 10 BTC long at 60000 with 100,000 USDT: liquidated when the mark falls below
    # about 50,300 (equity 100,000 - 10 x drop meets the maintenance margin).
    await alice.order(side="SELL", qty="10", price="60000")
    assert (await bob.order(side="BUY", qty="10", type="MARKET")).status_code == 200
    await alice.order(side="BUY", qty="10", price="57000")  # liquidity for the unwind
    for source in ("spot-a", "spot-b", "spot-c"):
        r = await http.post(
            "/v1/admin/index-price",
            json={"market": "BTC-PERP", "source": source, "price": "49000"},
            headers=admin_headers(),
        )
        assert r.status_code == 200, r.text
    await http.post(
        "/v1/admin/clock", json={"action": "advance", "ms": 60_000}, headers=admin_headers()
    )
    kinds = [x["kind"] for x in (await bob.get("/v1/liquidations")).json()]
    assert "started" in kinds and "step" in kinds
    ticker = (await http.get("/v1/markets/BTC-PERP/ticker")).json()
    assert float(ticker["index"]) == 49000
    assert float(ticker["mark"]) < 60000


async def test_injected_faults(alice: Api, http: httpx.AsyncClient, state: SandboxState) -> None:
    r = await http.post(
        "/v1/admin/faults", json={"error_rate": "1", "duration_ms": 60_000}, headers=admin_headers()
    )
    assert r.status_code == 200
    r = await alice.order(side="BUY", qty="0.01", price="59000")
    assert (r.status_code, r.json()["code"]) == (503, "FAULT_INJECTED")
    assert (await alice.get("/v1/orders")).status_code == 503
    r = await http.post(
        "/v1/admin/faults", json={"error_rate": "0.6", "drop_rate": "0.6"}, headers=admin_headers()
    )
    assert r.status_code == 422
    await http.post("/v1/admin/faults", json={"duration_ms": 0}, headers=admin_headers())
    assert (await alice.get("/v1/orders")).status_code == 200


async def test_order_throttled_key_can_still_cancel_over_http(
    alice: Api, http: httpx.AsyncClient
) -> None:
    """Over the wire: once the key's order count is spent, new orders get 429 but reading and
    cancelling the resting ones still work (and do not strike)."""
    r = await http.post("/v1/admin/limits", json={"order_limit": 2}, headers=admin_headers())
    assert r.status_code == 200, r.text
    ids = []
    for i in range(2):
        r = await alice.order(side="BUY", qty="0.01", price=str(59000 + i))
        assert r.status_code == 200, r.text
        ids.append(r.json()["order"]["order_id"])
    r = await alice.order(side="BUY", qty="0.01", price="59100")
    assert r.status_code == 429 and r.json()["details"]["limit"] == "ORDER_COUNT_10S"
    for _ in range(6):  # more than strikes_to_ban: reads never strike
        assert (await alice.get("/v1/orders")).status_code == 200
    for order_id in ids:
        r = await alice.delete(f"/v1/orders/{order_id}")
        assert r.status_code == 200, r.text
    r = await alice.order(side="BUY", qty="0.01", price="59100")
    assert r.status_code == 429  # still throttled for orders, not banned

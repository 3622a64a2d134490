"""Retries against the sandbox with scripted failures: a retry never places a second order,
waits are full-jitter and at least Retry-After, and only safe requests are retried."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction

import httpx
import orjson
import pytest
from fastapi import FastAPI

from perpbot import AsyncClient, RetryPolicy
from perpbot.errors import (
    AuthError,
    Banned,
    InsufficientMargin,
    RateLimited,
    RequestTimeout,
    ServerError,
    TransportError,
)
from perpbot.retry import is_ambiguous, is_retryable, was_not_sent
from sandbox.server.state import SandboxState

from .conftest import ALICE, BOB, FakeTime, asgi

Connect = Callable[..., AsyncClient]


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = orjson.dumps({"code": code, "message": "scripted", "details": {}})
    return httpx.Response(status, content=body, headers=headers)


class Scripted(httpx.AsyncBaseTransport):
    """Forwards to the sandbox app, except that scripted faults hit the matching requests in
    order: ``fail("POST /v1/orders", "commit_then_timeout")``. ``log`` keeps every request."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = asgi(app)
        self.script: list[tuple[str, str]] = []
        self.log: list[str] = []
        self.bodies: list[bytes] = []

    def fail(self, route: str, action: str, times: int = 1) -> Scripted:
        self.script += [(route, action)] * times
        return self

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = f"{request.method} {request.url.path}"
        self.log.append(route)
        self.bodies.append(request.content)
        for i, (prefix, action) in enumerate(self.script):
            if route.startswith(prefix):
                del self.script[i]
                return await self._fault(action, request)
        return await self.inner.handle_async_request(request)

    async def _fault(self, action: str, request: httpx.Request) -> httpx.Response:
        if action == "connect_timeout":  # nothing was sent
            raise httpx.ConnectTimeout("scripted", request=request)
        if action == "connect_error":
            raise httpx.ConnectError("scripted", request=request)
        if action == "503":
            return _error(503, "FAULT_INJECTED")
        if action == "429":
            return _error(429, "RATE_LIMITED", {"Retry-After": "2"})
        if action == "429_long":
            return _error(429, "RATE_LIMITED", {"Retry-After": "60"})
        if action == "418":
            return _error(418, "BANNED", {"Retry-After": "10"})
        # The exchange applies the request, then the answer is lost.
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if action == "commit_then_timeout":
            raise httpx.ReadTimeout("scripted", request=request)
        if action == "commit_then_drop":
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        if action == "commit_then_500":
            return _error(500, "INTERNAL_ERROR")
        raise AssertionError(action)


@pytest.fixture
def scripted(app: FastAPI) -> Scripted:
    return Scripted(app)


def _bounds(attempt: int, base: float = 0.1, cap: float = 5.0) -> float:
    return min(cap, base * 2.0 ** (attempt - 1))


def _orders(state: SandboxState, account: str = "alice") -> int:
    acct = state.core.exchange.accounts[account]
    return len(acct.open_orders) + len(acct.recent)


async def test_connect_timeout_is_resent_without_a_lookup(
    connect: Connect, scripted: Scripted, state: SandboxState, fake_time: FakeTime
) -> None:
    scripted.fail("POST /v1/orders", "connect_timeout")
    async with connect(transport=scripted) as client:
        result = await client.create_order("BTC-PERP", "BUY", "0.01", "59000")
    assert scripted.log == ["POST /v1/orders", "POST /v1/orders"]
    assert scripted.bodies[0] == scripted.bodies[1]  # same client order id both times
    assert _orders(state) == 1 and result.order.status == "NEW"
    [wait] = fake_time.sleeps
    assert 0 <= wait <= _bounds(1)


@pytest.mark.parametrize("fault", ["commit_then_timeout", "commit_then_drop", "commit_then_500"])
async def test_ambiguous_placement_is_looked_up_not_placed_twice(
    connect: Connect, scripted: Scripted, state: SandboxState, fault: str
) -> None:
    scripted.fail("POST /v1/orders", fault)
    async with connect(transport=scripted) as client:
        result = await client.create_order("BTC-PERP", "BUY", "0.01", "59000")
    assert scripted.log == [
        "POST /v1/orders",
        "GET /v1/orders/by-client-id/" + str(result.order.client_order_id),
    ]
    assert _orders(state) == 1
    assert (result.order.status, result.order.qty, result.fills) == ("NEW", "0.01", [])


async def test_recovered_taker_order_reads_back_its_fills(
    connect: Connect, scripted: Scripted, state: SandboxState
) -> None:
    async with connect(BOB) as bob:
        await bob.create_order("BTC-PERP", "SELL", "0.1", "60000")
        await bob.create_order("BTC-PERP", "SELL", "0.2", "60001")
    scripted.fail("POST /v1/orders", "commit_then_timeout")
    async with connect(transport=scripted) as client:
        result = await client.create_order(
            "BTC-PERP", "BUY", "0.3", type="MARKET", client_order_id="taker-1"
        )
    assert scripted.log[1:] == ["GET /v1/orders/by-client-id/taker-1", "GET /v1/fills"]
    assert (result.order.status, result.order.filled_qty) == ("FILLED", "0.3")
    # Oldest first, as the placement would have answered: 0.1 @ 60000 then 0.2 @ 60001,
    # taker fee 0.05%: 3 and 6.0001.
    assert [(f.price, f.qty, f.fee) for f in result.fills] == [
        ("60000", "0.1", "3"),
        ("60001", "0.2", "6.0001"),
    ]
    assert {f.liquidity for f in result.fills} == {"TAKER"}
    assert _orders(state) == 1


async def test_503_then_lookup_finds_nothing_then_places_once(
    connect: Connect, scripted: Scripted, state: SandboxState
) -> None:
    scripted.fail("POST /v1/orders", "503")
    async with connect(transport=scripted) as client:
        await client.create_order("BTC-PERP", "BUY", "0.01", "59000", client_order_id="x-1")
    assert scripted.log == [
        "POST /v1/orders",
        "GET /v1/orders/by-client-id/x-1",
        "POST /v1/orders",
    ]
    assert _orders(state) == 1


async def test_a_409_on_a_retry_resolves_to_the_existing_order(
    connect: Connect, scripted: Scripted, state: SandboxState, fake_time: FakeTime
) -> None:
    # Placed but the answer lost; the lookup never connects; the resend meets the duplicate.
    scripted.fail("POST /v1/orders", "commit_then_timeout")
    scripted.fail("GET /v1/orders/by-client-id", "connect_error")
    async with connect(transport=scripted) as client:
        result = await client.create_order("BTC-PERP", "BUY", "0.01", "59000", client_order_id="d")
    assert scripted.log == [
        "POST /v1/orders",
        "GET /v1/orders/by-client-id/d",
        "POST /v1/orders",
    ]
    assert result.order.client_order_id == "d" and result.fills == []
    assert _orders(state) == 1
    assert len(fake_time.sleeps) == 2
    assert all(0 <= w <= _bounds(n) for n, w in enumerate(fake_time.sleeps, 1))


async def test_429_waits_at_least_retry_after(
    connect: Connect, scripted: Scripted, state: SandboxState, fake_time: FakeTime
) -> None:
    scripted.fail("POST /v1/orders", "429")
    async with connect(transport=scripted) as client:
        await client.create_order("BTC-PERP", "BUY", "0.01", "59000")
    assert scripted.log == ["POST /v1/orders", "POST /v1/orders"]  # 429: nothing to look up
    assert fake_time.sleeps == [2.0]
    assert _orders(state) == 1


async def test_requests_wait_while_the_client_is_throttled(
    connect: Connect, scripted: Scripted, fake_time: FakeTime
) -> None:
    scripted.fail("GET /v1/account", "429")
    async with connect(transport=scripted) as client:
        account, positions = await asyncio.gather(client.account(), client.positions())
    assert (account.collateral, positions) == ("100000", [])
    # The positions request waited out the account request's Retry-After: never a strike.
    assert scripted.log == ["GET /v1/account", "GET /v1/account", "GET /v1/positions"]
    assert fake_time.sleeps == [2.0, 2.0]


async def test_retry_after_beyond_the_budget_is_raised_at_once(
    connect: Connect, scripted: Scripted, fake_time: FakeTime
) -> None:
    scripted.fail("GET /v1/account", "429_long")
    async with connect(transport=scripted) as client:
        with pytest.raises(RateLimited) as info:
            await client.account()
        assert info.value.retry_after == 60
        # The client stays throttled: nothing is sent until Retry-After has passed.
        with pytest.raises(RateLimited, match="not sent"):
            await client.positions()
    assert fake_time.sleeps == [] and scripted.log == ["GET /v1/account"]


async def test_418_is_never_retried(
    connect: Connect, scripted: Scripted, fake_time: FakeTime
) -> None:
    scripted.fail("GET /v1/orders", "418")
    async with connect(transport=scripted) as client:
        with pytest.raises(Banned) as info:
            await client.open_orders()
    assert (info.value.status, info.value.retry_after) == (418, 10)
    assert scripted.log == ["GET /v1/orders"] and fake_time.sleeps == []


async def test_refused_orders_are_not_retried(
    connect: Connect, scripted: Scripted, fake_time: FakeTime
) -> None:
    async with connect(transport=scripted) as client:
        with pytest.raises(InsufficientMargin):
            await client.create_order("BTC-PERP", "BUY", "100", "59000")
    assert scripted.log == ["POST /v1/orders"] and fake_time.sleeps == []


async def test_placements_always_carry_a_client_order_id(
    connect: Connect, scripted: Scripted
) -> None:
    async with connect(transport=scripted) as client:
        a = await client.create_order("BTC-PERP", "BUY", "0.01", "59000")
        b = await client.create_order("BTC-PERP", "BUY", "0.01", "59000")
    ids = [orjson.loads(body)["client_order_id"] for body in scripted.bodies]
    assert ids == [a.order.client_order_id, b.order.client_order_id]
    assert all(i.startswith("pb-") and len(i) == 23 for i in ids) and ids[0] != ids[1]


async def test_reads_are_retried_until_attempts_run_out(
    connect: Connect, scripted: Scripted, fake_time: FakeTime
) -> None:
    scripted.fail("GET /v1/account", "503")
    async with connect(transport=scripted) as client:
        assert (await client.account()).collateral == "100000"
        scripted.fail("GET /v1/markets", "503", times=10)
        with pytest.raises(ServerError) as info:
            await client.markets()
    assert info.value.code == "FAULT_INJECTED"
    assert scripted.log.count("GET /v1/markets") == 4  # max_attempts
    waits = fake_time.sleeps[1:]
    assert len(waits) == 3
    assert all(0 <= w <= _bounds(n) for n, w in enumerate(waits, 1))


async def test_total_time_bound(connect: Connect, scripted: Scripted, fake_time: FakeTime) -> None:
    policy = fake_time.policy(max_attempts=100, base_delay=1.0, max_delay=2.0, max_total=5.0)
    scripted.fail("GET /v1/time", "connect_error", times=100)
    async with connect(transport=scripted, retry=policy) as client:
        with pytest.raises(TransportError):
            await client.server_time()
    assert sum(fake_time.sleeps) <= 5.0
    assert len(scripted.log) == len(fake_time.sleeps) + 1 >= 3


async def test_amend_by_order_id_is_not_resent_after_an_ambiguous_failure(
    connect: Connect, scripted: Scripted, fake_time: FakeTime
) -> None:
    async with connect(transport=scripted) as client:
        order = (await client.create_order("BTC-PERP", "BUY", "0.5", "59000")).order
        scripted.fail("PATCH /v1/orders", "commit_then_timeout")
        with pytest.raises(RequestTimeout):
            await client.amend_order(order.order_id, qty="0.4")
        assert scripted.log.count(f"PATCH /v1/orders/{order.order_id}") == 1
        # Not sent at all: safe to resend.
        scripted.fail("PATCH /v1/orders", "connect_timeout")
        amended = await client.amend_order(order.order_id, qty="0.3")
        assert amended.qty == "0.3"
        # By client order id, a lost answer is retried; AMEND_NO_CHANGE means it applied.
        scripted.fail("PATCH /v1/orders", "commit_then_timeout")
        amended = await client.amend_order(client_order_id=order.client_order_id, price="59100")
        assert (amended.price, amended.qty) == ("59100", "0.3")
    assert scripted.log[-3:] == [
        f"PATCH /v1/orders/by-client-id/{order.client_order_id}",
        f"PATCH /v1/orders/by-client-id/{order.client_order_id}",
        f"GET /v1/orders/by-client-id/{order.client_order_id}",
    ]


async def test_cancel_whose_answer_was_lost_returns_the_canceled_order(
    connect: Connect, scripted: Scripted, state: SandboxState
) -> None:
    async with connect(transport=scripted) as client:
        order = (await client.create_order("BTC-PERP", "BUY", "0.5", "59000")).order
        scripted.fail("DELETE /v1/orders", "commit_then_drop")
        canceled = await client.cancel_order(order.order_id)
    assert (canceled.order_id, canceled.status) == (order.order_id, "CANCELED")
    assert scripted.log.count(f"DELETE /v1/orders/{order.order_id}") == 2


async def test_a_replayed_signature_is_resigned(connect: Connect, fake_time: FakeTime) -> None:
    # Two clients of one key send the identical request in the same millisecond.
    async with connect(ALICE) as one, connect(ALICE) as two:
        await one.open_orders("BTC-PERP")
        assert await two.open_orders("BTC-PERP") == []
    assert len(fake_time.sleeps) == 1
    async with connect(ALICE, retry=fake_time.policy(max_attempts=1)) as three:
        with pytest.raises(AuthError, match="REPLAYED_REQUEST"):
            await three.open_orders("BTC-PERP")


class Timeout(httpx.AsyncBaseTransport):
    """The read timeout of a real connection, for the in-process transport."""

    def __init__(self, inner: httpx.AsyncBaseTransport, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            async with asyncio.timeout(self.seconds):
                return await self.inner.handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out", request=request) from None


async def test_sandbox_dropped_response_and_injected_errors(
    connect: Connect,
    app: FastAPI,
    admin: httpx.AsyncClient,
    state: SandboxState,
    fake_time: FakeTime,
) -> None:
    # The sandbox applies the order and holds its answer back for 30 s: the client times out,
    # backs off (the fault is over by then) and finds the order by its client id.
    def clear() -> None:
        state.set_faults(0, Fraction(0), Fraction(0), 0)

    fake_time.on_sleep = clear
    transport = Timeout(asgi(app), 0.05)
    async with connect(transport=transport) as client:
        r = await admin.post("/v1/admin/faults", json={"drop_rate": "1", "duration_ms": 60_000})
        assert r.status_code == 200
        dropped = await client.create_order("BTC-PERP", "BUY", "0.01", "59000")
        r = await admin.post("/v1/admin/faults", json={"error_rate": "1", "duration_ms": 60_000})
        failed = await client.create_order("BTC-PERP", "BUY", "0.02", "59000")
        assert [o.order_id for o in await client.open_orders()] == [
            dropped.order.order_id,
            failed.order.order_id,
        ]
    assert len(fake_time.sleeps) == 2


def test_policy_validation_and_classification() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=2, max_delay=1)
    assert "max_attempts=4" in repr(RetryPolicy())
    sent = RequestTimeout("lost")
    sent.__cause__ = httpx.ReadTimeout("x")
    unsent = RequestTimeout("no connection")
    unsent.__cause__ = httpx.ConnectTimeout("x")
    assert is_ambiguous(sent) and not was_not_sent(sent)
    assert not is_ambiguous(unsent) and was_not_sent(unsent)
    assert is_ambiguous(ServerError(500, "INTERNAL_ERROR", "x"))
    assert not is_retryable(sent, idempotent=False) and is_retryable(unsent, idempotent=False)
    assert is_retryable(RateLimited(429, "RATE_LIMITED", "x"), idempotent=False)
    assert not is_retryable(Banned(418, "BANNED", "x"), idempotent=True)
    assert not is_retryable(ValueError(), idempotent=True)

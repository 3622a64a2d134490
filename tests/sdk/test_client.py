"""AsyncClient and Client against the sandbox: every route once with its numbers, the error
mapping, client-side limits, and real sockets end to end."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx
import pytest

import perpbot
from perpbot import AsyncClient, Client
from perpbot.client import WEIGHTS, book_weight
from perpbot.errors import (
    AuthError,
    Banned,
    DuplicateOrder,
    InsufficientMargin,
    InvalidOrder,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    RateLimited,
    UnknownOrder,
)
from perpbot.limits import RateLimiter, SizeLimits
from perpbot.models import MarketInfo, OrderBook, OrderStatus, Side
from sandbox.server import app as server_app
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState, wall_ms

from .conftest import ALICE, BOB, START_MS, FakeTime, FakeWall, make_state

Connect = Callable[..., AsyncClient]


def test_weights_mirror_the_server_and_public_api_is_exported() -> None:
    assert server_app.WEIGHTS == WEIGHTS
    assert server_app.ORDER_ROUTES == perpbot.client.ORDER_ROUTES
    assert [book_weight(d) for d in (1, 100, 101, 500, 501, 1000)] == [2, 2, 5, 5, 10, 10]
    assert perpbot.__version__
    for name in perpbot.__all__:
        assert getattr(perpbot, name) is not None
    # The SDK never imports the sandbox.
    code = "import sys, perpbot; assert not [m for m in sys.modules if m.startswith('sandbox')]"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_no_cookie_jar_and_absolute_urls(alice: AsyncClient) -> None:
    # Two per-request costs of httpx the client avoids (guards against httpx internals moving).
    assert type(alice._http.cookies).__name__ == "_NoCookies"
    await alice.account()
    assert str(alice._urls["/v1/account"]) == "http://sandbox/v1/account"


async def test_market_data(alice: AsyncClient, bob: AsyncClient, admin: httpx.AsyncClient) -> None:
    t = await alice.server_time()
    assert (t.server_ts, t.wall_ts, t.paused, t.speed) == (START_MS, START_MS, True, "0")
    markets = {m.symbol: m for m in await alice.markets()}
    assert set(markets) == {"BTC-PERP", "ETH-PERP", "SOL-PERP"}
    btc = markets["BTC-PERP"]
    assert (btc.tick_size, btc.lot_size, btc.maker_fee, btc.taker_fee) == (
        "0.1",
        "0.001",
        "0.0002",
        "0.0005",
    )
    ticker = await alice.ticker("BTC-PERP")
    assert (ticker.mark, ticker.last, ticker.best_bid) == ("60000", None, None)
    assert [t.market for t in await alice.tickers()] == ["BTC-PERP", "ETH-PERP", "SOL-PERP"]

    await alice.create_order("BTC-PERP", "SELL", "0.5", "60000")
    await alice.create_order("BTC-PERP", "SELL", "0.25", "60010.5")
    await alice.create_order("BTC-PERP", "BUY", "1", "59900")
    book = await bob.order_book("BTC-PERP", depth=1)
    assert (book.bids, book.asks) == ([("59900", "1")], [("60000", "0.5")])
    book = await bob.order_book("BTC-PERP")
    assert book.asks == [("60000", "0.5"), ("60010.5", "0.25")]
    await bob.create_order("BTC-PERP", "BUY", "0.2", type="MARKET")
    [trade] = await bob.trades("BTC-PERP", limit=5)
    assert (trade.price, trade.qty, trade.taker_side) == ("60000", "0.2", Side.BUY)
    [candle] = await bob.candles("BTC-PERP", "1m", start=START_MS - 60_000, limit=10)
    assert (candle.open, candle.close, candle.volume, candle.trades) == ("60000", "60000", "0.2", 1)
    assert await bob.candles("BTC-PERP", "1h", end=START_MS - 3_600_000) == []

    funding = await bob.funding("BTC-PERP")
    assert (funding.mark, funding.interval_ms) == ("60000", 8 * 3_600_000)
    assert await bob.funding_history("BTC-PERP") == []
    ms = funding.next_funding_ts - START_MS + 1_000
    r = await admin.post("/v1/admin/clock", json={"action": "advance", "ms": ms})
    assert r.status_code == 200, r.text
    [settled] = await bob.funding_history("BTC-PERP", limit=1)
    [paid] = await bob.funding_payments("BTC-PERP", limit=10)
    [received] = await alice.funding_payments()
    assert (paid.size, received.size) == ("0.2", "-0.2")
    assert paid.rate == received.rate == settled.rate
    # payment = size x mark x rate; longs pay shorts when the rate is positive (zero-sum).
    assert Decimal(paid.amount) == -Decimal(received.amount)
    assert abs(
        Decimal(paid.amount) - Decimal("0.2") * Decimal(settled.mark) * Decimal(paid.rate)
    ) <= Decimal("0.00000001")

    rules = await bob.rate_limits()
    assert rules.weights == WEIGHTS
    limits = {(r.type, r.scope, r.window_ms): r.limit for r in rules.rate_limits}
    assert limits[("ORDERS", "API_KEY", 10_000)] == 300


async def test_orders_fills_positions_and_account(alice: AsyncClient, bob: AsyncClient) -> None:
    placed = await alice.create_order(
        "BTC-PERP", "sell", Decimal("0.50"), Decimal("6.0000E+4"), client_order_id="ask-1"
    )
    ask = placed.order
    assert (ask.status, ask.price, ask.qty, ask.client_order_id) == ("NEW", "60000", "0.5", "ask-1")
    assert (ask.type, ask.tif, placed.fills) == ("LIMIT", "GTC", [])
    # Order margin: 0.5 x 60000 / 20x = 1500 USDT reserved.
    acct = await alice.account()
    assert (acct.order_margin, acct.available, acct.collateral) == ("1500", "98500", "100000")

    taken = await bob.create_order("BTC-PERP", Side.BUY, "0.5", type="market", tif="IOC")
    assert taken.order.status == OrderStatus.FILLED
    assert taken.order.client_order_id is not None
    assert taken.order.client_order_id.startswith("pb-")
    [fill] = taken.fills
    # 0.5 x 60000 = 30000 notional; taker fee 0.05% = 15 USDT, maker fee 0.02% = 6 USDT.
    assert (fill.price, fill.qty, fill.fee, fill.liquidity) == ("60000", "0.5", "15", "TAKER")
    [maker] = await alice.fills("BTC-PERP", limit=10)
    assert (maker.order_id, maker.fee, maker.liquidity) == (ask.order_id, "6", "MAKER")
    assert await alice.fills("ETH-PERP") == []
    [pos] = await bob.positions("BTC-PERP")
    assert (pos.size, pos.side, pos.entry_price, pos.leverage) == ("0.5", "LONG", "60000", 20)
    [short] = await alice.positions()
    assert short.size == "-0.5"
    assert (await alice.get_order(ask.order_id)).status == OrderStatus.FILLED
    acct = await bob.account()
    # Collateral 100000 - 15 fee; initial margin 30000 / 20 = 1500.
    assert (acct.collateral, acct.position_margin) == ("99985", "1500")
    assert [p.market for p in acct.positions] == ["BTC-PERP"]

    # Reduce-only that would increase is refused; one that reduces rests.
    with pytest.raises(InvalidOrder) as info:
        await bob.create_order("BTC-PERP", "BUY", "0.1", "59000", reduce_only=True)
    assert info.value.code == "REDUCE_ONLY_WOULD_INCREASE"
    closing = await bob.create_order("BTC-PERP", "SELL", "0.1", "61000", reduce_only=True)
    assert closing.order.reduce_only is True


async def test_amend_cancel_and_listings(alice: AsyncClient) -> None:
    first = (await alice.create_order("BTC-PERP", "BUY", "0.5", "59000")).order
    second = (
        await alice.create_order("BTC-PERP", "BUY", "0.1", "58000", client_order_id="b")
    ).order
    eth = (
        await alice.create_order("ETH-PERP", "BUY", 1, "2900", tif="post_only", stp="CANCEL_BOTH")
    ).order
    assert (eth.qty, eth.tif) == ("1", "POST_ONLY")
    amended = await alice.amend_order(first.order_id, qty="0.3")
    assert (amended.order_id, amended.qty, amended.remaining_qty) == (first.order_id, "0.3", "0.3")
    amended = await alice.amend_order(client_order_id="b", price=Decimal("58100.0"))
    assert (amended.order_id, amended.price) == (second.order_id, "58100")
    with pytest.raises(InvalidOrder) as info:
        await alice.amend_order(client_order_id="b", price="58100")
    assert info.value.code == "AMEND_NO_CHANGE"
    assert (await alice.get_order(client_order_id="b")).price == "58100"
    assert [o.order_id for o in await alice.open_orders("BTC-PERP")] == [
        first.order_id,
        second.order_id,
    ]
    assert len(await alice.open_orders()) == 3

    canceled = await alice.cancel_order(client_order_id="b")
    assert canceled.status == OrderStatus.CANCELED
    with pytest.raises(InvalidOrder) as info:
        await alice.cancel_order(second.order_id)
    assert info.value.code == "ORDER_NOT_OPEN"
    assert (await alice.cancel_order(first.order_id)).status == OrderStatus.CANCELED
    assert (await alice.cancel_all_orders("BTC-PERP")).canceled == []
    assert (await alice.cancel_all_orders()).canceled == [eth.order_id]
    history = await alice.order_history(limit=2)
    assert [o.order_id for o in history] == [eth.order_id, second.order_id]
    assert len(await alice.order_history("BTC-PERP")) == 2
    with pytest.raises(ValueError, match="exactly one"):
        await alice.cancel_order()
    with pytest.raises(ValueError, match="exactly one"):
        await alice.get_order(1, client_order_id="b")


async def test_leverage_and_liquidations(
    alice: AsyncClient, bob: AsyncClient, admin: httpx.AsyncClient
) -> None:
    assert [(x.market, x.leverage) for x in await bob.leverage()] == [
        ("BTC-PERP", 20),
        ("ETH-PERP", 20),
        ("SOL-PERP", 20),
    ]
    info = await bob.set_leverage("BTC-PERP", 100)
    assert (info.market, info.leverage, info.max_leverage) == ("BTC-PERP", 100, 125)
    assert [x.leverage for x in await bob.leverage("BTC-PERP")] == [100]
    with pytest.raises(InvalidOrder) as exc:
        await bob.set_leverage("BTC-PERP", 500)
    assert exc.value.code == "INVALID_LEVERAGE"
    assert await bob.liquidations() == []
    # Bob goes 10 BTC long at 60000 with 100,000 USDT; an index at 49000 liquidates him.
    await alice.create_order("BTC-PERP", "SELL", "10", "60000")
    await bob.create_order("BTC-PERP", "BUY", "10", type="MARKET")
    await alice.create_order("BTC-PERP", "BUY", "10", "57000")
    for source in ("spot-a", "spot-b", "spot-c"):
        body = {"market": "BTC-PERP", "source": source, "price": "49000"}
        assert (await admin.post("/v1/admin/index-price", json=body)).status_code == 200
    await admin.post("/v1/admin/clock", json={"action": "advance", "ms": 60_000})
    kinds = [x.kind for x in await bob.liquidations(limit=100)]
    assert "started" in kinds and "step" in kinds


async def test_errors_map_to_the_exception_tree(alice: AsyncClient, connect: Connect) -> None:
    async with connect(("alice-key", "wrong-secret-0123456789")) as wrong:
        with pytest.raises(AuthError) as auth:
            await wrong.account()
    assert (auth.value.status, auth.value.code) == (401, "INVALID_SIGNATURE")
    async with connect(None) as anonymous:
        with pytest.raises(AuthError, match="MISSING_API_KEY"):
            await anonymous.open_orders()
        assert (await anonymous.ticker("ETH-PERP")).mark == "3000"

    with pytest.raises(UnknownOrder) as unknown:
        await alice.get_order(424242)
    assert (unknown.value.status, unknown.value.code) == (404, "UNKNOWN_ORDER")
    with pytest.raises(NotFound) as market:
        await alice.ticker("DOGE-PERP")
    assert market.value.code == "UNKNOWN_MARKET" and not isinstance(market.value, UnknownOrder)

    first = await alice.create_order("BTC-PERP", "BUY", "0.1", "59000", client_order_id="dup")
    with pytest.raises(DuplicateOrder) as dup:
        await alice.create_order("BTC-PERP", "BUY", "0.2", "59000", client_order_id="dup")
    assert dup.value.status == 409
    assert dup.value.existing_order is not None
    assert dup.value.existing_order["order_id"] == first.order.order_id

    with pytest.raises(InsufficientMargin) as margin:
        await alice.create_order("BTC-PERP", "BUY", "100", "59000")
    # 100 x 59000 / 20x = 295,000 required; 100,000 - 0.1 x 59000 / 20 available.
    assert (margin.value.details["required"], margin.value.details["available"]) == (
        "295000",
        "99705",
    )
    with pytest.raises(InvalidRequest) as invalid:
        await alice.create_order("BTC-PERP", "BUY", "1e3", "59000")
    assert (invalid.value.status, invalid.value.code) == (422, "VALIDATION_ERROR")
    with pytest.raises(InvalidOrder, match="INVALID_PRICE"):
        await alice.create_order("BTC-PERP", "BUY", "0.01", "59000.05")
    assert len(await alice.open_orders()) == 1


async def test_floats_are_refused_before_anything_is_sent(alice: AsyncClient) -> None:
    with pytest.raises(TypeError, match="float"):
        await alice.create_order("BTC-PERP", "BUY", 0.1, "59000")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        await alice.create_order("BTC-PERP", "BUY", "0.1", 59000.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        await alice.amend_order(1, price=59000.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        await alice.create_order("BTC-PERP", "BUY", Decimal("NaN"), "59000")
    with pytest.raises(TypeError):
        await alice.create_order("BTC-PERP", "BUY", None, "59000")  # type: ignore[arg-type]
    assert await alice.order_history() == []


async def test_429_carries_retry_after_then_418_ban(
    connect: Connect, admin: httpx.AsyncClient, wall: FakeWall, fake_time: FakeTime
) -> None:
    r = await admin.post("/v1/admin/limits", json={"weight_limit": 3, "strikes_to_ban": 2})
    assert r.status_code == 200
    wall.now = wall.now - wall.now % 60_000 + 1_000  # 59 s left in the window
    no_retry = fake_time.policy(max_attempts=1)
    async with connect(retry=no_retry) as client:
        for _ in range(3):
            await client.server_time()
        with pytest.raises(RateLimited) as limited:
            await client.server_time()
        assert (limited.value.status, limited.value.retry_after) == (429, 59.0)
        assert limited.value.details == {"limit": "IP_WEIGHT"}
        # Throttled: the client refuses locally instead of earning a strike.
        with pytest.raises(RateLimited, match="not sent"):
            await client.markets()
    # Other clients of the same IP keep hammering: a strike, then a ban (never retried).
    async with connect() as other:
        with pytest.raises(RateLimited):
            await other.server_time()
    async with connect() as third:
        with pytest.raises(Banned) as banned:
            await third.server_time()
    assert banned.value.status == 418 and banned.value.retry_after
    assert fake_time.sleeps == []


async def test_a_throttled_client_waits_out_retry_after(
    alice: AsyncClient, admin: httpx.AsyncClient, wall: FakeWall, fake_time: FakeTime
) -> None:
    await admin.post("/v1/admin/limits", json={"order_limit": 2, "strikes_to_ban": 1})
    wall.now = wall.now - wall.now % 10_000 + 1_000  # 9 s left in the 10 s order window
    results = await asyncio.gather(
        *(alice.create_order("BTC-PERP", "BUY", "0.01", "59000") for _ in range(4))
    )
    assert len({r.order.order_id for r in results}) == 4
    assert any(s >= 9 for s in fake_time.sleeps)  # Retry-After: 9 honoured, never a ban
    assert len(await alice.open_orders()) == 4


class FakeLimiter:
    def __init__(self) -> None:
        self.acquired: list[tuple[str, int, int]] = []
        self.observed: list[dict[str, str]] = []
        self.throttled: list[float] = []

    async def acquire(self, route: str, weight: int, orders: int) -> None:
        self.acquired.append((route, weight, orders))

    def observe(self, headers: Mapping[str, str]) -> None:
        self.observed.append({k: v for k, v in headers.items() if k.startswith("x-pb-")})

    def on_throttled(self, retry_after: float) -> None:
        self.throttled.append(retry_after)


class FakeSizeLimits:
    def __init__(self, *, needs_book: bool, max_qty: str) -> None:
        self.needs_book = needs_book
        self.max_qty = Decimal(max_qty)
        self.calls: list[dict[str, Any]] = []

    def check_order(
        self,
        *,
        market: MarketInfo,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        mark: Decimal,
        position: Decimal,
        book: OrderBook | None,
        reduce_only: bool = False,
    ) -> None:
        self.calls.append(
            dict(market=market.symbol, side=side, qty=qty, price=price, mark=mark, pos=position)
        )
        self.calls[-1]["reduce_only"] = reduce_only
        self.calls[-1]["book"] = None if book is None else book.asks
        if qty > self.max_qty:
            raise LimitExceeded("MAX_ORDER_QTY", f"{qty} > {self.max_qty}", qty=qty)


async def test_limiter_sees_every_request_and_its_headers(connect: Connect) -> None:
    limiter = FakeLimiter()
    async with connect(limiter=limiter) as client:
        await client.create_order("BTC-PERP", "BUY", "0.01", "59000")
        await client.order_book("BTC-PERP", depth=200)
        await client.amend_order(
            client_order_id=(await client.open_orders())[0].client_order_id, qty="0.02"
        )
    assert limiter.acquired == [
        ("POST /v1/orders", 1, 1),
        ("GET /v1/markets/{market}/book", 5, 0),
        ("GET /v1/orders", 2, 0),
        ("PATCH /v1/orders/by-client-id/{client_order_id}", 1, 1),
    ]
    assert limiter.observed[0] == {"x-pb-used-weight-1m": "1", "x-pb-order-count-10s": "1"}
    assert limiter.observed[1] == {"x-pb-used-weight-1m": "6"}
    assert limiter.observed[3]["x-pb-order-count-10s"] == "2"


async def test_size_limits_are_checked_before_sending(bob: AsyncClient, connect: Connect) -> None:
    await bob.create_order("BTC-PERP", "SELL", "0.3", "60100")
    await bob.create_order("BTC-PERP", "BUY", "0.2", "59000")
    sizes = FakeSizeLimits(needs_book=True, max_qty="1")
    limiter = FakeLimiter()
    async with connect(size_limits=sizes, limiter=limiter) as client:
        await client.create_order("BTC-PERP", "BUY", "0.1", type="MARKET")
        await client.create_order("BTC-PERP", "SELL", "0.05", "60200")
        with pytest.raises(LimitExceeded) as refused:
            await client.create_order("BTC-PERP", "BUY", "2", "59000")
        assert refused.value.reason == "MAX_ORDER_QTY"
        with pytest.raises(ValueError, match="not a decimal"):
            await client.create_order("BTC-PERP", "BUY", "1,5", "59000")
        assert len(await client.open_orders()) == 1
    assert sizes.calls[0] == dict(
        market="BTC-PERP",
        side="BUY",
        qty=Decimal("0.1"),
        price=None,
        mark=Decimal("60000"),
        pos=Decimal(0),
        book=[("60100", "0.3")],
        reduce_only=False,
    )
    assert (sizes.calls[1]["price"], sizes.calls[1]["pos"]) == (Decimal("60200"), Decimal("0.1"))
    routes = [route for route, _, _ in limiter.acquired]
    assert routes.count("GET /v1/markets") == 1  # cached
    assert routes.count("POST /v1/orders") == 2  # the refused order was never sent
    sizes.needs_book = False
    async with connect(size_limits=sizes) as client:
        await client.create_order("BTC-PERP", "SELL", "0.1", "60500", reduce_only=True)
    assert (sizes.calls[-1]["book"], sizes.calls[-1]["reduce_only"]) == (None, True)


async def test_the_limits_module_plugs_in(
    connect: Connect, admin: httpx.AsyncClient, wall: FakeWall, fake_time: FakeTime
) -> None:
    async with connect() as probe:
        rules = await probe.rate_limits()
    limiter = RateLimiter(
        rules, clock=fake_time.monotonic, wall=wall.seconds, sleep=fake_time.sleep
    )
    sizes = SizeLimits(max_qty=Decimal("1"), max_slippage=Decimal("0.01"))
    async with connect(limiter=limiter, size_limits=sizes) as client:
        await client.create_order("BTC-PERP", "SELL", "0.5", "60000")
        with pytest.raises(LimitExceeded) as refused:
            await client.create_order("BTC-PERP", "BUY", "2", "60000")
        assert refused.value.reason == "MAX_QTY"
        with pytest.raises(LimitExceeded) as thin:
            await client.create_order("BTC-PERP", "BUY", "0.6", type="MARKET")
        assert thin.value.reason == "BOOK_TOO_THIN"
        assert len(await client.open_orders()) == 1
        assert limiter.used_orders == 1
        # A 429 anyway (the limits tightened behind its back) holds the limiter until
        # Retry-After; the next order waits that out in the limiter and goes through.
        await admin.post("/v1/admin/limits", json={"order_limit": 1})
        async with connect(limiter=limiter, retry=fake_time.policy(max_attempts=1)) as other:
            with pytest.raises(RateLimited) as limited:
                await other.create_order("BTC-PERP", "SELL", "0.1", "61000")
        assert limiter.blocked_for == limited.value.retry_after
        placed = await client.create_order("BTC-PERP", "SELL", "0.1", "61000")
        assert placed.order.status == "NEW"
        assert fake_time.sleeps and fake_time.sleeps[0] >= 1


async def test_sync_client_in_process(app: Any, wall: FakeWall, fake_time: FakeTime) -> None:
    def run() -> None:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 1))
        with Client("http://sandbox", *ALICE, transport=transport, clock=wall.seconds) as client:
            placed = client.create_order("BTC-PERP", "BUY", "0.01", "59000", client_order_id="s1")
            assert client.get_order(client_order_id="s1").order_id == placed.order.order_id
            with pytest.raises(DuplicateOrder):
                client.create_order("BTC-PERP", "BUY", "0.01", "59000", client_order_id="s1")
            assert client.cancel_order(placed.order.order_id).status == OrderStatus.CANCELED
            assert client.ticker("BTC-PERP").mark == "60000"
            assert client.retry_policy.max_attempts == 4
        client.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            client.account()

    # The sandbox app runs on the client's background loop; this loop only waits.
    await asyncio.to_thread(run)
    assert Client.create_order.__doc__ == AsyncClient.create_order.__doc__


class _RealWall(FakeWall):
    def __call__(self) -> int:
        return wall_ms()


async def test_end_to_end_async_client_over_sockets() -> None:
    state: SandboxState = make_state(_RealWall())
    async with serve(state) as url, AsyncClient(url, *ALICE, timeout=5) as client:
        assert (await client.server_time()).paused
        placed = await client.create_order("BTC-PERP", "BUY", "0.01", "59000")
        assert placed.order.status == OrderStatus.NEW
        assert [o.order_id for o in await client.open_orders()] == [placed.order.order_id]
        canceled = await client.cancel_order(client_order_id=placed.order.client_order_id)
        assert canceled.status == OrderStatus.CANCELED
        assert await client.open_orders() == []


async def test_end_to_end_sync_client_over_sockets() -> None:
    state = make_state(_RealWall())
    async with serve(state) as url:

        def run() -> None:
            with Client(url, *BOB, timeout=5) as client:
                placed = client.create_order("ETH-PERP", "SELL", "0.1", "3100")
                assert client.open_orders("ETH-PERP")[0].order_id == placed.order.order_id
                assert client.cancel_all_orders().canceled == [placed.order.order_id]
                assert client.account().order_margin == "0"

        await asyncio.to_thread(run)


async def test_client_streams_the_book_over_real_sockets() -> None:
    """``AsyncClient.watch_book`` keeps a local book equal to the server's."""
    import contextlib

    from sandbox.server.runner import serve
    from tests.server.conftest import FakeWall, make_state

    class Wall(FakeWall):
        def __call__(self) -> int:
            return int(time.time() * 1000)

    state = make_state(Wall())
    async with (
        serve(state) as url,
        AsyncClient(url, "alice-key", "alice-secret-0123456789") as client,
    ):
        assert client.ws_url == url.replace("http://", "ws://") + "/v1/ws"
        await client.create_order("BTC-PERP", "SELL", "0.5", "60010", client_order_id="s1")
        books = client.watch_book("BTC-PERP")
        book = await anext(books)
        assert book.best_ask == (Decimal("60010"), Decimal("0.5"))
        await client.create_order("BTC-PERP", "BUY", "0.25", "59990")
        while book.best_bid is None:
            book = await anext(books)
        rest = await client.order_book("BTC-PERP", depth=100)
        assert book.seq == rest.seq
        assert [(str(p), str(q)) for p, q in book.bids()] == [tuple(x) for x in rest.bids]
        with contextlib.suppress(StopAsyncIteration):
            await books.aclose()


async def test_early_warning_methods(
    alice: AsyncClient,
    bob: AsyncClient,
    admin: httpx.AsyncClient,
    connect: Callable[..., AsyncClient],
) -> None:
    """alerts(), liquidation_bands() and cascade() read the sandbox monitor, typed."""
    assert await alice.alerts() == []
    await alice.set_leverage("BTC-PERP", 100)  # from 20x: an unusual leverage change
    [alert] = await alice.alerts(detector="leverage_change", market="BTC-PERP")
    assert (alert.severity, alert.account, alert.values["leverage"]) == ("warning", "alice", "100")
    assert await alice.alerts(after_id=alert.id) == []
    with pytest.raises(InvalidRequest):  # 422: unknown detector
        await alice.alerts(detector="nope")

    # A thinly funded long (1,000 USDT for 30,000 of BTC): liquidation ~3% under the mark.
    carol = ("carol-key", "carol-secret-0123456789")
    r = await admin.post(
        "/v1/admin/accounts",
        json={"account": "carol", "api_key": carol[0], "api_secret": carol[1], "deposit": "1000"},
    )
    assert r.status_code == 200, r.text
    await bob.create_order("BTC-PERP", "SELL", "0.5", "60000")
    async with connect(carol) as c:
        await c.set_leverage("BTC-PERP", 50)
        await c.create_order("BTC-PERP", "BUY", "0.5", type="MARKET")
        bands = await c.liquidation_bands("BTC-PERP", buckets=20, range="0.1")
        assert (bands.market, bands.positions, bands.long_open) == ("BTC-PERP", 2, "0.5")
        assert sum(b.long_accounts for b in bands.bands) == 1
        cascade = await c.cascade("BTC-PERP", "-0.1", seconds=5)
        assert (cascade.shock, cascade.accounts) == ("-0.1", ["carol"])
        assert cascade.steps[0].account == "carol"
        assert (await c.positions("BTC-PERP"))[0].size == "0.5"  # a simulation: unchanged
        with pytest.raises(TypeError):
            await c.cascade("BTC-PERP", -0.1)  # type: ignore[arg-type]  # floats are refused

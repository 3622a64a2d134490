"""perpbot.limits: the rate limiter against the sandbox's real throttle, and the size limits.

The concurrency tests run on a virtual-time event loop: ``asyncio.sleep`` returns at once with the
loop's clock advanced, so minutes of flat-out trading take a fraction of a second and every run
is deterministic. The limiter and the sandbox's ``Throttle`` read the same virtual wall clock
(the throttle's optionally skewed), exactly as a bot and a remote exchange would.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections import Counter
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpbot.errors import LimitExceeded
from perpbot.limits import FillEstimate, RateLimiter, SizeLimits, estimate_fill
from perpbot.models import MarketInfo, OrderBook, RateLimitRules
from sandbox.server.app import WEIGHTS, create_app
from sandbox.server.throttle import Decision, Throttle, ThrottleConfig
from tests.server.conftest import FakeWall, make_state

T = TypeVar("T")
D = Decimal

# 30 s into a minute (and at a 10 s window's start), in whole seconds: exact as a float.
BASE_MS = 1_700_000_000_000 - 1_700_000_000_000 % 60_000 + 30_000
BASE_S = BASE_MS / 1000
IP = "10.0.0.1"


# -- a virtual-time event loop --------------------------------------------------------------
class _VirtualSelector(selectors.BaseSelector):
    """Polls the real selector without blocking; instead of waiting, advances virtual time."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("virtual loop: every task waits and no timer is set (deadlock)")
        self.now += timeout
        return []

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def client_wall() -> Callable[[], float]:
    loop = asyncio.get_running_loop()
    return lambda: BASE_S + loop.time()


def limiter(**kwargs: Any) -> RateLimiter:
    loop = asyncio.get_running_loop()
    return RateLimiter(**{"clock": loop.time, "wall": client_wall(), **kwargs})


class Venue:
    """The sandbox's real throttle on the virtual wall clock (``skew_s`` ahead of ours), and
    what it served per window."""

    def __init__(self, config: ThrottleConfig | None = None, skew_s: float = 0.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._skew = skew_s
        self.throttle = Throttle(config or ThrottleConfig(), now_ms=self.now_ms)
        self.statuses: Counter[int] = Counter()
        self.weight: Counter[int] = Counter()
        self.orders: Counter[int] = Counter()
        self.orders_long: Counter[int] = Counter()

    def now_ms(self) -> int:
        return math.floor((BASE_S + self._loop.time() + self._skew) * 1000)

    def check(self, key: str | None, weight: int, orders: int) -> Decision:
        decision = self.throttle.check(IP, key, weight, orders)
        self.statuses[decision.status] += 1
        if decision.allowed:
            t = self.now_ms()
            c = self.throttle.config
            self.weight[t - t % c.weight_window_ms] += weight
            self.orders[t - t % c.order_window_ms] += orders
            self.orders_long[t - t % c.order_window_long_ms] += orders
        return decision


Pick = Callable[[random.Random], tuple[str, int, int]]

READS = [(route, w) for route, w in WEIGHTS.items() if route.startswith("GET")]


def pick_read(rng: random.Random) -> tuple[str, int, int]:
    route, weight = rng.choice(READS)
    return route, weight, 0


def pick_unit(rng: random.Random) -> tuple[str, int, int]:
    return "GET /v1/time", 1, 0


def pick_order(rng: random.Random) -> tuple[str, int, int]:
    return rng.choice(["POST /v1/orders", "PATCH /v1/orders/{order_id}"]), 1, 1


async def flat_out(
    lim: RateLimiter,
    venue: Venue,
    *,
    tasks: int,
    until_s: float,
    pick: Pick,
    key: str = "alice-key",
    seed: int = 1,
    max_latency_s: float = 0.02,
    observe: bool = True,
) -> None:
    """``tasks`` tasks send requests as fast as the limiter lets them until ``until_s``; each
    request travels 1 ms..``max_latency_s`` each way (so responses arrive out of order)."""
    loop = asyncio.get_running_loop()

    async def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        while loop.time() < until_s:
            route, weight, orders = pick(rng)
            await lim.acquire(route, weight, orders)
            if loop.time() >= until_s:
                break
            await asyncio.sleep(rng.uniform(0.001, max_latency_s))
            decision = venue.check(key, weight, orders)
            await asyncio.sleep(rng.uniform(0.001, max_latency_s))
            if observe:
                lim.observe(dict(decision.headers()))
            if not decision.allowed:
                assert decision.retry_after_s is not None
                lim.on_throttled(decision.retry_after_s)

    await asyncio.gather(*(worker(n) for n in range(tasks)))


# -- the headline: 50 tasks flat out, zero 429s, within 5% of the budget --------------------
@pytest.mark.parametrize("skew_s", [-0.1, 0.0, 0.1])
def test_50_tasks_flat_out_get_no_429_and_use_95_percent_of_the_weight(skew_s: float) -> None:
    async def main() -> tuple[Venue, RateLimiter]:
        venue = Venue(skew_s=skew_s)
        lim = limiter()
        # The rest of one window, a whole window, and part of a third: two boundaries.
        await flat_out(lim, venue, tasks=50, until_s=30 + 60 + 15, pick=pick_read)
        return venue, lim

    venue, lim = run(main)
    assert set(venue.statuses) == {200}
    assert len(venue.weight) == 3
    for used in venue.weight.values():
        assert 0.95 * 2400 <= used <= 2400
    assert lim.weight_cap == 2280


def test_50_tasks_placing_orders_flat_out_stay_within_both_order_budgets() -> None:
    async def main() -> Venue:
        venue = Venue()
        await flat_out(limiter(), venue, tasks=50, until_s=30 + 60 + 5, pick=pick_order)
        return venue

    venue = run(main)
    assert set(venue.statuses) == {200}
    # 10 s windows: 3 in the first (partial) minute, 6 in the next, 1 in the last; the last
    # two of the whole minute stay empty (its budget is spent).
    starts = [BASE_MS + 10_000 * n for n in range(10)]
    assert set(venue.orders) == set(starts) - {starts[7], starts[8]}
    for start in starts:
        used = venue.orders[start]
        minute = venue.orders_long[start - start % 60_000]
        assert used <= 300
        # Each 10 s window is filled to 95% until the minute's budget (95% of 1200) runs out.
        assert used >= 0.95 * 300 or minute >= 0.95 * 1200
    assert venue.orders_long[BASE_MS + 30_000] == 1140  # the one whole minute
    assert all(used <= 1200 for used in venue.orders_long.values())


def test_the_10s_order_budget_alone_is_used_to_95_percent() -> None:
    config = ThrottleConfig(order_limit_long=100_000)

    async def main() -> Venue:
        venue = Venue(config)
        lim = limiter(order_limit_long=100_000)
        await flat_out(lim, venue, tasks=50, until_s=45, pick=pick_order)
        return venue

    venue = run(main)
    assert set(venue.statuses) == {200}
    assert sorted(venue.orders.values()) == [285] * 5  # 5 windows, each 95% of 300


def test_without_the_boundary_guard_a_lagging_server_clock_throttles() -> None:
    """Control: the guard is what absorbs the skew in the headline test (without it, the burst
    at our window's start lands in the server's previous, full window)."""

    async def main() -> Venue:
        venue = Venue(skew_s=-0.1)
        lim = limiter(guard_s=0)
        await flat_out(lim, venue, tasks=50, until_s=31, pick=pick_unit, observe=False)
        return venue

    assert run(main).statuses[429] > 0


# -- drift: other processes on the same IP ---------------------------------------------------
@pytest.mark.parametrize("observe", [True, False])
def test_weight_spent_by_another_process_is_learned_from_the_headers(observe: bool) -> None:
    async def main() -> Venue:
        venue = Venue()
        for _ in range(200):  # another process already spent 1000 of this window
            assert venue.check(None, 5, 0).allowed
        await flat_out(limiter(), venue, tasks=50, until_s=30 + 60, pick=pick_unit, observe=observe)
        return venue

    venue = run(main)
    if observe:
        assert set(venue.statuses) == {200}
        for used in venue.weight.values():
            assert 0.95 * 2400 <= used <= 2400
    else:  # control: counting only our own requests overshoots
        assert venue.statuses[429] > 0


def test_two_processes_with_their_own_limiters_share_an_ip_without_429() -> None:
    async def main() -> Venue:
        venue = Venue()
        until = 30 + 60 + 5
        await asyncio.gather(
            flat_out(limiter(), venue, tasks=40, until_s=until, pick=pick_unit, key="alice-key"),
            flat_out(
                limiter(), venue, tasks=10, until_s=until, pick=pick_unit, key="bob-key", seed=2
            ),
        )
        return venue

    venue = run(main)
    assert set(venue.statuses) == {200}
    assert len(venue.weight) == 3
    for used in venue.weight.values():
        assert 0.95 * 2400 <= used <= 2400


def test_observe_only_raises_counts() -> None:
    async def main() -> None:
        lim = limiter()
        await asyncio.sleep(1)  # clear of the guard after the 10 s boundary at 0
        lim.observe({"X-PB-Used-Weight-1m": "500", "X-PB-Order-Count-10s": "7"})
        assert (lim.used_weight, lim.used_orders, lim.used_orders_long) == (500, 7, 7)
        lim.observe({"x-pb-used-weight-1m": "300", "x-pb-order-count-10s": "2"})  # stale
        assert (lim.used_weight, lim.used_orders, lim.used_orders_long) == (500, 7, 7)
        await lim.acquire("POST /v1/orders", 1, 1)
        assert (lim.used_weight, lim.used_orders, lim.used_orders_long) == (501, 8, 8)
        lim.observe({"x-pb-order-count-10s": "10"})  # 2 orders we never sent
        assert (lim.used_orders, lim.used_orders_long) == (10, 10)
        lim.observe({"x-pb-used-weight-1m": "junk", "other": "1"})
        lim.observe(httpx.Headers({"X-PB-USED-WEIGHT-1M": "900"}))
        assert lim.used_weight == 900

    run(main)


def test_a_figure_just_after_a_boundary_is_booked_to_the_previous_window() -> None:
    async def main() -> None:
        lim = limiter()
        await asyncio.sleep(30.1)  # 0.1 s into a new window, inside the 0.25 s guard
        lim.observe({"x-pb-used-weight-1m": "2280"})  # probably the old window's figure
        assert lim.used_weight == 0
        await asyncio.sleep(0.2)
        lim.observe({"x-pb-used-weight-1m": "40"})
        assert lim.used_weight == 40

    run(main)


# -- waiting: throttles, FIFO, cancellation -------------------------------------------------
def test_on_throttled_blocks_every_acquire_until_retry_after() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lim = limiter()
        lim.on_throttled(3)
        lim.on_throttled(1)  # never shortens
        assert lim.blocked_for == 3
        done: list[float] = []

        async def one() -> None:
            await lim.acquire("GET /v1/time", 1, 0)
            done.append(loop.time())

        first = asyncio.gather(*(one() for _ in range(5)))
        await asyncio.sleep(1)
        lim.on_throttled(4)  # extended: until 5 s
        await first
        assert done == [5.0] * 5
        assert lim.blocked_for == 0
        await one()
        assert done[-1] == 5.0

    run(main)


def test_honouring_retry_after_after_a_429_never_earns_a_ban() -> None:
    """The limiter believes in 2400 but the exchange allows 100: a 429 per window, no 418."""

    async def main() -> Venue:
        venue = Venue(ThrottleConfig(weight_limit=100))
        await flat_out(limiter(), venue, tasks=1, until_s=30 + 120, pick=pick_unit)
        return venue

    venue = run(main)
    assert venue.statuses[418] == 0
    assert venue.statuses[429] == 3  # one per window
    assert all(used == 100 for used in venue.weight.values())


def test_waiters_are_admitted_in_arrival_order_when_the_window_rolls() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lim = limiter(weight_limit=20, safety=1)
        await lim.acquire("GET /v1/account", 20, 0)  # the window is full
        order: list[int] = []

        async def one(n: int) -> None:
            await lim.acquire("GET /v1/time", 1, 0)
            order.append(n)

        tasks = []
        for n in range(10):
            tasks.append(asyncio.ensure_future(one(n)))
            await asyncio.sleep(0.01)
        assert lim.waiting == 10
        await asyncio.gather(*tasks)
        assert order == list(range(10))
        assert loop.time() == pytest.approx(30.25)  # the next window, after the guard

    run(main)


def test_a_heavy_waiter_does_not_starve_and_does_not_block_lighter_ones() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        lim = limiter(weight_limit=20, safety=1)
        await lim.acquire("GET /v1/time", 15, 0)
        heavy = asyncio.ensure_future(lim.acquire("GET /v1/account", 10, 0))
        await asyncio.sleep(0)
        assert lim.waiting == 1
        for _ in range(5):  # lighter requests fill the room the heavy one cannot use
            await lim.acquire("GET /v1/time", 1, 0)
        assert loop.time() == 0 and lim.used_weight == 20
        light = asyncio.ensure_future(lim.acquire("GET /v1/time", 10, 0))
        late = asyncio.ensure_future(lim.acquire("GET /v1/time", 5, 0))
        await heavy  # first in the new window ...
        assert loop.time() == pytest.approx(30.25)
        await light  # ... then the next in line
        assert not late.done() and lim.used_weight == 20
        await late  # and the window after that for the last one
        assert loop.time() == pytest.approx(90.25)

    run(main)


def test_a_cancelled_waiter_charges_nothing() -> None:
    async def main() -> None:
        lim = limiter(weight_limit=10, safety=1)
        await lim.acquire("GET /v1/time", 10, 0)
        waiter = asyncio.ensure_future(lim.acquire("GET /v1/time", 5, 0))
        await asyncio.sleep(1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert lim.waiting == 0
        await asyncio.sleep(30)
        assert lim.used_weight == 0
        await lim.acquire("GET /v1/time", 10, 0)
        assert lim.used_weight == 10

    run(main)


def test_requests_near_a_boundary_count_in_both_windows() -> None:
    async def main() -> None:
        lim = limiter()
        await asyncio.sleep(29.9)  # 0.1 s before the boundary
        await lim.acquire("GET /v1/account", 5, 0)
        assert lim.used_weight == 5
        await asyncio.sleep(0.2)
        assert lim.used_weight == 5  # it may land in the new window too

    run(main)


def test_a_request_that_can_never_fit_is_refused() -> None:
    async def main() -> None:
        lim = limiter(weight_limit=8)  # cap 7
        with pytest.raises(LimitExceeded) as info:
            await lim.acquire("GET /v1/markets/{market}/book", 10, 0)
        assert info.value.reason == "REQUEST_TOO_HEAVY"
        assert info.value.details["weight_cap"] == 7
        with pytest.raises(ValueError):
            await lim.acquire("GET /v1/time", -1, 0)

    run(main)


def test_a_broken_sleep_fails_the_waiters_instead_of_hanging() -> None:
    async def broken(_: float) -> None:
        raise RuntimeError("no sleep")

    async def main() -> None:
        lim = limiter(weight_limit=10, safety=1, sleep=broken)
        await lim.acquire("GET /v1/time", 10, 0)
        with pytest.raises(RuntimeError, match="no sleep"):
            await lim.acquire("GET /v1/time", 1, 0)

    run(main)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        RateLimiter(safety=0)
    with pytest.raises(ValueError):
        RateLimiter(weight_limit=0)
    with pytest.raises(ValueError):
        RateLimiter(order_window_s=0.4)  # shorter than twice the guard
    with pytest.raises(ValueError):
        RateLimiter().on_throttled(math.inf)


# -- the exchange's rules ---------------------------------------------------------------------
def rules_of(throttle: Throttle) -> RateLimitRules:
    snap = throttle.snapshot()
    return RateLimitRules.model_validate({**snap, "weights": WEIGHTS})


def test_from_rules_reads_the_servers_budgets() -> None:
    config = ThrottleConfig(
        weight_limit=1000,
        key_weight_limit=1200,
        order_limit=50,
        order_window_ms=5_000,
        order_limit_long=400,
        order_window_long_ms=30_000,
    )
    lim = RateLimiter.from_rules(rules_of(Throttle(config, now_ms=lambda: 0)), safety=0.9)
    assert (lim.weight_cap, lim.order_cap, lim.order_cap_long) == (900, 45, 360)
    assert lim.weights == WEIGHTS
    default = RateLimiter.from_rules(rules_of(Throttle(now_ms=lambda: 0)))
    assert (default.weight_cap, default.order_cap, default.order_cap_long) == (2280, 285, 1140)


def test_apply_rules_tightens_live_and_fails_waiters_that_cannot_fit() -> None:
    async def main() -> None:
        lim = limiter(weight_limit=10, safety=1)
        await lim.acquire("GET /v1/time", 10, 0)
        heavy = asyncio.ensure_future(lim.acquire("GET /v1/account", 5, 0))
        await asyncio.sleep(0)
        lim.apply_rules(rules_of(Throttle(ThrottleConfig(weight_limit=4), now_ms=lambda: 0)))
        assert lim.weight_cap == 4
        with pytest.raises(LimitExceeded):
            await heavy

    run(main)


async def test_with_the_sandbox_app_over_http() -> None:
    """The real endpoint's rules and the real response headers."""
    wall = FakeWall(BASE_MS)
    app = create_app(make_state(wall), background=False)
    transport = httpx.ASGITransport(app=app, client=(IP, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        response = await http.get("/v1/rate-limits")
        lim = RateLimiter.from_rules(
            RateLimitRules.model_validate_json(response.content), wall=lambda: wall.now / 1000
        )
        lim.observe(response.headers)
        assert lim.used_weight == 1
        for _ in range(3):
            await lim.acquire("GET /v1/time", WEIGHTS["GET /v1/time"], 0)
            lim.observe((await http.get("/v1/time")).headers)
        assert lim.used_weight == 4
        wall.now += 60_000
        assert lim.used_weight == 0


# -- the order book walk ----------------------------------------------------------------------
ASKS = [("60000.0", "0.5"), ("60010.0", "1.0"), ("60050.0", "2.0")]
BIDS = [("59990.0", "0.4"), ("59980.0", "1.5"), ("59900.0", "3")]


def test_estimate_fill_walks_the_asks_level_by_level() -> None:
    est = estimate_fill(ASKS, D("1.2"), side="BUY")
    # 0.5 @ 60000 + 0.7 @ 60010 = 30000 + 42007 = 72007; / 1.2
    assert est.filled == D("1.2")
    assert est.notional == D("72007")
    assert est.avg_price is not None and est.slippage is not None
    assert est.avg_price.quantize(D("0.0001")) == D("60005.8333")
    assert est.worst_price == D("60010.0")
    assert est.best_price == D("60000.0")
    # (60005.8333... - 60000) / 60000
    assert est.slippage.quantize(D("1E-10")) == D("0.0000972222")


def test_estimate_fill_walks_the_bids_for_a_sell() -> None:
    est = estimate_fill(list(reversed(BIDS)), D("2.0"), side="SELL")  # any order in
    # 0.4 @ 59990 + 1.5 @ 59980 + 0.1 @ 59900 = 23996 + 89970 + 5990 = 119956; / 2 = 59978
    assert est == FillEstimate(
        avg_price=D("59978"),
        filled=D("2.0"),
        worst_price=D("59900"),
        slippage=D(12) / D(59990),
        best_price=D("59990.0"),
        notional=D("119956"),
    )


def test_estimate_fill_stops_at_the_limit_and_when_the_book_runs_out() -> None:
    capped = estimate_fill(ASKS, D("3"), limit_price=D("60010"), side="BUY")
    assert (capped.filled, capped.worst_price, capped.notional) == (
        D("1.5"),
        D("60010.0"),
        D("90010"),
    )
    thin = estimate_fill(ASKS, D("10"), side="BUY")
    assert thin.filled == D("3.5")
    nothing = estimate_fill(ASKS, D("1"), limit_price=D("59999.9"), side="BUY")
    assert nothing == FillEstimate(None, D(0), None, None, D("60000.0"), D(0))
    assert estimate_fill([], D("1"), side="SELL").filled == 0
    assert estimate_fill([["60000", "0"], ["60001", "1"]], D("1"), side="BUY").avg_price == 60001
    with pytest.raises(ValueError):
        estimate_fill(ASKS, D("1"), side="LONG")
    with pytest.raises(ValueError):
        estimate_fill([("60000", "-1")], D("1"), side="BUY")


@st.composite
def books(draw: st.DrawFn) -> tuple[list[tuple[str, str]], Decimal, Decimal | None, str]:
    ticks = draw(st.lists(st.integers(1, 2000), max_size=12, unique=True))
    levels = [(str(D(t) / 2), str(D(draw(st.integers(0, 500))) / 100)) for t in ticks]
    qty = D(draw(st.integers(1, 3000))) / 100
    limit = draw(st.none() | st.integers(1, 2000).map(lambda t: D(t) / 2))
    return levels, qty, limit, draw(st.sampled_from(["BUY", "SELL"]))


@given(books())
@settings(max_examples=150, deadline=None)
def test_estimate_fill_properties(
    case: tuple[list[tuple[str, str]], Decimal, Decimal | None, str],
) -> None:
    levels, qty, limit, side = case
    buy = side == "BUY"
    parsed = [(D(p), D(q)) for p, q in levels]
    reachable = [(p, q) for p, q in parsed if limit is None or (p <= limit if buy else p >= limit)]
    est = estimate_fill(levels, qty, limit_price=limit, side=side)
    assert est.filled == min(qty, sum((q for _, q in reachable), D(0)))
    if est.filled == 0:
        assert est.avg_price is None and est.slippage is None
        return
    assert est.avg_price is not None and est.worst_price is not None and est.slippage is not None
    best = min(p for p, q in parsed if q) if buy else max(p for p, q in parsed if q)
    assert est.best_price == best
    low, high = (best, est.worst_price) if buy else (est.worst_price, best)
    assert low <= est.avg_price <= high
    assert est.slippage >= 0


# -- size limits ------------------------------------------------------------------------------
MARKET = MarketInfo(
    symbol="BTC-PERP",
    tick_size="0.1",
    lot_size="0.001",
    min_qty="0.002",
    max_qty="1000",
    market_max_qty="120",
    min_notional="100",
    price_band="0.05",
    market_band="0.05",
    maker_fee="0.0002",
    taker_fee="0.0005",
    default_leverage=20,
    funding_interval_ms=28_800_000,
    liquidation_mode="incremental",
    brackets=[],
)
MARK = D("60000")
BOOK = OrderBook(
    market="BTC-PERP",
    seq=1,
    ts=0,
    bids=list(BIDS),
    asks=[*ASKS, ("63000.1", "100")],  # beyond the market band: a market order never gets there
)


def check(limits: SizeLimits, **order: Any) -> None:
    args: dict[str, Any] = {
        "market": MARKET,
        "side": "BUY",
        "qty": D("1"),
        "price": None,
        "mark": MARK,
        "position": D(0),
        "book": None,
        **order,
    }
    limits.check_order(**args)


def refused(limits: SizeLimits, **order: Any) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        check(limits, **order)
    return info.value


@pytest.mark.parametrize(
    ("order", "name", "numbers"),
    [
        ({"qty": D(0)}, "qty", {"qty": "0"}),
        ({"qty": D("0.0015")}, "lot_size", {"qty": "0.0015", "lot": "0.001"}),
        ({"qty": D("0.001")}, "min_qty", {"qty": "0.001", "min_qty": "0.002"}),
        ({"qty": D("121")}, "max_qty", {"max_qty": "120"}),  # a market order's maximum
        ({"qty": D("1001"), "price": D("60000")}, "max_qty", {"max_qty": "1000"}),
        ({"price": D("60000.05")}, "tick_size", {"price": "60000.05", "tick": "0.1"}),
        ({"price": D("63000.1")}, "price_band", {"max_price": "63000.00"}),
        ({"price": D("56999.9")}, "price_band", {"min_price": "57000.00"}),
        ({"qty": D("0.002"), "price": D("49000")}, "price_band", {}),
        ({"qty": D("0.002")}, "min_notional", {"notional": "120.000", "min_notional": "200"}),
        ({"qty": D("0.002"), "price": D("57000")}, "min_notional", {"notional": "114.000"}),
    ],
)
def test_the_exchanges_filters(order: dict[str, Any], name: str, numbers: dict[str, str]) -> None:
    if name == "min_notional":
        market = MARKET.model_copy(update={"min_notional": "200"})
        err = refused(SizeLimits(), market=market, **order)
    else:
        err = refused(SizeLimits(), **order)
    assert err.reason == "MARKET_FILTER"
    assert err.details["filter"] == name
    assert err.details["market"] == "BTC-PERP"
    for key, value in numbers.items():
        assert err.details[key] == value


def test_reduce_only_orders_skip_the_min_notional() -> None:
    market = MARKET.model_copy(update={"min_notional": "200"})
    order: dict[str, Any] = {"market": market, "side": "SELL", "qty": D("0.002")}
    assert refused(SizeLimits(), position=D("0.002"), **order).details["filter"] == "min_notional"
    check(SizeLimits(), position=D("0.002"), reduce_only=True, **order)


def test_max_qty_per_market_or_for_all() -> None:
    err = refused(SizeLimits(max_qty=D("2")), qty=D("2.5"))
    assert (err.reason, err.details["qty"], err.details["max_qty"]) == ("MAX_QTY", "2.5", "2")
    check(SizeLimits(max_qty=D("2")), qty=D("2"))
    check(SizeLimits(max_qty={"ETH-PERP": D("1")}), qty=D("2.5"))  # BTC-PERP has no limit
    assert refused(SizeLimits(max_qty={"BTC-PERP": D("1")}), qty=D("2.5")).reason == "MAX_QTY"


def test_max_notional_of_limit_and_market_orders() -> None:
    limits = SizeLimits(max_notional=D("72000"))
    err = refused(limits, qty=D("1.2"), price=D("60001"))
    assert err.details["notional"] == "72001.2"
    check(limits, qty=D("1.2"))  # at the mark: 1.2 * 60000 = 72000
    err = refused(limits, qty=D("1.2"), book=BOOK)  # the book's fill: 72007
    assert err.reason == "MAX_NOTIONAL"
    assert err.details["notional"] == "72007.00"  # exact: the sum over the levels
    assert err.details["max_notional"] == "72000"


def test_max_position_is_the_worst_case_after_the_order() -> None:
    limits = SizeLimits(max_position=D("2"))
    err = refused(limits, qty=D("1.5"), position=D("1"))
    assert err.reason == "MAX_POSITION"
    assert (err.details["position_after"], err.details["max_position"]) == ("2.5", "2")
    check(limits, qty=D("1"), position=D("1"))
    err = refused(limits, side="SELL", qty=D("4"), position=D("1"))  # flips to -3
    assert err.details["position_after"] == "-3"
    check(limits, side="SELL", qty=D("0.5"), position=D("3"))  # over, but shrinking: allowed
    check(limits, side="SELL", qty=D("5"), position=D("1"), reduce_only=True)  # clipped to 1
    assert refused(SizeLimits(max_position=D(0)), qty=D("0.01")).reason == "MAX_POSITION"


def test_price_band_around_the_mark() -> None:
    limits = SizeLimits(price_band=D("0.02"))
    check(limits, price=D("61200"))  # exactly 2%
    check(limits, side="SELL", price=D("58800"))
    err = refused(limits, price=D("61200.1"))
    assert err.reason == "PRICE_BAND"
    assert err.details["distance"] == str(D("1200.1") / D("60000"))
    check(limits)  # market orders have no price to check


def test_book_too_thin_for_a_market_order() -> None:
    err = refused(SizeLimits(), qty=D("4"), book=BOOK)
    assert err.reason == "BOOK_TOO_THIN"
    # The level at 63000.1 is beyond mark * 1.05 = 63000: the exchange would not sweep to it.
    assert (err.details["available"], err.details["qty"]) == ("3.5", "4")
    assert err.details["limit_price"] == "63000.00"
    check(SizeLimits(), qty=D("3.5"), book=BOOK)
    check(SizeLimits(), qty=D("4"), price=D("60050"), book=BOOK)  # a limit order rests the rest
    assert refused(SizeLimits(), side="SELL", qty=D("5"), book=BOOK).details["available"] == "4.9"


def test_max_slippage() -> None:
    limits = SizeLimits(max_slippage=D("0.0001"))
    assert limits.needs_book and limits.needs_book_for("BTC-PERP")
    assert not SizeLimits(max_qty=D(1)).needs_book
    assert not SizeLimits(max_slippage={"ETH-PERP": D(1)}).needs_book_for("BTC-PERP")
    check(limits, qty=D("1.2"), book=BOOK)  # 0.0000972...
    err = refused(limits, qty=D("1.5"), book=BOOK)  # 90010 / 1.5 = 60006.666...: 0.000111...
    assert err.reason == "MAX_SLIPPAGE"
    assert err.details["slippage"].startswith("0.0001111111")
    assert (err.details["best_price"], err.details["worst_price"]) == ("60000.0", "60010.0")
    # A crossing limit order slips as far as its price lets it.
    assert refused(limits, qty=D("1.5"), price=D("60010"), book=BOOK).reason == "MAX_SLIPPAGE"
    check(limits, qty=D("1.5"), price=D("60000"), book=BOOK)
    assert refused(limits, qty=D("1")).reason == "MAX_SLIPPAGE"  # no book: fail closed


def test_size_limits_refuse_floats_and_negatives() -> None:
    with pytest.raises(TypeError):
        SizeLimits(max_qty=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SizeLimits(max_notional=D(-1))
    with pytest.raises(ValueError):
        check(SizeLimits(), mark=D(0))
    with pytest.raises(ValueError):
        check(SizeLimits(), side="LONG")

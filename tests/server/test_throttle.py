"""Throttling: weight and order budgets, 429 with Retry-After, strikes, escalating 418 bans."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import fields, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.server.throttle import Decision, Throttle, ThrottleConfig, ThrottleReason

T0 = 28_333_333 * 60_000  # 1_699_999_980_000: aligned to every window used here
SMALL = ThrottleConfig(
    weight_limit=10,
    key_weight_limit=6,
    order_limit=3,
    order_limit_long=5,
    strikes_to_ban=3,
    ban_base_ms=10_000,
    ban_multiplier=2,
    ban_max_ms=50_000,
    ban_memory_ms=100_000,
)


class FakeClock:
    """Epoch milliseconds that move only when the test says so."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def th(clock: FakeClock) -> Throttle:
    return Throttle(SMALL, now_ms=clock)


def ok(used: int, orders: int | None = None) -> Decision:
    return Decision(200, None, used, orders, None)


def refused(
    status: int, retry: int, used: int, orders: int | None, reason: ThrottleReason
) -> Decision:
    return Decision(status, retry, used, orders, reason)


def ban_it(th: Throttle, ip: str = "1.1.1.1", key: str | None = None) -> Decision:
    """Exhaust the IP weight, then keep knocking until banned; returns the 418."""
    while th.check(ip, key, 1, 0).status == 200:
        pass
    for _ in range(th.config.strikes_to_ban - 1):
        assert th.check(ip, key, 1, 0).status == 429
    d = th.check(ip, key, 1, 0)
    assert d.status == 418 and d.reason == ThrottleReason.BANNED
    return d


# -- config ----------------------------------------------------------------------------------


def test_defaults_follow_binance() -> None:
    c = ThrottleConfig()
    assert (c.weight_limit, c.weight_window_ms, c.key_weight_limit) == (2400, 60_000, 2400)
    assert (c.order_limit, c.order_window_ms) == (300, 10_000)
    assert (c.order_limit_long, c.order_window_long_ms) == (1200, 60_000)
    assert (c.strikes_to_ban, c.ban_base_ms, c.ban_multiplier) == (5, 10_000, 2)
    assert (c.ban_max_ms, c.ban_memory_ms) == (3_600_000, 600_000)


@pytest.mark.parametrize("name", [f.name for f in fields(ThrottleConfig)])
@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_config_fields_must_be_positive_ints(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=name):
        ThrottleConfig(**{name: bad})  # type: ignore[arg-type]


def test_ban_max_must_cover_base() -> None:
    with pytest.raises(ValueError, match="ban_max_ms"):
        ThrottleConfig(ban_base_ms=10_000, ban_max_ms=9_999)


def test_bad_arguments(clock: FakeClock, th: Throttle) -> None:
    with pytest.raises(ValueError):
        Throttle(SMALL, now_ms=clock, sweep_every_ms=0)
    with pytest.raises(TypeError):
        th.set_config({"weight_limit": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        th.check("ip", None, -1, 0)
    with pytest.raises(ValueError):
        th.check("ip", "k", 1, -1)


def test_snapshot(th: Throttle) -> None:
    snap = th.snapshot()
    assert snap["rate_limits"] == [
        {"type": "REQUEST_WEIGHT", "scope": "IP", "window_ms": 60_000, "limit": 10},
        {"type": "REQUEST_WEIGHT", "scope": "API_KEY", "window_ms": 60_000, "limit": 6},
        {"type": "ORDERS", "scope": "API_KEY", "window_ms": 10_000, "limit": 3},
        {"type": "ORDERS", "scope": "API_KEY", "window_ms": 60_000, "limit": 5},
    ]
    assert snap["bans"] == {
        "strikes_to_ban": 3,
        "base_ms": 10_000,
        "multiplier": 2,
        "max_ms": 50_000,
        "memory_ms": 100_000,
    }
    assert snap["config"]["weight_limit"] == 10
    th.set_config(replace(SMALL, weight_limit=99))
    assert th.snapshot()["rate_limits"][0]["limit"] == 99


# -- budgets ---------------------------------------------------------------------------------


def test_under_budget_is_served_and_counted(th: Throttle) -> None:
    assert th.check("ip", None, 4, 0) == ok(4)
    assert th.check("ip", "k", 1, 1) == ok(5, 1)
    assert th.check("ip", "k", 1, 2) == ok(6, 3)
    assert th.check("ip", None, 4, 0) == ok(10)  # exactly at the limit


def test_ip_weight_429_with_retry_after(th: Throttle, clock: FakeClock) -> None:
    th.check("ip", None, 8, 0)
    clock.now = T0 + 12_345
    assert th.check("ip", None, 3, 0) == refused(429, 48, 8, None, ThrottleReason.IP_WEIGHT)
    clock.now = T0 + 59_001  # Retry-After rounds up and is at least 1
    assert th.check("ip", None, 1, 0).retry_after_s == 1


def test_key_weight_429_across_ips(th: Throttle, clock: FakeClock) -> None:
    assert th.check("ip1", "k", 4, 0) == ok(4, 0)
    clock.now = T0 + 30_000
    assert th.check("ip2", "k", 3, 0) == refused(429, 30, 0, 0, ThrottleReason.KEY_WEIGHT)
    assert th.check("ip2", None, 3, 0) == ok(3)  # the IP itself is fine
    assert th.check("ip3", "other", 6, 0) == ok(6, 0)  # other keys are fine


def test_order_count_10s(th: Throttle, clock: FakeClock) -> None:
    for n in (1, 2, 3):
        assert th.check("ip", "k", 1, 1) == ok(n, n)
    assert th.check("ip", "k", 0, 0) == ok(3, 3)  # no orders: not judged on order budgets
    clock.now = T0 + 2_500
    assert th.check("ip", "k", 1, 1) == refused(429, 8, 3, 3, ThrottleReason.ORDER_COUNT_10S)
    clock.now = T0 + 10_000  # the 10 s window rolled over
    assert th.check("ip", "k", 1, 1) == ok(4, 1)


def test_order_count_1m(th: Throttle, clock: FakeClock) -> None:
    th.set_config(replace(SMALL, key_weight_limit=100, weight_limit=100))
    for _ in range(3):
        assert th.check("ip", "k", 1, 1).allowed
    clock.now = T0 + 10_000
    assert th.check("ip", "k", 1, 2) == ok(4, 2)  # 5 orders this minute
    clock.now = T0 + 20_000
    assert th.check("ip", "k", 1, 1) == refused(429, 40, 4, 0, ThrottleReason.ORDER_COUNT_1M)
    clock.now = T0 + 60_000
    assert th.check("ip", "k", 1, 1) == ok(1, 1)


def test_several_budgets_exceeded_reports_the_longest_wait(th: Throttle, clock: FakeClock) -> None:
    th.check("ip", "k", 1, 3)
    clock.now = T0 + 10_000
    th.check("ip", "k", 1, 2)
    clock.now = T0 + 15_000  # a 3-order request now exceeds both the 10 s and the 1 m budget
    d = th.check("ip", "k", 1, 3)
    assert (d.status, d.reason, d.retry_after_s) == (429, ThrottleReason.ORDER_COUNT_1M, 45)
    # IP weight (ends at 60 s) and key orders (ends at 20 s): the IP's is the longer
    th2 = Throttle(SMALL, now_ms=clock)
    clock.now = T0 + 11_000
    th2.check("ip", None, 10, 0)
    th2.check("ip2", "k", 0, 3)
    d = th2.check("ip", "k", 1, 1)
    assert (d.status, d.reason, d.retry_after_s) == (429, ThrottleReason.IP_WEIGHT, 49)


def test_a_request_that_never_fits_is_429_not_a_crash(th: Throttle) -> None:
    d = th.check("ip", None, 11, 0)
    assert (d.status, d.reason, d.used_weight) == (429, ThrottleReason.IP_WEIGHT, 0)


def test_refused_requests_consume_nothing(th: Throttle, clock: FakeClock) -> None:
    th.check("ip", "k", 2, 3)
    d = th.check("ip", "k", 2, 1)  # refused on orders: neither IP nor key weight is charged
    assert (d.status, d.used_weight, d.order_count_10s) == (429, 2, 3)
    assert th.check("ip", None, 8, 0) == ok(10)  # the IP still has its full remaining budget
    th.set_config(SMALL)  # forgive the throttle: the key's weight budget is intact too
    assert th.check("ip2", "k", 4, 0) == ok(4, 3)
    assert th.check("ip2", "k", 1, 0).reason == ThrottleReason.KEY_WEIGHT
    th.set_config(SMALL)
    assert th.check("ip2", "k2", 6, 0) == ok(10, 0)  # ip2: 4 + 6, nothing from the refusal


def test_window_rollover_restores_service(th: Throttle, clock: FakeClock) -> None:
    th.check("ip", None, 10, 0)
    clock.now = T0 + 59_999
    assert th.check("ip", None, 1, 0) == refused(429, 1, 10, None, ThrottleReason.IP_WEIGHT)
    clock.now = T0 + 60_000  # exactly at the window end
    assert th.check("ip", None, 1, 0) == ok(1)


def test_windows_are_aligned_to_their_length(clock: FakeClock) -> None:
    clock.now = T0 + 59_000  # a first request late in a window gets only the rest of it
    th = Throttle(SMALL, now_ms=clock)
    th.check("ip", None, 10, 0)
    assert th.check("ip", None, 1, 0).retry_after_s == 1
    clock.now = T0 + 60_000
    assert th.check("ip", None, 10, 0).allowed


# -- throttled, strikes, bans ----------------------------------------------------------------


def test_requests_while_throttled_are_strikes_then_ban(th: Throttle, clock: FakeClock) -> None:
    th.check("ip", None, 10, 0)
    assert th.check("ip", None, 1, 0).status == 429  # throttled until T0 + 60 s
    clock.now = T0 + 1_000
    assert th.check("ip", None, 0, 0) == refused(429, 59, 10, None, ThrottleReason.IP_WEIGHT)
    clock.now = T0 + 2_000
    assert th.check("ip", None, 0, 0).status == 429  # strike 2
    clock.now = T0 + 3_000
    assert th.check("ip", None, 0, 0) == refused(418, 10, 10, None, ThrottleReason.BANNED)
    clock.now = T0 + 12_999  # requests during the ban do not extend it
    for _ in range(10):
        assert th.check("ip", None, 0, 0) == refused(418, 1, 10, None, ThrottleReason.BANNED)
    clock.now = T0 + 13_000  # ban over, window still exhausted: a fresh 429, not a strike
    assert th.check("ip", None, 1, 0) == refused(429, 47, 10, None, ThrottleReason.IP_WEIGHT)
    assert th.check("ip", None, 0, 0).status == 429
    assert th.check("ip", None, 0, 0).status == 429
    assert th.check("ip", None, 0, 0) == refused(418, 20, 10, None, ThrottleReason.BANNED)


def test_waiting_out_retry_after_resets_strikes(th: Throttle, clock: FakeClock) -> None:
    th.check("ip", "k", 0, 3)
    for _ in range(2):  # a 429 and one strike
        assert th.check("ip", "k", 0, 1).status == 429
    d = th.check("ip", "k", 0, 1)
    assert d.status == 429 and d.retry_after_s is not None  # strike 2 of 3
    clock.now += d.retry_after_s * 1000
    assert th.check("ip", "k", 0, 2).allowed  # served: strikes forgotten (5 orders this minute)
    assert th.check("ip", "k", 0, 1).status == 429
    assert th.check("ip", "k", 0, 1).status == 429
    assert th.check("ip", "k", 0, 1).status == 429  # strike 2 again, not a ban
    assert th.check("ip", "k", 0, 1).status == 418


def test_unkeyed_requests_are_not_hit_by_a_throttled_key(th: Throttle) -> None:
    th.check("ip", "k", 0, 3)
    assert th.check("ip", "k", 0, 1).status == 429
    for _ in range(3):
        assert th.check("ip", None, 1, 0).allowed
        assert th.check("ip", "k2", 0, 1).allowed


def test_a_throttled_key_strikes_from_any_ip_and_bans_ip_and_key(th: Throttle) -> None:
    th.check("ip1", "k", 0, 3)
    assert th.check("ip1", "k", 0, 1).reason == ThrottleReason.ORDER_COUNT_10S
    assert th.check("ip2", "k", 0, 1).reason == ThrottleReason.ORDER_COUNT_10S  # strike 1
    assert th.check("ip3", "k", 0, 1).status == 429  # strike 2
    assert th.check("ip4", "k", 0, 1).status == 418  # strike 3: k and ip4 banned
    assert th.check("ip4", None, 0, 0).status == 418
    assert th.check("ip5", "k", 0, 0).status == 418
    assert th.check("ip1", None, 0, 0).allowed  # ip1 earned nothing
    assert th.check("ip4", "k9", 0, 0).status == 418


def test_an_order_throttled_key_can_still_cancel_and_read(th: Throttle) -> None:
    """Only requests carrying orders are refused (and strike) while the order count is spent:
    cancels and reads pass within the weight budget, without strikes."""
    th.check("ip", "k", 0, 3)
    assert th.check("ip", "k", 1, 1).reason == ThrottleReason.ORDER_COUNT_10S
    for used in range(1, 5):  # more times than strikes_to_ban (3), within the key's weight (6)
        assert th.check("ip", "k", 1, 0) == ok(used, 3)  # a cancel / a read
    assert th.check("ip", "k", 1, 1).status == 429  # strike 1 of 3
    assert th.check("ip", "k", 1, 1).status == 429  # strike 2
    assert th.check("ip", "k", 1, 1).status == 418  # strike 3
    assert th.check("ip", "k", 1, 0).status == 418  # a ban refuses everything


def test_a_throttled_ip_strikes_with_any_key(th: Throttle) -> None:
    th.check("ip", None, 10, 0)
    assert th.check("ip", "a", 1, 0).reason == ThrottleReason.IP_WEIGHT
    assert th.check("ip", "b", 0, 0).reason == ThrottleReason.IP_WEIGHT
    assert th.check("ip", "c", 0, 0).status == 429
    assert th.check("ip", "d", 0, 0).status == 418
    assert th.check("ip2", "d", 0, 0).status == 418  # the key of the banning request
    assert th.check("ip2", "c", 0, 0).allowed


def test_ban_duration_grows_and_is_capped(th: Throttle, clock: FakeClock) -> None:
    got = []
    for _ in range(5):
        d = ban_it(th)
        assert d.retry_after_s is not None
        got.append(d.retry_after_s)
        clock.now += d.retry_after_s * 1000 + 60_000  # wait out the ban and the window
    assert got == [10, 20, 40, 50, 50]
    assert th.ban_duration_ms(0) == 10_000 and th.ban_duration_ms(10**9) == 50_000


def test_ban_memory_decay_restarts_at_base(th: Throttle, clock: FakeClock) -> None:
    clock.now = T0
    assert ban_it(th).retry_after_s == 10  # ban ends at T0 + 10 s
    clock.now = T0 + 60_000
    assert ban_it(th).retry_after_s == 20  # ends at T0 + 80 s
    clock.now = T0 + 120_000  # 40 s after that ban ended: still remembered
    assert ban_it(th).retry_after_s == 40  # ends at T0 + 160 s
    clock.now = T0 + 160_000 + 100_000  # exactly ban_memory_ms after it ended
    assert ban_it(th).retry_after_s == 10


def test_ban_history_is_per_client(th: Throttle, clock: FakeClock) -> None:
    ban_it(th, "ip1")
    clock.now += 60_000
    assert ban_it(th, "ip1").retry_after_s == 20
    assert ban_it(th, "ip2").retry_after_s == 10


def test_key_and_ip_bans_use_their_own_history(th: Throttle, clock: FakeClock) -> None:
    ban_it(th, "ip", None)  # the IP has one ban on record
    clock.now += 60_000
    d = ban_it(th, "ip", "k")  # IP: 20 s, key: 10 s
    assert d.retry_after_s == 20
    clock.now += 10_000
    assert th.check("ip2", "k", 0, 0).allowed
    assert th.check("ip", None, 0, 0).status == 418


# -- live config -----------------------------------------------------------------------------


def test_tighten_live_keeps_counts(th: Throttle) -> None:
    assert th.check("ip", "k", 6, 2) == ok(6, 2)
    th.set_config(replace(SMALL, weight_limit=6, order_limit=2))
    assert th.check("ip", None, 1, 0).reason == ThrottleReason.IP_WEIGHT
    assert th.check("ip2", "k", 0, 1).reason == ThrottleReason.ORDER_COUNT_10S
    assert th.check("ip3", None, 6, 0) == ok(6)


def test_relax_live_serves_and_forgives_throttles(th: Throttle) -> None:
    th.check("ip", None, 10, 0)
    assert th.check("ip", None, 1, 0).status == 429
    assert th.check("ip", None, 1, 0).status == 429  # one strike
    th.set_config(replace(SMALL, weight_limit=20))
    assert th.check("ip", None, 10, 0) == ok(20)  # counts kept: 10 + 10
    assert th.check("ip", None, 1, 0).status == 429


def test_relax_keeps_bans(th: Throttle) -> None:
    ban_it(th)
    th.set_config(replace(SMALL, weight_limit=10**6))
    assert th.check("1.1.1.1", None, 0, 0).status == 418


def test_changed_window_length_runs_old_window_out(th: Throttle, clock: FakeClock) -> None:
    clock.now = T0 + 30_000
    th.check("ip", None, 10, 0)
    th.set_config(replace(SMALL, weight_window_ms=20_000))
    assert th.check("ip", None, 1, 0).retry_after_s == 30  # the old window ends at T0 + 60 s
    clock.now = T0 + 60_000
    assert th.check("ip", None, 10, 0).allowed
    clock.now = T0 + 79_999  # new windows are 20 s long and aligned: T0 + 60 s .. T0 + 80 s
    assert th.check("ip", None, 1, 0).retry_after_s == 1


# -- headers, isolation, memory ----------------------------------------------------------------


def test_headers(th: Throttle, clock: FakeClock) -> None:
    assert th.check("ip", None, 3, 0).headers() == [("X-PB-Used-Weight-1m", "3")]
    assert th.check("ip", "k", 1, 2).headers() == [
        ("X-PB-Used-Weight-1m", "4"),
        ("X-PB-Order-Count-10s", "2"),
    ]
    clock.now = T0 + 500
    assert th.check("ip", "k", 1, 2).headers() == [
        ("X-PB-Used-Weight-1m", "4"),
        ("X-PB-Order-Count-10s", "2"),
        ("Retry-After", "10"),
    ]
    assert ban_it(th, "ip9").headers()[-1] == ("Retry-After", "10")


def test_decision_repr_and_eq() -> None:
    d = Decision(429, 3, 7, None, ThrottleReason.IP_WEIGHT)
    assert d == Decision(429, 3, 7, None, ThrottleReason.IP_WEIGHT) and d != ok(7)
    assert d != (429, 3, 7, None, "IP_WEIGHT") and not d.allowed
    assert "status=429" in repr(d) and "IP_WEIGHT" in repr(d)


def test_ips_and_keys_are_isolated(th: Throttle) -> None:
    th.check("ip1", "k1", 6, 3)
    assert th.check("ip1", "k1", 1, 0).status == 429
    assert th.check("ip2", None, 10, 0) == ok(10)
    assert th.check("ip3", "k2", 6, 3) == ok(6, 3)
    assert th.check("ip1", None, 4, 0) == ok(10)  # ip1 has 4 left; only k1 is throttled


def test_idle_clients_are_swept(clock: FakeClock) -> None:
    th = Throttle(SMALL, now_ms=clock, sweep_every_ms=1_000)
    for i in range(500):
        th.check(f"10.0.{i // 256}.{i % 256}", f"key-{i}", 1, 1)
    ban_it(th, "bad-ip", "bad-key")
    assert th.tracked_clients == 1002
    clock.now = T0 + 60_000  # every window is over; the ban history is still remembered
    th.check("fresh", None, 1, 0)
    assert th.tracked_clients == 3
    clock.now = T0 + 10_000 + 100_000 + 60_000  # ban memory over, "fresh" idle too
    th.check("fresh", None, 1, 0)
    assert th.tracked_clients == 1


def test_sweep_forgets_nothing_that_matters(clock: FakeClock) -> None:
    th = Throttle(SMALL, now_ms=clock, sweep_every_ms=1)
    ban_it(th, "ip")
    clock.now = T0 + 10_000
    th.check("other", None, 0, 0)  # sweeps; "ip" must keep its ban history
    clock.now = T0 + 60_000
    assert ban_it(th, "ip").retry_after_s == 20


def test_reset(th: Throttle) -> None:
    ban_it(th, "ip", "k")
    th.reset()
    assert th.tracked_clients == 0
    assert th.check("ip", "k", 6, 3) == ok(6, 3)


# -- properties ------------------------------------------------------------------------------

_steps = st.lists(
    st.tuples(
        st.integers(0, 7_000),  # clock advance, ms
        st.sampled_from(["a", "b", "c"]),  # ip
        st.sampled_from([None, "k1", "k2"]),  # key
        st.integers(0, 5),  # weight
        st.integers(0, 3),  # orders
    ),
    max_size=150,
)


@given(_steps)
def test_served_load_never_exceeds_any_budget(
    steps: list[tuple[int, str, str | None, int, int]],
) -> None:
    cfg = replace(SMALL, order_window_long_ms=30_000)
    clock = FakeClock(T0 + 1)
    th = Throttle(cfg, now_ms=clock, sweep_every_ms=5_000)
    ip_weight: dict[tuple[str, int], int] = defaultdict(int)
    key_weight: dict[tuple[str, int], int] = defaultdict(int)
    orders_10s: dict[tuple[str, int], int] = defaultdict(int)
    orders_long: dict[tuple[str, int], int] = defaultdict(int)
    for advance, ip, key, weight, orders in steps:
        clock.now += advance
        now = clock.now
        d = th.check(ip, key, weight, orders)
        assert d.status in (200, 429, 418)
        assert (d.retry_after_s is None) == (d.status == 200)
        assert (d.order_count_10s is None) == (key is None)
        if d.status != 200:
            continue
        ip_weight[ip, now // 60_000] += weight
        assert ip_weight[ip, now // 60_000] == d.used_weight <= cfg.weight_limit
        if key is not None:
            key_weight[key, now // 60_000] += weight
            orders_10s[key, now // 10_000] += orders
            orders_long[key, now // 30_000] += orders
            assert key_weight[key, now // 60_000] <= cfg.key_weight_limit
            assert orders_10s[key, now // 10_000] == d.order_count_10s
            assert d.order_count_10s <= cfg.order_limit
            assert orders_long[key, now // 30_000] <= cfg.order_limit_long


@given(_steps)
def test_a_client_that_obeys_retry_after_is_never_banned(
    steps: list[tuple[int, str, str | None, int, int]],
) -> None:
    clock = FakeClock(T0 + 1)
    th = Throttle(SMALL, now_ms=clock)
    for advance, _, key, weight, orders in steps:
        clock.now += advance
        d = th.check("polite", key, weight, orders)
        assert d.status != 418
        if d.retry_after_s is not None:
            clock.now += d.retry_after_s * 1000

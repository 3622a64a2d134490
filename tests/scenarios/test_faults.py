"""Each fault kind fires, only inside its window, and reproducibly with its seed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
import pytest

from sandbox.config import ConfigError, load_config
from sandbox.server.faults import (
    FAULT_CLOSE_CODE,
    FaultPlan,
    FaultSpec,
    FaultSpecModel,
    load_specs,
    spec_from_model,
)
from sandbox.server.hub import Hub
from sandbox.server.throttle import Throttle

from .conftest import Api

M = "BTC-PERP"
SOURCES = ("spot-a", "spot-b", "spot-c")


# -- the plan on its own (fake clock) ---------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


class Host:
    def __init__(self) -> None:
        self.throttle = Throttle(now_ms=lambda: 0)
        self.hub = Hub(heartbeat_s=None)
        self.agents: list[Any] = []

    def fault_agents(self, market: str) -> list[Any]:
        return self.agents


def _plan(specs: list[FaultSpec], seed: int = 7) -> tuple[FaultPlan, Clock]:
    clock = Clock()
    plan = FaultPlan(clock, seed)
    plan.load(Host(), specs)
    return plan, clock


def test_latency_with_jitter_is_seeded_and_windowed() -> None:
    spec = FaultSpec("latency", start_ms=1_000, end_ms=2_000, latency_ms=50, jitter_ms=40)
    runs = []
    for seed in (7, 7, 8):
        plan, clock = _plan([spec], seed)
        assert plan.http("GET", "/v1/markets") is None  # before the window
        clock.now += 1_000
        delays = [plan.http("GET", "/v1/markets") for _ in range(20)]
        assert all(d is not None and 50 <= d.delay_ms <= 90 for d in delays)
        runs.append([d.delay_ms for d in delays if d is not None])
        clock.now += 1_000
        assert plan.http("GET", "/v1/markets") is None  # the window is half-open
        assert plan.fired == [20]
    assert runs[0] == runs[1] != runs[2]
    assert len(set(runs[0])) > 1  # jitter varies


def test_route_and_method_filters() -> None:
    spec = FaultSpec("http_error", route="/v1/orders/*", methods=("DELETE",), status=500)
    plan, _ = _plan([spec])
    assert plan.http("DELETE", "/v1/orders") is None
    assert plan.http("GET", "/v1/orders/12") is None
    hit = plan.http("DELETE", "/v1/orders/12")
    assert hit is not None and hit.status == 500 and hit.kind == "http_error"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "nope"}, "kind"),
        ({"kind": "http_error", "status": 502}, "status"),
        ({"kind": "http_error", "rate": "1.5"}, "rate"),
        ({"kind": "http_error", "rate": "1e-1"}, "plain decimal"),
        ({"kind": "latency", "start_ms": 10, "end_ms": 10}, "end_ms"),
        ({"kind": "stale_index_source", "market": M}, "source"),
        ({"kind": "thin_book", "factor": "0"}, "factor"),
        ({"kind": "tighten_limits", "limits": {"bogus": 1}}, "bogus"),
        ({"kind": "tighten_limits", "limits": {"key_weight_limit": 0}}, "positive"),
    ],
)
def test_specs_are_validated(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_specs([fields])


# -- HTTP faults through the middleware --------------------------------------------------------
async def test_http_error_500_is_marked_as_injected_and_windowed(api_factory: Any) -> None:
    async with api_factory() as api:
        fault = {"kind": "http_error", "status": 500, "route": "/v1/markets"}
        await api.plan([fault | {"start_ms": 1_000, "end_ms": 6_000}])
        assert (await api.http.get("/v1/markets")).status_code == 200  # not yet
        await api.advance(1_000)
        r = await api.http.get("/v1/markets")
        assert r.status_code == 500
        assert r.json()["code"] == "FAULT_INJECTED"
        assert r.json()["details"] == {"fault": "http_error", "status": 500}
        assert (await api.http.get("/v1/time")).status_code == 200  # another route
        await api.advance(5_000)
        assert (await api.http.get("/v1/markets")).status_code == 200  # over
        status = (await api.admin("GET", "/v1/admin/fault-plan")).json()["details"]
        assert status["faults"][0]["fired"] == 1
        assert status["faults"][0]["active"] is False


async def test_http_error_rate_is_reproducible_with_the_seed(api_factory: Any) -> None:
    spec = {"kind": "http_error", "status": 503, "rate": "0.5", "route": "/v1/time"}
    outcomes = []
    for seed in (11, 11, 12):
        async with api_factory() as api:
            await api.plan([spec], seed=seed)
            outcomes.append([(await api.http.get("/v1/time")).status_code for _ in range(30)])
    assert outcomes[0] == outcomes[1] != outcomes[2]
    assert set(outcomes[0]) == {200, 503}


async def test_drop_response_applies_the_order_and_answers_504(api_factory: Any) -> None:
    async with api_factory() as api:
        fault = {"kind": "drop_response", "route": "/v1/orders", "methods": ["POST"]}
        await api.plan([fault | {"hold_ms": 0, "end_ms": 1_000}])
        order = {
            "market": M,
            "side": "BUY",
            "type": "LIMIT",
            "qty": "0.01",
            "price": "59000",
            "client_order_id": "dropped-1",
        }
        r = await api.signed("POST", "/v1/orders", order)
        assert r.status_code == 504
        assert r.json()["code"] == "RESPONSE_DROPPED"
        found = await api.signed("GET", "/v1/orders/by-client-id/dropped-1")
        assert found.status_code == 200  # it was applied: an ambiguous outcome
        assert found.json()["status"] == "NEW"
        await api.advance(1_000)  # the window is over
        r = await api.signed("POST", "/v1/orders", order | {"client_order_id": "kept-2"})
        assert r.status_code == 200
        assert api.state.fault_plan.fired == [1]


async def test_legacy_faults_route_still_works(api_factory: Any) -> None:
    async with api_factory() as api:
        r = await api.admin("POST", "/v1/admin/faults", {"error_rate": "1", "duration_ms": 1000})
        assert r.status_code == 200
        r = await api.http.get("/v1/time")
        assert r.status_code == 503 and r.json()["code"] == "FAULT_INJECTED"


async def test_fault_plan_route_refuses_bad_input(api_factory: Any) -> None:
    async with api_factory() as api:
        bad = [
            {"faults": [{"kind": "bogus"}]},
            {"faults": [{"kind": "http_error", "status": 404}]},
            {"faults": [{"kind": "http_error", "rate": "2"}]},
            {"faults": [{"kind": "latency", "surprise": 1}]},
            {"faults": "x"},
        ]
        for body in bad:
            r = await api.admin("POST", "/v1/admin/fault-plan", body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["code"] == "VALIDATION_ERROR"
        r = await api.admin(
            "POST", "/v1/admin/fault-plan", {"faults": [{"kind": "thin_book", "market": "X"}]}
        )
        assert r.status_code == 404 and r.json()["code"] == "UNKNOWN_MARKET"
        r = await api.http.post("/v1/admin/fault-plan", json={"faults": []})
        assert r.status_code == 401
        assert api.state.fault_plan.specs == ()  # nothing was loaded


# -- index sources -----------------------------------------------------------------------------
async def _pin_all(api: Api, price: str) -> None:
    for source in SOURCES:
        r = await api.admin(
            "POST", "/v1/admin/index-price", {"market": M, "source": source, "price": price}
        )
        assert r.status_code == 200


async def test_stale_sources_degrade_the_index_only_in_the_window(api_factory: Any) -> None:
    async with api_factory() as api:
        await _pin_all(api, "60000")
        await api.advance(1_000)
        faults = [
            {"kind": "stale_index_source", "market": M, "source": s, "end_ms": 30_000}
            for s in ("spot-b", "spot-c")
        ]
        await api.plan(faults)
        prices = api.state.core.exchange.prices
        await api.advance(5_000)
        assert not prices(M).index_degraded  # not stale yet (10 s rule)
        await api.advance(10_000)
        assert prices(M).index_degraded  # fewer than two fresh sources
        await api.advance(20_000)  # window over: updates flow again
        assert not prices(M).index_degraded
        assert all(n > 0 for n in api.state.fault_plan.fired)


@pytest.mark.parametrize(("pct", "moves"), [("1", True), ("10", False)])
async def test_outlier_source_moves_the_index_unless_dropped(
    api_factory: Any, pct: str, moves: bool
) -> None:
    async with api_factory() as api:
        await _pin_all(api, "60000")
        await api.advance(1_000)
        inst = api.state.core.instruments[M]
        base = api.state.core.exchange.prices(M).index
        assert base == inst.price_to_ticks("60000")
        fault = {"kind": "outlier_index_source", "market": M, "source": "spot-b", "pct": pct}
        await api.plan([fault | {"end_ms": 10_000}])
        await api.advance(1_000)
        during = api.state.core.exchange.prices(M).index
        assert (during > base) is moves  # a 1% outlier is inside the 1.5% band: it counts
        await api.advance(10_000)
        assert api.state.core.exchange.prices(M).index == base


# -- the simulated market ----------------------------------------------------------------------
def _depth(api: Api) -> int:
    book = api.state.core.exchange.book_snapshot(M, depth=100)
    return sum(q for _, q in book.bids) + sum(q for _, q in book.asks)


async def test_thin_book_scales_depth_in_the_window(api_factory: Any) -> None:
    async with api_factory(simulate=True) as api:
        await api.advance(10_000)
        before = _depth(api)
        agents = api.state.fault_agents(M)
        sizes = [list(a.sizes) for a in agents]
        await api.plan([{"kind": "thin_book", "market": M, "factor": "0.25", "end_ms": 20_000}])
        await api.advance(10_000)
        during = _depth(api)
        assert during < before * 0.5
        await api.advance(20_000)
        assert [list(a.sizes) for a in agents] == sizes
        assert _depth(api) > before * 0.7


async def test_mark_divergence_moves_mark_not_index(api_factory: Any) -> None:
    async with api_factory(simulate=True) as api:
        await api.advance(60_000)
        prices = api.state.core.exchange.prices

        def gap_bps() -> Decimal:
            p = prices(M)
            return Decimal(p.mark - p.index) / p.index * 10_000

        assert abs(gap_bps()) < 30
        await api.plan([{"kind": "mark_divergence", "market": M, "bps": 150, "end_ms": 90_000}])
        await api.advance(60_000)
        assert gap_bps() > 75
        await api.advance(120_000)
        assert abs(gap_bps()) < 30
        assert all(a.centre_shift_bps == 0 for a in api.state.fault_agents(M))


async def test_tighten_limits_applies_in_the_window_then_restores(api_factory: Any) -> None:
    async with api_factory() as api:
        original = api.state.throttle.config
        await api.plan(
            [{"kind": "tighten_limits", "limits": {"key_weight_limit": 2}, "end_ms": 5_000}]
        )
        assert api.state.throttle.config.key_weight_limit == 2
        codes = [(await api.signed("GET", "/v1/leverage")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        await api.advance(5_000)
        assert api.state.throttle.config == original


# -- WebSocket faults on the hub ---------------------------------------------------------------
class Conn:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, data: str) -> None:
        self.sent.append(orjson.loads(data))

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(orjson.loads(data))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def _drain(conns: list[Conn], done: Callable[[], bool]) -> None:
    for _ in range(200):  # bounded: the writer tasks run between these yields
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("hub did not deliver in time")


async def _ws_run(spec: FaultSpec, seed: int, messages: int = 20) -> tuple[list[int], Conn, Any]:
    host = Host()
    clock = Clock()
    plan = FaultPlan(clock, seed)
    conn = Conn()
    client = host.hub.add_client(conn)
    host.hub.subscribe(client, ["trades:BTC-PERP"])
    plan.load(host, [spec])
    for i in range(messages):
        host.hub.publish("trades:BTC-PERP", {"i": i}, clock.now)
    await _drain([conn], lambda: client.pending == 0)
    seqs = [m["seq"] for m in conn.sent if m.get("channel")]
    await host.hub.stop()
    return seqs, conn, plan


async def test_ws_drop_leaves_seq_gaps_reproducibly() -> None:
    spec = FaultSpec("ws_drop", rate=Fraction(1, 3))
    a, _, plan = await _ws_run(spec, 5)
    b, _, _ = await _ws_run(spec, 5)
    c, _, _ = await _ws_run(spec, 6)
    assert a == b != c
    assert len(a) == 20 - plan.fired[0] and plan.fired[0] > 0
    assert a == sorted(a)  # dropped, not reordered


async def test_ws_reorder_swaps_adjacent_messages() -> None:
    seqs, _, _ = await _ws_run(FaultSpec("ws_reorder"), 1, messages=6)
    assert seqs == [2, 1, 4, 3, 6, 5]


async def test_ws_faults_only_in_their_window() -> None:
    seqs, _, plan = await _ws_run(FaultSpec("ws_drop", start_ms=1_000), 1)
    assert seqs == list(range(1, 21)) and plan.fired == [0]


async def test_ws_disconnect_closes_sockets_with_the_fault_code() -> None:
    host = Host()
    clock = Clock()
    conns = [Conn() for _ in range(4)]
    for conn in conns:
        host.hub.add_client(conn)
    plan = FaultPlan(clock, 1)
    plan.load(host, [FaultSpec("ws_disconnect", start_ms=1_000, end_ms=2_000)])
    assert plan.fired == [0]
    clock.now += 1_000
    plan.on_step()
    await _drain(conns, lambda: all(c.closed for c in conns))
    assert {c.closed[0] for c in conns if c.closed} == {FAULT_CLOSE_CODE}
    assert plan.fired == [1]
    await host.hub.stop()


async def test_ws_disconnect_rate_per_message() -> None:
    spec = FaultSpec("ws_disconnect", fraction=Fraction(0), rate=Fraction(1, 4))
    seqs, conn, plan = await _ws_run(spec, 1)
    assert plan.fired == [2]  # the window opened (closing none), then one message closed it
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < 20
    await _drain([conn], lambda: conn.closed is not None)
    assert conn.closed is not None and conn.closed[0] == FAULT_CLOSE_CODE


# -- configuration -----------------------------------------------------------------------------
def test_toml_faults_section(tmp_path: Any) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[[faults]]\nkind = "http_error"\nstatus = 500\nrate = "0.1"\nroute = "/v1/orders*"\n'
        "start_ms = 60000\nend_ms = 120000\n"
    )
    settings = load_config(good)
    assert settings.faults[0]["kind"] == "http_error"
    spec = spec_from_model(FaultSpecModel.model_validate(settings.faults[0]))
    assert spec.status == 500 and spec.end_ms == 120_000
    bad = tmp_path / "bad.toml"
    bad.write_text('[[faults]]\nkind = "http_error"\nrate = 0.1\n')
    with pytest.raises(ConfigError, match="faults"):
        load_config(bad)


async def test_toml_plan_is_loaded_at_start(api_factory: Any) -> None:
    fault = {"kind": "http_error", "status": 503, "route": "/v1/time", "end_ms": 1_000}
    async with api_factory(faults=(fault,)) as api:
        assert (await api.http.get("/v1/time")).status_code == 503
        await api.advance(1_000)
        assert (await api.http.get("/v1/time")).status_code == 200

"""The live monitor through the API: alerts (REST and WebSocket), bands, cascade, /metrics, the
``bands`` CLI, and the calm-market check."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from perpbot.signing import signed_headers
from sandbox.monitor import cli
from sandbox.monitor.calm import calm_run
from sandbox.monitor.service import MonitorService
from sandbox.server.app import create_app
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState, wall_ms
from tests.server.conftest import ADMIN, Api, FakeWall, make_state

TIMEOUT = 10.0


@pytest.fixture
async def client(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(state, background=False)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        yield http


@pytest.fixture
def wall() -> FakeWall:
    return FakeWall()


@pytest.fixture
def state(wall: FakeWall) -> SandboxState:
    return make_state(wall)


@pytest.fixture
def alice(client: httpx.AsyncClient, wall: FakeWall) -> Api:
    return Api(client, wall, "alice-key", "alice-secret-0123456789")


@pytest.fixture
def bob(client: httpx.AsyncClient, wall: FakeWall) -> Api:
    return Api(client, wall, "bob-key", "bob-secret-0123456789")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    for line in text.splitlines():
        m = re.match(pattern, line)
        if m:
            return float(m.group(1))
    raise AssertionError(f"no sample {name}{{{want}}}")


async def test_leverage_alert_in_rest_with_filters_and_metrics(
    client: httpx.AsyncClient, alice: Api, bob: Api
) -> None:
    assert (await client.get("/v1/alerts")).json() == []
    assert (await alice.post("/v1/leverage/BTC-PERP", {"leverage": 100})).status_code == 200
    assert (await bob.post("/v1/leverage/ETH-PERP", {"leverage": 5})).status_code == 200
    assert (await bob.post("/v1/leverage/ETH-PERP", {"leverage": 20})).status_code == 200
    alerts = (await client.get("/v1/alerts")).json()
    assert [(a["id"], a["account"], a["market"], a["severity"]) for a in alerts] == [
        (2, "bob", "ETH-PERP", "warning"),
        (1, "alice", "BTC-PERP", "warning"),
    ]
    assert alerts[1]["detector"] == "leverage_change"
    assert alerts[1]["values"] == {"leverage": "100", "previous": "20"}
    for query, ids in [
        ("?account=alice", [1]),
        ("?market=ETH-PERP", [2]),
        ("?after_id=1", [2]),
        ("?limit=1", [2]),
        ("?severity=critical", []),
        ("?detector=cancel_burst", []),
        ("?detector=leverage_change&severity=warning", [2, 1]),
    ]:
        got = (await client.get("/v1/alerts" + query)).json()
        assert [a["id"] for a in got] == ids, query
    for bad, status in [
        ("?severity=loud", 422),
        ("?detector=nope", 422),
        ("?limit=0", 422),
        ("?market=NOPE", 404),
    ]:
        r = await client.get("/v1/alerts" + bad)
        assert r.status_code == status and r.json()["code"], bad
    text = (await client.get("/metrics")).text
    assert metric(text, "sandbox_alerts_total", detector="leverage_change", severity="warning") == 2
    assert (
        metric(text, "sandbox_http_requests_total", method="GET", route="/v1/alerts", status="200")
        == 9
    )
    count = metric(
        text,
        "sandbox_http_request_duration_seconds_count",
        method="POST",
        route="/v1/leverage/{market}",
    )
    assert count == 3
    assert metric(text, "sandbox_insurance_fund_usdt", market="BTC-PERP") == 1_000_000


async def _carol(client: httpx.AsyncClient, wall: FakeWall) -> Api:
    """A thinly funded account (1,000 USDT), so its position has a liquidation price."""
    r = await client.post(
        "/v1/admin/accounts",
        json={
            "account": "carol",
            "api_key": "carol-key",
            "api_secret": "carol-secret-0123456789",
            "deposit": "1000",
        },
        headers={"X-PB-ADMIN-TOKEN": ADMIN},
    )
    assert r.status_code == 200, r.text
    return Api(client, wall, "carol-key", "carol-secret-0123456789")


async def test_bands_and_cascade_routes(
    client: httpx.AsyncClient, wall: FakeWall, bob: Api, state: SandboxState
) -> None:
    carol = await _carol(client, wall)
    assert (await carol.post("/v1/leverage/BTC-PERP", {"leverage": 50})).status_code == 200
    r = await bob.order(side="SELL", type="LIMIT", price="60000", qty="0.5")
    assert r.status_code == 200, r.text
    r = await carol.order(side="BUY", type="MARKET", qty="0.5")
    assert r.status_code == 200, r.text
    r = await client.get("/v1/markets/BTC-PERP/liquidation-bands?buckets=20&range=0.1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["positions"], body["long_open"], body["short_open"]) == (2, "0.5", "0.5")
    liq = state.core.exchange.liquidation_price("carol", "BTC-PERP")
    assert liq is not None
    longs = [b for b in body["bands"] if b["long_qty"] != "0"]
    assert len(longs) == 1 and longs[0]["long_accounts"] == 1
    low, high = (int(Decimal(longs[0][k]) * 10) for k in ("low", "high"))  # 0.1 USDT ticks
    assert low <= liq <= high
    # No bids at all: the first bucket at or below the long's liquidation price is short.
    gap = body["long_shortfall"]
    assert gap is not None and gap["forced_qty"] == "0.5" and gap["depth_qty"] == "0"
    text = (await client.get("/metrics")).text
    assert metric(text, "sandbox_open_interest", market="BTC-PERP") == 0.5
    assert metric(text, "sandbox_open_interest_usdt", market="BTC-PERP") == 30_000

    # The live monitor rebuilds the band maps on the next mark update and flags the cluster:
    # ~29,000 USDT of forced sells about 3% under the mark, against no bids at all.
    state.advance(1_000)
    alerts = (await client.get("/v1/alerts?detector=liquidation_cluster")).json()
    assert [(a["market"], a["severity"], a["values"]["side"]) for a in alerts] == [
        ("BTC-PERP", "warning", "long")
    ]
    assert alerts[0]["values"]["depth_lots"] == "0"

    before = state.core.exchange.account_view("carol")
    r = await client.get("/v1/markets/BTC-PERP/cascade?shock=-0.1&seconds=5")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accounts"] == ["carol"] and out["shock"] == "-0.1"
    step = out["steps"][0]
    # No bids: the fund takes the whole position over at the bankruptcy price.
    assert (step["account"], step["qty"], step["takeover_qty"]) == ("carol", "0.5", "0.5")
    assert state.core.exchange.account_view("carol") == before  # a simulation, nothing else
    for bad, code in [
        ("?shock=-0.9", 422),
        ("?shock=abc", 422),
        ("?shock=0.123456789", 422),
        ("?seconds=0", 422),
        ("?beta=9", 422),
    ]:
        r = await client.get("/v1/markets/BTC-PERP/cascade" + bad)
        assert r.status_code == code and r.json()["code"] == "VALIDATION_ERROR", bad
    assert (await client.get("/v1/markets/NOPE/cascade")).status_code == 404
    assert (await client.get("/v1/markets/NOPE/liquidation-bands")).status_code == 404
    r = await client.get("/v1/markets/BTC-PERP/liquidation-bands?range=0")
    assert r.status_code == 422
    assert state.core.exchange.account_view("carol") == before


async def test_rate_limit_violations_alert_and_count(state: SandboxState, wall: FakeWall) -> None:
    app = create_app(state, background=False)
    hammer_ip = httpx.ASGITransport(app=app, client=("10.0.0.8", 1))
    other_ip = httpx.ASGITransport(app=app, client=("10.0.0.9", 1))
    async with (
        httpx.AsyncClient(transport=hammer_ip, base_url="http://sandbox") as hammer,
        httpx.AsyncClient(transport=other_ip, base_url="http://sandbox") as reader,
    ):
        r = await reader.post(
            "/v1/admin/limits",
            json={"weight_limit": 10, "strikes_to_ban": 29},
            headers={"X-PB-ADMIN-TOKEN": ADMIN},
        )
        assert r.status_code == 200
        alice = Api(hammer, wall, "alice-key", "alice-secret-0123456789")
        statuses = [(await alice.get("/v1/time")).status_code for _ in range(40)]
        assert statuses.count(200) == 10 and statuses[10:] == [429] * 29 + [418]
        alerts = (await reader.get("/v1/alerts?detector=rate_limit_violations")).json()
        assert [(a["severity"], a["account"]) for a in alerts] == [
            ("critical", "key:alice-key"),  # the ban
            ("warning", "key:alice-key"),  # the 20th refusal in the bucket
        ]
        text = (await reader.get("/metrics")).text
        assert metric(text, "sandbox_rate_limit_refusals_total", kind="throttled") == 29
        assert metric(text, "sandbox_rate_limit_refusals_total", kind="banned") == 1


async def test_installing_twice_keeps_one_monitor(state: SandboxState) -> None:
    create_app(state, background=False)
    create_app(state, background=False)
    monitors = [s for s in state.core.sinks if isinstance(s, MonitorService)]
    assert len(monitors) == 1


class Wall(FakeWall):
    def __call__(self) -> int:
        return wall_ms()


async def _next(ws: Any, pred: Any) -> dict[str, Any]:
    while True:
        msg = dict(orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))
        if pred(msg):
            return msg


async def test_alerts_stream_and_bands_cli(tmp_path: Path) -> None:
    state = make_state(Wall())
    async with serve(state, background=False) as url:
        ws_url = url.replace("http", "ws", 1) + "/v1/ws"
        async with httpx.AsyncClient(base_url=url) as http, websockets.connect(ws_url) as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "channels": ["alerts:NOPE"]}))
            err = await _next(ws, lambda m: m.get("op") == "error")
            assert err["code"] == "UNKNOWN_CHANNEL"
            await ws.send(
                orjson.dumps({"op": "subscribe", "channels": ["alerts:all", "alerts:BTC-PERP"]})
            )
            await _next(ws, lambda m: m.get("op") == "subscribed")
            body = b'{"leverage":100}'
            path = "/v1/leverage/BTC-PERP"
            headers = signed_headers(
                "alice-key", "alice-secret-0123456789", "POST", path, body, int(time.time() * 1000)
            )
            assert (await http.post(path, content=body, headers=headers)).status_code == 200
            got = [await _next(ws, lambda m: "channel" in m) for _ in range(2)]
            assert sorted(m["channel"] for m in got) == ["alerts:BTC-PERP", "alerts:all"]
            for m in got:
                assert (m["seq"], m["data"]["detector"], m["data"]["account"]) == (
                    1,
                    "leverage_change",
                    "alice",
                )
        out = tmp_path / "charts" / "bands.png"
        code = await asyncio.to_thread(
            cli.main, ["--url", url, "--market", "BTC-PERP", "--out", str(out), "--buckets", "20"]
        )
        assert code == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        bad = await asyncio.to_thread(cli.main, ["--url", url, "--market", "NOPE", "--out", "x"])
        assert bad == 1


def test_calm_market_raises_no_alerts() -> None:
    """Two simulated minutes of the seeded market, mark updates every second: no alert. The
    long measurement (hours, both depth profiles) is the slow test below and docs/monitor.md."""
    report = calm_run(120_000, seed=1)
    assert report.inputs["mark_updates"] == 3 * 120  # every market, every second
    assert report.band_checks == 3 * 12
    assert report.alerts == {}


@pytest.mark.slow
@pytest.mark.parametrize("depth", ["thick", "thin"])
def test_long_calm_run_false_positive_rate(depth: str) -> None:
    report = calm_run(6 * 3_600_000, seed=1, depth=depth)
    assert report.false_positives_per_hour == 0.0

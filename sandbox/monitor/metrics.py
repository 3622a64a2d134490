"""Prometheus metrics for a running sandbox (``GET /metrics``).

Recording is plain integer bookkeeping on the request path (a dict lookup and a few additions);
the Prometheus families are built only when ``/metrics`` is scraped, by a custom collector on a
registry owned by this sandbox (no process-global state). Metric names: docs/monitor.md.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perpbot.risk.margin import MONEY_SCALE

if TYPE_CHECKING:
    from sandbox.server.state import SandboxState

    from .service import MonitorService

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FANOUT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Bucket counts and a sum; cumulative only when exported."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(bound), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


class RouteStats:
    """Answers per status and the latency histogram of one (method, route template)."""

    __slots__ = ("hist", "statuses")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.hist = Histogram(LATENCY_BUCKETS)


class Metrics:
    """Counters fed by the middleware and the event sink; a collector for the rest."""

    def __init__(self, state: SandboxState, service: MonitorService) -> None:
        self.state = state
        self.service = service
        self.routes: dict[tuple[str, str], RouteStats] = {}  # (method, route template)
        self._by_path: dict[tuple[str, str], RouteStats] = {}  # (method, path) -> the same
        self.refused: dict[int, int] = {429: 0, 418: 0}
        self.fanout = Histogram(FANOUT_BUCKETS)
        self.liquidation_steps: dict[str, int] = {}
        self.liquidations_started = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def route_stats(self, method: str, path: str) -> RouteStats:
        """The stats of the route serving ``path`` (cached per path, bounded)."""
        key = (method, path)
        stats = self._by_path.get(key)
        if stats is None:
            route = route_label(method, path)
            stats = self.routes.get((method, route))
            if stats is None:
                stats = self.routes[(method, route)] = RouteStats()
            if len(self._by_path) >= 10_000:
                self._by_path.clear()
            self._by_path[key] = stats
        return stats

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        stats = self._by_path.get((method, path)) or self.route_stats(method, path)
        statuses = stats.statuses
        statuses[status] = statuses.get(status, 0) + 1
        stats.hist.observe(seconds)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return bytes(generate_latest(self.registry))

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state, core = self.state, self.state.core
        exchange = core.exchange
        req = CounterMetricFamily(
            "sandbox_http_requests", "HTTP requests answered", labels=["method", "route", "status"]
        )
        routes = sorted(self.routes.items())
        for (method, route), stats in routes:
            for status, n in sorted(stats.statuses.items()):
                req.add_metric([method, route, str(status)], n)
        yield req
        lat = HistogramMetricFamily(
            "sandbox_http_request_duration_seconds",
            "Time to answer a request, per route",
            labels=["method", "route"],
        )
        for (method, route), stats in routes:
            lat.add_metric([method, route], stats.hist.buckets(), stats.hist.total)
        yield lat
        throttled = CounterMetricFamily(
            "sandbox_rate_limit_refusals", "Requests refused by the rate limits", labels=["kind"]
        )
        throttled.add_metric(["throttled"], self.refused[429])
        throttled.add_metric(["banned"], self.refused[418])
        yield throttled
        yield CounterMetricFamily(
            "sandbox_engine_commands", "Commands applied by the engine", value=core.commands
        )
        clients = list(getattr(state.hub, "_clients", ()))
        pending = [c.pending for c in clients]
        yield GaugeMetricFamily(
            "sandbox_ws_queue_depth",
            "WebSocket messages queued and not yet written, all clients",
            value=sum(pending),
        )
        yield GaugeMetricFamily(
            "sandbox_ws_queue_depth_max",
            "Longest WebSocket client queue",
            value=max(pending, default=0),
        )
        hub_stats = state.hub.stats
        yield GaugeMetricFamily(
            "sandbox_ws_clients", "Connected WebSocket clients", hub_stats.clients
        )
        yield CounterMetricFamily(
            "sandbox_ws_messages_delivered", "Messages queued to clients", value=hub_stats.delivered
        )
        yield CounterMetricFamily(
            "sandbox_ws_slow_consumers_dropped",
            "Clients disconnected as slow consumers",
            value=hub_stats.dropped_slow,
        )
        fan = HistogramMetricFamily(
            "sandbox_event_fanout_seconds",
            "Time to turn one command's events into WebSocket messages",
        )
        fan.add_metric([], self.fanout.buckets(), self.fanout.total)
        yield fan
        oi = GaugeMetricFamily(
            "sandbox_open_interest", "Open interest (base units, one side)", labels=["market"]
        )
        oi_usdt = GaugeMetricFamily(
            "sandbox_open_interest_usdt", "Open interest at the mark (USDT)", labels=["market"]
        )
        fund = GaugeMetricFamily(
            "sandbox_insurance_fund_usdt", "Insurance fund collateral (USDT)", labels=["market"]
        )
        mark = GaugeMetricFamily("sandbox_mark_price", "Mark price", labels=["market"])
        liq = CounterMetricFamily(
            "sandbox_liquidation_steps", "Liquidation steps (LiquidationFill)", labels=["market"]
        )
        for sym, m in exchange.markets.items():
            inst = m.instrument
            lots = 0
            for account_id in m.holders:
                size = exchange.accounts[account_id].positions[sym].size
                if size > 0:
                    lots += size
            oi.add_metric([sym], float(inst.qty_to_decimal(lots)))
            oi_usdt.add_metric([sym], lots * m.mark * m.factor / MONEY_SCALE)
            fund.add_metric([sym], exchange.accounts[m.insurance].collateral / MONEY_SCALE)
            mark.add_metric([sym], float(inst.price_to_decimal(m.mark)))
            liq.add_metric([sym], self.liquidation_steps.get(sym, 0))
        yield oi
        yield oi_usdt
        yield fund
        yield mark
        yield liq
        yield CounterMetricFamily(
            "sandbox_liquidations",
            "Accounts that entered liquidation",
            value=self.liquidations_started,
        )
        alerts = CounterMetricFamily(
            "sandbox_alerts", "Alerts raised", labels=["detector", "severity"]
        )
        for (detector, severity), n in sorted(self.service.alert_counts.items()):
            alerts.add_metric([detector, severity], n)
        yield alerts


class TimedSink:
    """Wraps an event sink (the publisher) to time its fan-out."""

    __slots__ = ("hist", "inner")

    def __init__(self, inner: Callable[[list[Any]], None], hist: Histogram) -> None:
        self.inner = inner
        self.hist = hist

    def __call__(self, events: list[Any]) -> None:
        start = time.perf_counter()
        self.inner(events)
        self.hist.observe(time.perf_counter() - start)


class MetricsMiddleware:
    """Pure ASGI: times every HTTP request and counts it by route template and status.

    Installed outermost, so throttled (429) and banned (418) answers are seen too; refusals
    also feed the rate-limit detector."""

    def __init__(self, app: ASGIApp, service: MonitorService) -> None:
        self.app = app
        self.service = service
        self.metrics = service.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = perf_counter()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.observe_request(
                scope["method"], scope["path"], status, perf_counter() - start
            )
            if status == 429 or status == 418:
                self.metrics.refused[status] += 1
                self.service.request_refused(scope, status)


def route_label(method: str, path: str) -> str:
    """The route template serving ``path`` (a bounded set of labels)."""
    from sandbox.server.app import route_key

    key = route_key(method, path) if path.startswith("/v1/") else None
    return key.split(" ", 1)[1] if key is not None else _other_route(path)


_KNOWN = frozenset(
    {
        "/metrics",
        "/v1/ws",
        "/openapi.json",
        "/docs",
        "/redoc",
        "/v1/admin/accounts",
        "/v1/admin/clock",
        "/v1/admin/index-price",
        "/v1/admin/faults",
        "/v1/admin/fault-plan",
        "/v1/admin/limits",
    }
)


def _other_route(path: str) -> str:
    """A bounded label for routes outside the weights table."""
    if path in _KNOWN:
        return path
    if path.startswith("/v1/admin/accounts/") and path.endswith("/deposit"):
        return "/v1/admin/accounts/{account}/deposit"
    return "other"

"""The live monitor: detectors wired to a running sandbox, its routes and ``/metrics``.

:class:`MonitorService` is an event sink on ``state.core.sinks`` (after the publisher): each
command's events go through the detectors; every ``bands_every_ms`` of exchange time (on a
mark update) the liquidation band maps are rebuilt and checked for clusters; refused requests
(429/418, seen by :class:`~sandbox.monitor.metrics.MetricsMiddleware`) feed the rate-limit
detector with the throttle's wall time. Alerts are kept in a bounded ring (``GET /v1/alerts``)
and published on the WebSocket channels ``alerts:all`` and ``alerts:<MARKET>``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Annotated, Any, Literal, get_args

from fastapi import FastAPI, Path, Query
from starlette.requests import Request
from starlette.responses import Response

from perpbot import models
from perpbot.risk.margin import RATE_SCALE
from sandbox.engine.events import Event, LiquidationFill, LiquidationStarted, PricesUpdated
from sandbox.server.state import SandboxState
from sandbox.server.wire import ApiError

from .alerts import Alert
from .bands import DEFAULT_BUCKETS, bands_json, compute_bands
from .cascade import cascade_json, simulate, take_snapshot
from .detectors import Monitor, MonitorParams
from .metrics import CONTENT_TYPE, Metrics, MetricsMiddleware, TimedSink

ALERT_CHANNEL = "alerts"
REQUOTE = ("mm:",)  # the simulated market makers requote around the shocked index
DetectorName = Literal[
    "cancel_burst",
    "leverage_change",
    "mark_index_divergence",
    "funding_volatility",
    "rate_limit_violations",
    "liquidation_cluster",
]
MarketPath = Annotated[str, Path(max_length=32, description="e.g. BTC-PERP")]
DETECTORS: tuple[str, ...] = get_args(DetectorName)
_DECIMAL = r"^-?(0|[1-9][0-9]{0,2})?(\.[0-9]{1,8})?$"


class MonitorService:
    """Detectors + alert ring + metrics for one sandbox (see the module docstring)."""

    def __init__(
        self,
        state: SandboxState,
        params: MonitorParams | None = None,
        *,
        max_alerts: int = 1_000,
        bands_every_ms: int = 10_000,
    ) -> None:
        self.state = state
        instruments = state.core.instruments
        self.monitor = Monitor(params, {s: i.default_leverage for s, i in instruments.items()})
        self.alerts: deque[tuple[int, Alert]] = deque(maxlen=max_alerts)
        self.alert_counts: dict[tuple[str, str], int] = {}
        self.next_id = 1
        self.bands_every_ms = bands_every_ms
        self.next_bands_ts = 0
        self.metrics = Metrics(state, self)

    # -- inputs ------------------------------------------------------------------------------
    def __call__(self, events: list[Event]) -> None:
        """The event sink."""
        alerts = self.monitor.feed(events)
        bands_ts = None
        metrics = self.metrics
        for ev in events:
            kind = type(ev)
            if kind is LiquidationFill:
                sym = ev.stream  # type: ignore[attr-defined]
                metrics.liquidation_steps[sym] = metrics.liquidation_steps.get(sym, 0) + 1
            elif kind is LiquidationStarted:
                metrics.liquidations_started += 1
            elif kind is PricesUpdated and ev.ts >= self.next_bands_ts:
                bands_ts = ev.ts
        if bands_ts is not None:
            self.next_bands_ts = bands_ts + self.bands_every_ms
            alerts.extend(self.check_bands(bands_ts))
        for alert in alerts:
            self.emit(alert)

    def check_bands(self, ts: int) -> list[Alert]:
        """Rebuild every market's band map and run the cluster detector on it."""
        exchange = self.state.core.exchange
        maps = [compute_bands(exchange, sym, ts) for sym in exchange.markets]
        return self.monitor.check_bands(ts, maps)

    def request_refused(self, scope: Any, status: int) -> None:
        """A 429/418 answer: feed the rate-limit detector (wall time, like the throttle)."""
        key = None
        for k, v in scope["headers"]:
            if k == b"x-pb-apikey":
                key = v.decode("latin-1")[:64]
                break
        if key is not None:
            client = f"key:{key}"
        else:
            peer = scope.get("client")
            client = f"ip:{peer[0] if peer else 'unknown'}"
        for alert in self.monitor.observe_request(self.state.wall_ms(), client, status):
            self.emit(alert)

    # -- outputs -----------------------------------------------------------------------------
    def emit(self, alert: Alert) -> None:
        """Keep, count and publish one alert."""
        alert_id = self.next_id
        self.next_id += 1
        self.alerts.append((alert_id, alert))
        key = (alert.detector, str(alert.severity))
        self.alert_counts[key] = self.alert_counts.get(key, 0) + 1
        data = alert.to_json(alert_id)
        hub = self.state.hub
        hub.publish(f"{ALERT_CHANNEL}:all", data, alert.ts)
        if alert.market is not None:
            hub.publish(f"{ALERT_CHANNEL}:{alert.market}", data, alert.ts)

    def recent(
        self,
        *,
        detector: str | None = None,
        severity: str | None = None,
        market: str | None = None,
        account: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Kept alerts matching the filters, newest first."""
        out: list[dict[str, Any]] = []
        for alert_id, a in reversed(self.alerts):
            if alert_id <= after_id or len(out) >= limit:
                break
            if (
                (detector is None or a.detector == detector)
                and (severity is None or a.severity == severity)
                and (market is None or a.market == market)
                and (account is None or a.account == account)
            ):
                out.append(a.to_json(alert_id))
        return out


def _rate(value: str, what: str, low: Fraction, high: Fraction) -> int:
    """A decimal query value -> rate units, within ``[low, high]``; else 422."""
    try:
        dec = Decimal(value)
    except InvalidOperation:
        dec = Decimal("NaN")
    if not dec.is_finite() or not low <= Fraction(dec) <= high:
        bounds = f"[{float(low):g}, {float(high):g}]"
        raise ApiError(
            422, "VALIDATION_ERROR", f"{what} must be a decimal in {bounds}", {what: value}
        )
    units = Fraction(dec) * RATE_SCALE
    if units.denominator != 1:
        raise ApiError(422, "VALIDATION_ERROR", f"{what} has more than 8 decimals", {what: value})
    return int(units)


def install(app: FastAPI, state: SandboxState) -> MonitorService:
    """Register the monitor on ``state`` (once) and its routes, ``/metrics`` and middleware on
    ``app``. Call after the app's other middleware, so the metrics see every answer."""
    from sandbox.server.routes import PUBLIC_ERRORS, _json

    core = state.core
    service = next((s for s in core.sinks if isinstance(s, MonitorService)), None)
    if service is None:
        service = MonitorService(state)
        sinks = core.sinks
        for i, sink in enumerate(sinks):
            if sink is state.publisher:
                sinks[i] = TimedSink(sink, service.metrics.fanout)
        sinks.append(service)
    app.state.monitor = service
    instruments = core.instruments
    svc = service

    def market_of(market: str) -> str:
        if market not in instruments:
            raise ApiError(
                404, "UNKNOWN_MARKET", f"unknown market {market!r}", {"markets": list(instruments)}
            )
        return market

    @app.get(
        "/v1/alerts",
        response_model=list[models.Alert],
        responses=PUBLIC_ERRORS,
        tags=["monitor"],
        summary="Recent alerts, newest first",
    )
    async def get_alerts(
        detector: DetectorName | None = None,
        severity: Literal["info", "warning", "critical"] | None = None,
        market: Annotated[str | None, Query(max_length=32)] = None,
        account: Annotated[str | None, Query(max_length=80)] = None,
        after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """Alerts kept in memory (the last 1,000), filtered; ``after_id`` returns only newer
        ones (poll with the highest id seen)."""
        if market is not None:
            market_of(market)
        return _json(
            svc.recent(
                detector=detector,
                severity=severity,
                market=market,
                account=account,
                after_id=after_id,
                limit=limit,
            )
        )

    @app.get(
        "/v1/markets/{market}/liquidation-bands",
        response_model=models.LiquidationBands,
        responses=PUBLIC_ERRORS,
        tags=["monitor"],
        summary="Liquidation prices against cumulative book depth",
    )
    async def liquidation_bands(
        market: MarketPath,
        buckets: Annotated[int, Query(ge=2, le=400)] = DEFAULT_BUCKETS,
        range: Annotated[str, Query(max_length=12, pattern=_DECIMAL)] = "0.15",
    ) -> Response:
        """Every trader's position bucketed at its liquidation price over ``mark * (1 +-
        range)``, with the cumulative forced flow and book depth from the mark outward and the
        first price where the flow would exceed the depth (docs/monitor.md)."""
        sym = market_of(market)
        span = _rate(range, "range", Fraction(1, 1000), Fraction(9, 10))
        bands = compute_bands(core.exchange, sym, core.now_ms(), buckets=buckets, range_rate=span)
        return _json(bands_json(instruments[sym], bands))

    @app.get(
        "/v1/markets/{market}/cascade",
        response_model=models.Cascade,
        responses=PUBLIC_ERRORS,
        tags=["monitor"],
        summary="Simulate a liquidation cascade after a price shock",
    )
    async def cascade(
        market: MarketPath,
        shock: Annotated[str, Query(max_length=12, pattern=_DECIMAL)] = "-0.1",
        seconds: Annotated[int, Query(ge=1, le=300)] = 30,
        beta: Annotated[str, Query(max_length=12, pattern=_DECIMAL)] = "0",
    ) -> Response:
        """Move ``market``'s index by ``shock`` (a fraction in [-0.5, 0.5]) and follow the
        liquidations, their forced orders and the mark for ``seconds`` simulated seconds on a
        copy of the exchange; every other market's index follows ``beta`` times the shocked
        market's move, and the simulated market makers' quotes move with their index. Nothing
        changes on the exchange."""
        sym = market_of(market)
        rate = _rate(shock, "shock", Fraction(-1, 2), Fraction(1, 2))
        b = _rate(beta, "beta", Fraction(-2), Fraction(2))
        betas = {s: Fraction(b, RATE_SCALE) for s in instruments if s != sym}
        snap = take_snapshot(core.exchange, core.now_ms())  # a copy, taken on the loop
        # The simulation touches only the copy: run it off the event loop, so a long cascade
        # over many accounts does not stall orders and streams meanwhile.
        result = await asyncio.to_thread(
            simulate, snap, sym, rate, betas=betas, seconds=seconds, requote=REQUOTE
        )
        return _json(cascade_json(instruments, result))

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    app.add_middleware(MetricsMiddleware, service=svc)
    return service

"""Each detector fires on its scenario and stays quiet on ordinary input (synthetic events)."""

from __future__ import annotations

import math

import pytest

from perpbot.risk.margin import RATE_SCALE
from sandbox.engine.events import LeverageChanged, OrderCanceled, PricesUpdated
from sandbox.monitor import Severity
from sandbox.monitor.bands import Bands, Shortfall
from sandbox.monitor.detectors import (
    CancelBurstDetector,
    CancelBurstParams,
    DivergenceDetector,
    FundingVolDetector,
    FundingVolParams,
    LeverageChangeDetector,
    LiquidationClusterDetector,
    Monitor,
    RateLimitDetector,
    RollingBurst,
    realized_vol,
)

T0 = 1_700_000_000_000
BTC = "BTC-PERP"
USDT = 10**8


def cancel(ts: int, account: str = "bot", reason: str = "canceled") -> OrderCanceled:
    return OrderCanceled(ts, BTC, 0, 1, None, account, 1, 600_000, 1, reason)


def prices(ts: int, index: int, mark: int, rate: int = 10_000) -> PricesUpdated:
    return PricesUpdated(ts, BTC, 0, index, mark, mark, rate, T0 + 8 * 3_600_000)


# -- the rolling baseline ----------------------------------------------------------------------
def test_rolling_burst_fires_once_per_bucket_against_the_baseline() -> None:
    rb = RollingBurst(bucket_ms=1_000, alpha=0.5, mult=3.0, min_count=4, cooldown_ms=0)
    # Ten seconds of 4 events a second: the first bucket fires (baseline 0, min 4), then the
    # baseline climbs to ~4 and 4 a second no longer reaches 3 x baseline.
    fired = []
    for s in range(10):
        for i in range(4):
            hit = rb.add("k", T0 + s * 1_000 + i)
            if hit is not None:
                fired.append((s, hit[0]))
    assert fired[0] == (0, 4)
    assert all(s < 3 for s, _ in fired)
    assert rb.baseline("k") == pytest.approx(4 * (1 - 0.5**9), rel=1e-9)
    # A burst of 12 in one second (3 x 4) fires exactly once.
    hits = [rb.add("k", T0 + 10_000 + i) for i in range(20)]
    assert [h for h in hits if h is not None] == [(12, rb.baseline("k"))]
    # Empty seconds decay the baseline: after 10 idle s it is 4 * 0.5^10-ish.
    rb.add("k", T0 + 21_000)
    assert rb.baseline("k") < 0.05


# -- cancels -----------------------------------------------------------------------------------
def test_cancel_burst_fires_per_account_and_per_market() -> None:
    det = CancelBurstDetector(CancelBurstParams(account_min=50, market_min=80))
    alerts = []
    # A steady background: 5 cancels a second from one account for a minute -> quiet.
    for s in range(60):
        for i in range(5):
            alerts += det.observe(cancel(T0 + s * 1_000 + i * 10, "steady"))
    assert alerts == []
    # A bot cancels 60 orders within one second (and steady keeps going: 65 in the market).
    t = T0 + 60_000
    for i in range(60):
        alerts += det.observe(cancel(t + i, "bot"))
    for i in range(25):
        alerts += det.observe(cancel(t + 100 + i, "steady"))
    kinds = [(a.account, a.values["count"]) for a in alerts]
    assert kinds == [("bot", "50"), (None, "80")]
    assert all(a.detector == "cancel_burst" and a.severity is Severity.WARNING for a in alerts)
    assert alerts[0].market == BTC and alerts[0].ts == t + 49


def test_cancel_burst_ignores_expiries_and_liquidation_cancels() -> None:
    det = CancelBurstDetector(CancelBurstParams(account_min=5, market_min=5))
    out = [a for i in range(50) for a in det.observe(cancel(T0 + i, reason="expired"))]
    out += [a for i in range(50) for a in det.observe(cancel(T0 + i, reason="liquidation"))]
    assert out == []


# -- leverage ----------------------------------------------------------------------------------
def test_leverage_detector() -> None:
    det = LeverageChangeDetector(defaults={BTC: 20})

    def lev(ts: int, value: int, account: str = "a") -> list[str]:
        ev = LeverageChanged(ts, BTC, 0, account, value)
        return [a.message for a in det.observe(ev)]

    assert lev(T0, 10) == []  # lowering is ordinary
    assert lev(T0 + 1, 25) == []  # 2.5x: below the jump factor
    assert lev(T0 + 2, 100) == [  # 4x and over the high mark: one alert, the threshold one
        "a raised leverage on BTC-PERP to 100x (from 25x; threshold 50x)"
    ]
    assert lev(T0 + 3, 5, "b") == []
    assert lev(T0 + 4, 20, "b") == ["b multiplied leverage on BTC-PERP by 4.0 (5x -> 20x)"]
    # Flapping: the 11th change within a minute fires once.
    out = [m for i in range(15) for m in lev(T0 + 10 + i, 10 + i % 2, "c")]
    assert out == ["c changed leverage 11 times in 60000 ms"]


# -- mark / index ------------------------------------------------------------------------------
def test_divergence_needs_persistence_and_escalates() -> None:
    det = DivergenceDetector()
    index = 600_000
    # 0.4% for a minute: quiet (below 0.5%).
    out = [a for s in range(60) for a in det.observe(prices(T0 + s * 1_000, index, 602_400))]
    assert out == []
    # 0.6% for 4 s: still quiet; the 5th second warns, once.
    t = T0 + 60_000
    out = [a for s in range(10) for a in det.observe(prices(t + s * 1_000, index, 603_600))]
    assert [(a.severity, a.ts, a.values["gap"]) for a in out] == [
        (Severity.WARNING, t + 5_000, "0.6%")
    ]
    # 2.5% -> critical at once; then calm (under 0.25%) re-arms.
    out = det.observe(prices(t + 11_000, index, 615_000))
    assert [a.severity for a in out] == [Severity.CRITICAL]
    assert det.observe(prices(t + 12_000, index, 600_100)) == []
    out = [a for s in range(7) for a in det.observe(prices(t + 13_000 + s * 1_000, index, 596_000))]
    assert [a.severity for a in out] == [Severity.WARNING]


# -- funding / volatility ----------------------------------------------------------------------
def _walk(n: int, step: float, seed: int) -> list[int]:
    """A deterministic zig-zag index path of relative step size ``step``."""
    out, price = [], 600_000.0
    for i in range(n):
        price *= 1 + step * (1 if (i * 7 + seed) % 3 else -1)
        out.append(round(price))
    return out


def test_funding_volatility_fires_when_funding_drifts_with_volatility() -> None:
    p = FundingVolParams(window_ms=100_000, sample_ms=10_000, drift_rate=20_000, vol_mult=2.0)
    det = FundingVolDetector(p)
    calm = _walk(60, 0.0002, 1)
    out = []
    for i, px in enumerate(calm):  # ten calm minutes, funding flat: quiet
        out += det.observe(prices(T0 + i * 10_000, px, px, 10_000))
    assert out == []
    # Drift alone (funding +0.03% while calm) is not enough.
    drift_only = FundingVolDetector(p)
    for i, px in enumerate(calm):
        out += drift_only.observe(prices(T0 + i * 10_000, px, px, 10_000 + i * 1_000))
    assert out == []
    # Volatility x10 while funding climbs 0.01% per sample: fires once (then cooldown).
    wild = _walk(20, 0.003, 2)
    t = T0 + 600_000
    for i, px in enumerate(wild):
        out += det.observe(prices(t + i * 10_000, px, px, 10_000 + i * 10_000))
    assert len(out) == 1
    alert = out[0]
    assert alert.detector == "funding_volatility" and alert.market == BTC
    assert float(alert.values["realized_vol"]) >= 2 * float(alert.values["baseline_vol"])


def test_realized_vol() -> None:
    assert realized_vol([100, 100]) == 0.0
    ret = math.log(101 / 100)
    vol = realized_vol([100, 101, 100, 101])  # returns +r, -r', +r: population stdev
    rets = [ret, math.log(100 / 101), ret]
    mean = sum(rets) / 3
    assert vol == pytest.approx(math.sqrt(sum((r - mean) ** 2 for r in rets) / 3))


# -- rate limits -------------------------------------------------------------------------------
def test_rate_limit_detector() -> None:
    det = RateLimitDetector()
    out = []
    for i in range(100):  # served requests never count
        out += det.observe(T0 + i, "key:a", 200)
    for i in range(19):  # 19 refusals in a 10 s bucket: under the minimum of 20
        out += det.observe(T0 + i * 100, "key:a", 429)
    assert out == []
    out += det.observe(T0 + 5_000, "key:a", 429)
    assert [(a.account, a.severity) for a in out] == [("key:a", Severity.WARNING)]
    out = det.observe(T0 + 6_000, "key:a", 418)
    assert [(a.severity, a.message) for a in out] == [
        (Severity.CRITICAL, "key:a is banned (kept sending while throttled)")
    ]
    assert det.observe(T0 + 7_000, "key:a", 418) == []  # one ban alert per cooldown


# -- liquidation clusters ----------------------------------------------------------------------
def _bands(gap: Shortfall | None) -> Bands:
    return Bands(BTC, T0, 600_000, 600_000, 1_000, (), gap, None, 3, 3_000, 0)


def test_cluster_detector_severity_by_distance() -> None:
    det = LiquidationClusterDetector()
    pct = RATE_SCALE // 100
    far = Shortfall("long", 540_000, 3_000, 180_000 * USDT, 100, 3, 10 * pct)
    near = Shortfall("long", 576_000, 3_000, 180_000 * USDT, 100, 3, 4 * pct)
    close = Shortfall("long", 594_000, 3_000, 180_000 * USDT, 100, 3, 1 * pct)
    small = Shortfall("long", 594_000, 10, 6_000 * USDT, 1, 1, 1 * pct)
    assert det.evaluate(T0, _bands(None)) == []
    assert det.evaluate(T0, _bands(far)) == []
    assert det.evaluate(T0, _bands(small)) == []  # below min_notional
    assert [a.severity for a in det.evaluate(T0, _bands(near))] == [Severity.WARNING]
    assert det.evaluate(T0 + 1_000, _bands(near)) == []  # cooldown
    assert [a.severity for a in det.evaluate(T0 + 2_000, _bands(close))] == [Severity.CRITICAL]
    assert det.evaluate(T0 + 61_000, _bands(None)) == []


def test_monitor_dispatches_by_event_type() -> None:
    mon = Monitor(default_leverage={BTC: 20})
    events = [
        cancel(T0, reason="expired"),
        prices(T0, 600_000, 600_000),
        LeverageChanged(T0, BTC, 0, "a", 100),
    ]
    assert [a.detector for a in mon.feed(events)] == ["leverage_change"]


def test_detector_names_are_the_routes_filter_values() -> None:
    from sandbox.monitor.service import DETECTORS

    mon = Monitor()
    names = {
        d.name
        for d in (
            mon.cancels,
            mon.leverage,
            mon.divergence,
            mon.funding,
            mon.rate_limits,
            mon.clusters,
        )
    }
    assert names == set(DETECTORS) and len(DETECTORS) == 6

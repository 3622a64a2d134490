"""Anomaly detectors: pure state machines over engine events and observations.

Every detector takes explicit timestamps (simulated ms from the events; the rate-limit detector
is fed the throttle's wall ms) and returns :class:`Alert` values; none reads a clock. Their
parameters are frozen dataclasses whose defaults are documented in docs/monitor.md, together
with the false-positive rate measured on a long calm run of the seeded market.

Statistics (baselines, volatility) are floats: they describe the market, they never move money.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from perpbot.risk.margin import RATE_SCALE
from sandbox.engine.events import Event, LeverageChanged, OrderCanceled, PricesUpdated

from .alerts import Alert, Severity, fmt

if TYPE_CHECKING:
    from .bands import Bands

PCT = RATE_SCALE // 100  # 1% in rate units


def _pct(rate: int) -> str:
    """Rate units as a percentage string."""
    return fmt(rate / PCT) + "%"


# -- a rolling baseline shared by the burst detectors ------------------------------------------
class RollingBurst:
    """Event counts per key in fixed buckets against a rolling baseline.

    The baseline is an exponentially weighted mean of the completed buckets' counts (empty
    buckets count as zero). A key fires once per bucket when its count reaches
    ``max(min_count, mult * baseline)``, and then not again for ``cooldown_ms``. Keys idle for
    ``forget_ms`` are dropped, so memory follows the active keys.
    """

    __slots__ = ("_alpha", "_bucket", "_cooldown", "_forget", "_min", "_mult", "_next_sweep", "_s")

    def __init__(
        self,
        bucket_ms: int,
        alpha: float,
        mult: float,
        min_count: int,
        cooldown_ms: int,
        forget_ms: int = 3_600_000,
    ) -> None:
        if bucket_ms <= 0 or not 0 < alpha <= 1 or mult <= 0 or min_count < 1:
            raise ValueError("need bucket_ms > 0, 0 < alpha <= 1, mult > 0, min_count >= 1")
        self._bucket = bucket_ms
        self._alpha = alpha
        self._mult = mult
        self._min = min_count
        self._cooldown = cooldown_ms
        self._forget = forget_ms
        self._next_sweep = 0
        # key -> [bucket start, count in bucket, baseline, fired in bucket, last fired ts]
        self._s: dict[Hashable, list[float]] = {}

    def baseline(self, key: Hashable) -> float:
        """The key's current baseline (0 for an unseen key)."""
        st = self._s.get(key)
        return 0.0 if st is None else st[2]

    def add(self, key: Hashable, ts: int, n: int = 1) -> tuple[int, float] | None:
        """Count ``n`` events of ``key`` at ``ts``; ``(count, baseline)`` when it fires."""
        bucket = ts - ts % self._bucket
        st = self._s.get(key)
        if st is None:
            st = self._s[key] = [bucket, 0, 0.0, 0, -math.inf]
        elif bucket > st[0]:
            alpha = self._alpha
            base = st[2] * (1 - alpha) + alpha * st[1]
            empty = int(bucket - st[0]) // self._bucket - 1
            if empty > 0:
                base *= (1 - alpha) ** min(empty, 10_000)
            st[0], st[1], st[2], st[3] = bucket, 0, base, 0
        st[1] += n
        if ts >= self._next_sweep:
            self._sweep(ts)
        count, base = int(st[1]), st[2]
        if not st[3] and count >= max(self._min, self._mult * base):
            st[3] = 1
            if ts - st[4] >= self._cooldown:
                st[4] = ts
                return count, base
        return None

    def _sweep(self, now: int) -> None:
        horizon = now - self._forget
        for key in [k for k, st in self._s.items() if st[0] < horizon]:
            del self._s[key]
        self._next_sweep = now + self._forget // 4


# -- cancels -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CancelBurstParams:
    """Owner cancels (reason ``canceled``) per ``bucket_ms`` against the rolling baseline, per
    account and per market."""

    bucket_ms: int = 1_000
    alpha: float = 0.05
    account_mult: float = 8.0
    account_min: int = 50
    market_mult: float = 8.0
    market_min: int = 400
    cooldown_ms: int = 60_000
    reasons: tuple[str, ...] = ("canceled",)


class CancelBurstDetector:
    """Bursts of cancels, per account and per market (quote stuffing, a bot in a loop)."""

    name = "cancel_burst"

    def __init__(self, params: CancelBurstParams | None = None) -> None:
        p = self.params = params or CancelBurstParams()
        self._accounts = RollingBurst(
            p.bucket_ms, p.alpha, p.account_mult, p.account_min, p.cooldown_ms
        )
        self._markets = RollingBurst(
            p.bucket_ms, p.alpha, p.market_mult, p.market_min, p.cooldown_ms
        )

    def observe(self, ev: OrderCanceled) -> list[Alert]:
        if ev.reason not in self.params.reasons:
            return []
        out: list[Alert] = []
        hit = self._accounts.add((ev.account, ev.stream), ev.ts)
        if hit is not None:
            out.append(self._alert(ev, hit, ev.account))
        hit = self._markets.add(ev.stream, ev.ts)
        if hit is not None:
            out.append(self._alert(ev, hit, None))
        return out

    def _alert(self, ev: OrderCanceled, hit: tuple[int, float], account: str | None) -> Alert:
        count, base = hit
        who = f"account {account}" if account else "market"
        return Alert(
            self.name,
            Severity.WARNING,
            ev.ts,
            f"{who} cancelled {count} orders in {self.params.bucket_ms} ms on {ev.stream} "
            f"(baseline {base:.1f})",
            ev.stream,
            account,
            {"count": str(count), "baseline": fmt(base), "bucket_ms": str(self.params.bucket_ms)},
        )


# -- leverage ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LeverageParams:
    """Leverage raised to ``high_leverage`` or more, multiplied by ``jump_factor`` or more in
    one change, or changed more than ``max_changes`` times within ``window_ms``."""

    high_leverage: int = 50
    jump_factor: int = 4
    max_changes: int = 10
    window_ms: int = 60_000


class LeverageChangeDetector:
    """Unusual leverage changes by an account."""

    name = "leverage_change"

    def __init__(
        self, params: LeverageParams | None = None, defaults: Mapping[str, int] | None = None
    ) -> None:
        self.params = params or LeverageParams()
        self._defaults = dict(defaults or {})
        self._last: dict[tuple[str, str], int] = {}
        self._changes: dict[str, deque[int]] = {}

    def observe(self, ev: LeverageChanged) -> list[Alert]:
        p = self.params
        key = (ev.account, ev.stream)
        prev = self._last.get(key, self._defaults.get(ev.stream, 20))
        self._last[key] = ev.leverage
        out: list[Alert] = []
        values = {"leverage": str(ev.leverage), "previous": str(prev)}
        if ev.leverage >= p.high_leverage > prev:
            out.append(
                Alert(
                    self.name,
                    Severity.WARNING,
                    ev.ts,
                    f"{ev.account} raised leverage on {ev.stream} to {ev.leverage}x "
                    f"(from {prev}x; threshold {p.high_leverage}x)",
                    ev.stream,
                    ev.account,
                    values,
                )
            )
        elif ev.leverage >= prev * p.jump_factor:
            out.append(
                Alert(
                    self.name,
                    Severity.WARNING,
                    ev.ts,
                    f"{ev.account} multiplied leverage on {ev.stream} by "
                    f"{ev.leverage / prev:.1f} ({prev}x -> {ev.leverage}x)",
                    ev.stream,
                    ev.account,
                    values,
                )
            )
        recent = self._changes.setdefault(ev.account, deque())
        recent.append(ev.ts)
        while recent and recent[0] <= ev.ts - p.window_ms:
            recent.popleft()
        if len(recent) == p.max_changes + 1:  # fires once as the count crosses the limit
            out.append(
                Alert(
                    self.name,
                    Severity.INFO,
                    ev.ts,
                    f"{ev.account} changed leverage {len(recent)} times in {p.window_ms} ms",
                    ev.stream,
                    ev.account,
                    {"changes": str(len(recent)), "window_ms": str(p.window_ms)},
                )
            )
        return out


# -- mark / index ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DivergenceParams:
    """``|mark - index| / index`` at or above ``warn_rate`` (rate units) for ``persist_ms``
    -> warning; at or above ``critical_rate`` -> critical at once. Re-armed once the gap is
    back under half of ``warn_rate``."""

    warn_rate: int = PCT // 2  # 0.5%
    critical_rate: int = 2 * PCT  # 2%
    persist_ms: int = 5_000


class DivergenceDetector:
    """Mark drifting away from the index (a thin or pushed book dragging the mark)."""

    name = "mark_index_divergence"

    def __init__(self, params: DivergenceParams | None = None) -> None:
        self.params = params or DivergenceParams()
        self._since: dict[str, int] = {}
        self._level: dict[str, int] = {}  # 0 none, 1 warned, 2 critical

    def observe(self, ev: PricesUpdated) -> list[Alert]:
        p = self.params
        sym = ev.stream
        gap = abs(ev.mark - ev.index) * RATE_SCALE // ev.index
        if gap * 2 < p.warn_rate:
            self._since.pop(sym, None)
            self._level.pop(sym, None)
            return []
        if gap < p.warn_rate:
            self._since.pop(sym, None)
            return []
        since = self._since.setdefault(sym, ev.ts)
        level = self._level.get(sym, 0)
        severity: Severity | None = None
        if gap >= p.critical_rate and level < 2:
            severity, self._level[sym] = Severity.CRITICAL, 2
        elif level < 1 and ev.ts - since >= p.persist_ms:
            severity, self._level[sym] = Severity.WARNING, 1
        if severity is None:
            return []
        return [
            Alert(
                self.name,
                severity,
                ev.ts,
                f"{sym} mark {ev.mark} ticks is {_pct(gap)} from index {ev.index} ticks "
                f"for {ev.ts - since} ms",
                sym,
                None,
                {
                    "mark_ticks": str(ev.mark),
                    "index_ticks": str(ev.index),
                    "gap": _pct(gap),
                    "for_ms": str(ev.ts - since),
                },
            )
        ]


# -- funding vs realized volatility ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FundingVolParams:
    """Over a ``window_ms`` window sampled every ``sample_ms``: the predicted funding rate moved
    by ``drift_rate`` (rate units) or more while the index's realized volatility is at least
    ``vol_mult`` times its slow baseline (an EWMA with ``alpha`` per sample)."""

    window_ms: int = 600_000
    sample_ms: int = 10_000
    drift_rate: int = 20_000  # 0.02%
    vol_mult: float = 2.0
    alpha: float = 0.01
    cooldown_ms: int = 600_000


class FundingVolDetector:
    """Funding drifting together with a rise in realized volatility."""

    name = "funding_volatility"

    def __init__(self, params: FundingVolParams | None = None) -> None:
        self.params = params or FundingVolParams()
        self._samples: dict[str, deque[tuple[int, int, int]]] = {}  # (ts, index, rate)
        self._baseline: dict[str, float] = {}
        self._fired: dict[str, int] = {}

    def observe(self, ev: PricesUpdated) -> list[Alert]:
        p = self.params
        sym = ev.stream
        samples = self._samples.setdefault(sym, deque())
        if samples and ev.ts - samples[-1][0] < p.sample_ms:
            return []
        samples.append((ev.ts, ev.index, ev.funding_rate))
        while samples[0][0] < ev.ts - p.window_ms:
            samples.popleft()
        need = p.window_ms // p.sample_ms
        if len(samples) < need:
            return []
        vol = realized_vol([s[1] for s in samples])
        base = self._baseline.get(sym)
        self._baseline[sym] = vol if base is None else base * (1 - p.alpha) + p.alpha * vol
        if base is None or base <= 0:
            return []
        drift = ev.funding_rate - samples[0][2]
        if abs(drift) < p.drift_rate or vol < p.vol_mult * base:
            return []
        if ev.ts - self._fired.get(sym, -(10**18)) < p.cooldown_ms:
            return []
        self._fired[sym] = ev.ts
        return [
            Alert(
                self.name,
                Severity.WARNING,
                ev.ts,
                f"{sym} predicted funding moved {_pct(drift)} in {p.window_ms // 1000} s while "
                f"realized volatility is {vol / base:.1f}x its baseline",
                sym,
                None,
                {
                    "funding_rate": _pct(ev.funding_rate),
                    "drift": _pct(drift),
                    "realized_vol": fmt(vol),
                    "baseline_vol": fmt(base),
                },
            )
        ]


def realized_vol(prices: Sequence[int]) -> float:
    """Standard deviation of the log returns of ``prices`` (0 with fewer than 3 prices)."""
    if len(prices) < 3:
        return 0.0
    rets = [math.log(b / a) for a, b in itertools.pairwise(prices) if a > 0 and b > 0]
    mean = sum(rets) / len(rets)
    return math.sqrt(sum((r - mean) ** 2 for r in rets) / len(rets))


# -- rate limits -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RateLimitParams:
    """Refused requests (429 and 418) per ``bucket_ms`` against the rolling baseline, per
    client (API key, else IP) and in total; a client's first ban is an alert of its own."""

    bucket_ms: int = 10_000
    alpha: float = 0.1
    client_mult: float = 3.0
    client_min: int = 20
    total_mult: float = 3.0
    total_min: int = 50
    cooldown_ms: int = 60_000


class RateLimitDetector:
    """Rising rate-limit violations (a misbehaving client, or an exchange-wide overload)."""

    name = "rate_limit_violations"

    def __init__(self, params: RateLimitParams | None = None) -> None:
        p = self.params = params or RateLimitParams()
        self._clients = RollingBurst(
            p.bucket_ms, p.alpha, p.client_mult, p.client_min, p.cooldown_ms
        )
        self._total = RollingBurst(p.bucket_ms, p.alpha, p.total_mult, p.total_min, p.cooldown_ms)
        self._banned: dict[str, int] = {}

    def observe(self, ts: int, client: str, status: int) -> list[Alert]:
        """One answered request of ``client`` (``key:<api key>`` or ``ip:<address>``)."""
        if status not in (418, 429):
            return []
        p = self.params
        out: list[Alert] = []
        if status == 418 and ts - self._banned.get(client, -(10**18)) >= p.cooldown_ms:
            self._banned[client] = ts
            if len(self._banned) > 10_000:
                self._banned.clear()
            out.append(
                Alert(
                    self.name,
                    Severity.CRITICAL,
                    ts,
                    f"{client} is banned (kept sending while throttled)",
                    None,
                    client,
                    {"status": "418"},
                )
            )
        for hit, who in (
            (self._clients.add(client, ts), client),
            (self._total.add("*", ts), None),
        ):
            if hit is not None:
                count, base = hit
                out.append(
                    Alert(
                        self.name,
                        Severity.WARNING,
                        ts,
                        f"{who or 'all clients'}: {count} refused requests in {p.bucket_ms} ms "
                        f"(baseline {base:.1f})",
                        None,
                        who,
                        {"count": str(count), "baseline": fmt(base)},
                    )
                )
        return out


# -- liquidation clusters ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClusterParams:
    """Liquidation flow that would exceed the book's depth within ``near_rate`` of the mark
    -> warning; within ``critical_rate`` -> critical. Positions below ``min_notional`` (money
    units) in total are ignored."""

    near_rate: int = 5 * PCT
    critical_rate: int = 2 * PCT
    min_notional: int = 10_000 * 10**8  # 10,000 USDT
    cooldown_ms: int = 60_000


class LiquidationClusterDetector:
    """Liquidation prices clustering where the book is too thin to absorb the forced flow."""

    name = "liquidation_cluster"

    def __init__(self, params: ClusterParams | None = None) -> None:
        self.params = params or ClusterParams()
        self._fired: dict[tuple[str, str], tuple[int, Severity]] = {}

    def evaluate(self, ts: int, bands: Bands) -> list[Alert]:
        p = self.params
        out: list[Alert] = []
        for side in ("long", "short"):
            gap = bands.shortfall(side)
            key = (bands.market, side)
            if gap is None or gap.forced_notional < p.min_notional or gap.distance > p.near_rate:
                self._fired.pop(key, None)
                continue
            severity = Severity.CRITICAL if gap.distance <= p.critical_rate else Severity.WARNING
            last = self._fired.get(key)
            if last is not None and ts - last[0] < p.cooldown_ms and last[1] == severity:
                continue
            self._fired[key] = (ts, severity)
            flow = "sell" if side == "long" else "buy"
            out.append(
                Alert(
                    self.name,
                    severity,
                    ts,
                    f"{bands.market}: {side} liquidations down to {gap.price} ticks would force "
                    f"{flow}s of {gap.forced_qty} lots against {gap.depth_qty} lots of depth, "
                    f"{_pct(gap.distance)} from the mark",
                    bands.market,
                    None,
                    {
                        "side": side,
                        "price_ticks": str(gap.price),
                        "forced_lots": str(gap.forced_qty),
                        "depth_lots": str(gap.depth_qty),
                        "distance": _pct(gap.distance),
                        "accounts": str(gap.accounts),
                    },
                )
            )
        return out


# -- all of them -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MonitorParams:
    """Every detector's parameters (defaults in docs/monitor.md)."""

    cancels: CancelBurstParams = field(default_factory=CancelBurstParams)
    leverage: LeverageParams = field(default_factory=LeverageParams)
    divergence: DivergenceParams = field(default_factory=DivergenceParams)
    funding: FundingVolParams = field(default_factory=FundingVolParams)
    rate_limits: RateLimitParams = field(default_factory=RateLimitParams)
    clusters: ClusterParams = field(default_factory=ClusterParams)


class Monitor:
    """The detectors together: feed it each command's events, requests and band maps."""

    def __init__(
        self,
        params: MonitorParams | None = None,
        default_leverage: Mapping[str, int] | None = None,
    ) -> None:
        p = self.params = params or MonitorParams()
        self.cancels = CancelBurstDetector(p.cancels)
        self.leverage = LeverageChangeDetector(p.leverage, default_leverage)
        self.divergence = DivergenceDetector(p.divergence)
        self.funding = FundingVolDetector(p.funding)
        self.rate_limits = RateLimitDetector(p.rate_limits)
        self.clusters = LiquidationClusterDetector(p.clusters)

    def feed(self, events: Iterable[Event]) -> list[Alert]:
        """Alerts raised by one command's events."""
        out: list[Alert] = []
        for ev in events:
            kind = type(ev)
            if kind is OrderCanceled:
                assert isinstance(ev, OrderCanceled)
                if ev.reason in self.cancels.params.reasons:
                    out.extend(self.cancels.observe(ev))
            elif kind is PricesUpdated:
                assert isinstance(ev, PricesUpdated)
                out.extend(self.divergence.observe(ev))
                out.extend(self.funding.observe(ev))
            elif kind is LeverageChanged:
                assert isinstance(ev, LeverageChanged)
                out.extend(self.leverage.observe(ev))
        return out

    def observe_request(self, ts: int, client: str, status: int) -> list[Alert]:
        """Alerts raised by one answered request (only refusals count)."""
        return self.rate_limits.observe(ts, client, status)

    def check_bands(self, ts: int, bands: Iterable[Bands]) -> list[Alert]:
        """Alerts raised by the current liquidation band maps."""
        out: list[Alert] = []
        for b in bands:
            out.extend(self.clusters.evaluate(ts, b))
        return out

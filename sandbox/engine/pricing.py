"""Index and mark price calculators: pure, deterministic, integer-exact.

Units follow the rest of the engine: prices are ``int`` ticks, rates and bands are ``int`` units
of 1e-8 (:data:`~perpbot.risk.margin.RATE_SCALE` = 100%), times are ``int`` milliseconds supplied
by the caller. Nothing here reads a clock or uses floats; every division rounds by a stated rule.

Rounding rules (see ``docs/mechanics.md``):

* index: exact weighted mean, rounded to the nearest tick, ties to even;
* mark: P1 and the basis moving average are each rounded to the nearest tick, ties to even; the
  median of whole ticks needs no rounding; the optional clamp bounds round *inward*
  (lower bound up, upper bound down) so the mark never leaves the band.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from perpbot.risk.margin import RATE_SCALE, ceil_div

__all__ = [
    "MISSING",
    "OUTLIER",
    "STALE",
    "IndexCalculator",
    "IndexConfig",
    "IndexResult",
    "MarkCalculator",
    "MarkConfig",
    "MarkMethod",
    "div_round_half_even",
    "funding_price",
    "median3",
    "mid_ticks",
]

STALE = "stale"
"""Exclusion reason: the source's last update is more than ``stale_after_ms`` old."""
OUTLIER = "outlier"
"""Exclusion reason: too far from the median of the other remaining sources."""
MISSING = "missing"
"""Exclusion reason: the source has never reported a price."""

MarkMethod = Literal["median", "fair_price"]


def div_round_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, ties to even.

    ``denominator`` must be positive; ``numerator`` may have any sign.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, rest = divmod(numerator, denominator)  # floor division, 0 <= rest < denominator
    twice = 2 * rest
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def median3(a: int, b: int, c: int) -> int:
    """The middle value of three integers."""
    return max(min(a, b), min(max(a, b), c))


def mid_ticks(best_bid: int | None, best_ask: int | None) -> int | None:
    """Book mid ``(bid + ask) / 2`` in ticks, ties to even; ``None`` if either side is empty."""
    if best_bid is None or best_ask is None:
        return None
    return div_round_half_even(best_bid + best_ask, 2)


def _twice_median(values: list[int]) -> int:
    """Two times the median of a non-empty list (an integer even for an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    if n % 2:
        return 2 * ordered[n // 2]
    return ordered[n // 2 - 1] + ordered[n // 2]


# --------------------------------------------------------------------------------------------
# Index


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """Index parameters.

    ``weights`` maps each source name to a positive integer weight (relative; they need not sum
    to anything). ``stale_after_ms``: a source older than this is dropped. ``outlier_band``: the
    largest allowed relative distance (rate units) from the median of the other sources.
    """

    weights: Mapping[str, int]
    stale_after_ms: int = 10_000
    outlier_band: int = 1_500_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))
        if not self.weights:
            raise ValueError("an index needs at least one source")
        for name, weight in self.weights.items():
            if weight <= 0:
                raise ValueError(f"source {name!r}: weight must be a positive integer")
        if self.stale_after_ms < 0:
            raise ValueError("stale_after_ms must be >= 0")
        if self.outlier_band < 0:
            raise ValueError("outlier_band must be >= 0")


@dataclass(frozen=True, slots=True)
class IndexResult:
    """One index computation.

    ``price`` is the index in ticks. When ``degraded`` it is the previous valid index (held),
    or ``None`` if no valid index has ever been computed. ``used`` lists, in configuration
    order, the sources that passed both checks (when ``degraded`` they were too few and did
    not set the price). ``excluded`` lists ``(source, reason)`` pairs, reason being
    :data:`MISSING`, :data:`STALE` or :data:`OUTLIER`.
    """

    price: int | None
    degraded: bool
    used: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]


class IndexCalculator:
    """Weighted mean of spot sources, after dropping stale and outlying ones.

    Rules, applied at :meth:`compute` time ``now``:

    1. a source with no update yet is excluded as :data:`MISSING`; one whose last update is
       older than ``now - stale_after_ms`` (age strictly greater) as :data:`STALE`;
    2. among the fresh sources, each one's deviation ``|p - m| / m`` from the median ``m`` of
       the *other* remaining sources is computed exactly; if the largest deviation exceeds
       ``outlier_band`` that single source (first in configuration order on a tie) is excluded
       as :data:`OUTLIER`, and the check repeats on the rest. Removing one source at a time
       means a single wild source among three never drags the good two out with it;
    3. with at least two sources left, the index is ``sum(w*p) / sum(w)`` over them (weights
       renormalised implicitly), rounded to the nearest tick, ties to even; otherwise the
       previous index is held and the result is ``degraded``.
    """

    __slots__ = ("_config", "_last_index", "_quotes")

    def __init__(self, config: IndexConfig) -> None:
        self._config = config
        self._quotes: dict[str, tuple[int, int]] = {}
        self._last_index: int | None = None

    @property
    def config(self) -> IndexConfig:
        """The parameters this calculator was built with."""
        return self._config

    @property
    def last_index(self) -> int | None:
        """The most recent valid (non-degraded) index, or ``None`` before the first one."""
        return self._last_index

    def update_source(self, name: str, price_ticks: int, ts_ms: int) -> bool:
        """Record a source's price at ``ts_ms``.

        Returns ``False`` (and keeps the held quote) if ``ts_ms`` is older than the quote already
        held for that source. Raises ``KeyError`` for an unknown source and ``ValueError`` for a
        non-positive price.
        """
        if name not in self._config.weights:
            raise KeyError(f"unknown index source {name!r}")
        if price_ticks <= 0:
            raise ValueError(f"source {name!r}: price must be positive, got {price_ticks}")
        held = self._quotes.get(name)
        if held is not None and ts_ms < held[1]:
            return False
        self._quotes[name] = (price_ticks, ts_ms)
        return True

    def compute(self, now_ms: int) -> IndexResult:
        """Apply the staleness and outlier rules at ``now_ms`` and return the index."""
        cfg = self._config
        excluded: list[tuple[str, str]] = []
        fresh: list[str] = []
        for name in cfg.weights:
            quote = self._quotes.get(name)
            if quote is None:
                excluded.append((name, MISSING))
            elif now_ms - quote[1] > cfg.stale_after_ms:
                excluded.append((name, STALE))
            else:
                fresh.append(name)

        outliers = self._drop_outliers(fresh)
        excluded.extend((name, OUTLIER) for name in outliers)
        used = tuple(name for name in fresh if name not in outliers)
        order = {name: i for i, name in enumerate(cfg.weights)}
        excluded.sort(key=lambda item: order[item[0]])

        if len(used) < 2:
            return IndexResult(self._last_index, True, used, tuple(excluded))
        weight_sum = sum(cfg.weights[name] for name in used)
        weighted = sum(cfg.weights[name] * self._quotes[name][0] for name in used)
        price = div_round_half_even(weighted, weight_sum)
        self._last_index = price
        return IndexResult(price, False, used, tuple(excluded))

    def _drop_outliers(self, names: list[str]) -> list[str]:
        """Names removed by the iterative outlier rule, in the order they were removed."""
        band = self._config.outlier_band
        remaining = list(names)
        removed: list[str] = []
        while len(remaining) >= 2:
            prices = [self._quotes[name][0] for name in remaining]
            worst: int | None = None
            worst_dev = (0, 1)  # deviation as an exact fraction num/den
            for i, price in enumerate(prices):
                twice_m = _twice_median(prices[:i] + prices[i + 1 :])
                num, den = abs(2 * price - twice_m), twice_m
                # outside the band: num/den > band/RATE_SCALE
                if num * RATE_SCALE > band * den and num * worst_dev[1] > worst_dev[0] * den:
                    worst, worst_dev = i, (num, den)
            if worst is None:
                break
            removed.append(remaining.pop(worst))
        return removed


# --------------------------------------------------------------------------------------------
# Mark


@dataclass(frozen=True, slots=True)
class MarkConfig:
    """Mark price parameters.

    ``method``: ``"median"`` (median of P1, P2 and last) or ``"fair_price"`` (P1 alone).
    ``basis_window_ms``: span of the basis moving average; ``basis_sample_ms``: minimum spacing
    between basis samples; ``clamp_band`` (rate units): if set, the mark is kept within
    ``index * (1 ± clamp_band)``; ``None`` disables the clamp.
    """

    method: MarkMethod = "median"
    basis_window_ms: int = 30_000
    basis_sample_ms: int = 1_000
    clamp_band: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ("median", "fair_price"):
            raise ValueError(f"unknown mark method {self.method!r}")
        if self.basis_window_ms <= 0 or self.basis_sample_ms <= 0:
            raise ValueError("basis window and sample spacing must be positive")
        if self.clamp_band is not None and not 0 <= self.clamp_band < RATE_SCALE:
            raise ValueError("clamp_band must be in [0, RATE_SCALE)")

    def __deepcopy__(self, memo: dict[int, object]) -> MarkConfig:
        return self  # immutable (and a compiled frozen dataclass cannot be rebuilt field by field)


class MarkCalculator:
    """Mark price from the index, a funding-basis term, a book-basis average and last price.

    * ``P1 = index * (1 + rate * ms_to_next / interval)``, rounded to the nearest tick (ties to
      even);
    * ``P2 = index + MA_basis`` where ``MA_basis`` is the mean of the ``(mid - index)`` samples
      in the window, rounded to the nearest tick (ties to even); 0 with no samples;
    * ``"median"``: ``mark = median(P1, P2, last)``, with ``index`` standing in for ``last``
      before the first trade; ``"fair_price"``: ``mark = P1``;
    * optional clamp to ``[ceil(index*(1-band)), floor(index*(1+band))]``.
    """

    __slots__ = ("_basis_total", "_config", "_last_sample_ts", "_samples")

    def __init__(self, config: MarkConfig | None = None) -> None:
        self._config = config if config is not None else MarkConfig()
        self._samples: deque[tuple[int, int]] = deque()  # (ts_ms, basis_ticks), oldest first
        self._basis_total = 0
        self._last_sample_ts: int | None = None

    @property
    def config(self) -> MarkConfig:
        """The parameters this calculator was built with."""
        return self._config

    @property
    def sample_count(self) -> int:
        """Number of basis samples currently in the window."""
        return len(self._samples)

    def basis_samples(self) -> tuple[tuple[int, int], ...]:
        """The ``(ts_ms, basis_ticks)`` samples in the window, oldest first."""
        return tuple(self._samples)

    def sample_basis(self, mid_ticks: int | None, index_ticks: int, ts_ms: int) -> bool:
        """Offer a basis sample ``mid - index`` taken at ``ts_ms``; return whether it was kept.

        A sample is kept only if ``basis_sample_ms`` or more have passed since the last kept
        sample (the first one is always kept). ``mid_ticks`` ``None`` (one-sided or empty book)
        repeats the previous sample's basis; with no previous sample there is nothing to carry
        and nothing is kept. The window then drops samples with ``ts <= ts_ms - basis_window_ms``.
        """
        cfg = self._config
        last = self._last_sample_ts
        if last is not None and ts_ms - last < cfg.basis_sample_ms:
            return False
        samples = self._samples
        if mid_ticks is not None:
            basis = mid_ticks - index_ticks
        elif samples:
            basis = samples[-1][1]
        else:
            return False
        samples.append((ts_ms, basis))
        self._basis_total += basis
        self._last_sample_ts = ts_ms
        horizon = ts_ms - cfg.basis_window_ms
        while samples[0][0] <= horizon:
            self._basis_total -= samples.popleft()[1]
        return True

    def ma_basis(self) -> int:
        """Mean basis over the window in ticks, ties to even; 0 if there are no samples."""
        n = len(self._samples)
        return div_round_half_even(self._basis_total, n) if n else 0

    def compute(
        self,
        index: int,
        last_price: int | None,
        funding_rate: int,
        ms_to_next_funding: int,
        funding_interval_ms: int,
    ) -> int:
        """The mark price in ticks (see the class docstring for the formulas)."""
        if index <= 0:
            raise ValueError("index must be positive")
        if funding_interval_ms <= 0 or ms_to_next_funding < 0:
            raise ValueError("need funding_interval_ms > 0 and ms_to_next_funding >= 0")
        p1 = funding_price(index, funding_rate, ms_to_next_funding, funding_interval_ms)
        if self._config.method == "fair_price":
            mark = p1
        else:
            p2 = index + self.ma_basis()
            mark = median3(p1, p2, index if last_price is None else last_price)
        band = self._config.clamp_band
        if band is not None:
            low = ceil_div(index * (RATE_SCALE - band), RATE_SCALE)
            high = (index * (RATE_SCALE + band)) // RATE_SCALE
            mark = min(max(mark, low), high)
        return mark


def funding_price(index: int, rate: int, ms_to_next: int, interval_ms: int) -> int:
    """``index * (1 + rate * ms_to_next / interval_ms)`` in ticks, nearest tick, ties to even."""
    numerator = index * (RATE_SCALE * interval_ms + rate * ms_to_next)
    return div_round_half_even(numerator, RATE_SCALE * interval_ms)

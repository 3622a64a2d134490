"""Funding: impact prices, premium index, the funding rate and zero-sum settlement.

Pure and integer-exact like the rest of the engine: prices in ``int`` ticks, quantities in
``int`` lots, money in ``int`` units of 1e-8 USDT, rates in ``int`` units of 1e-8
(:data:`~perpbot.risk.margin.RATE_SCALE` = 100%), times in ``int`` milliseconds from the caller.
A position of ``q`` lots at ``p`` ticks has notional ``p * q * notional_factor`` money units
(:attr:`sandbox.engine.instruments.Instrument.notional_factor`).

Rounding rules (see ``docs/mechanics.md``):

* impact price: exact average, rounded toward the deepest level used (never better than exact);
* premium and the interval's average premium: truncated toward zero;
* payments: every account's amount ``size * mark * rate`` is rounded toward +infinity - payers
  pay the fraction, receivers lose it - and the surplus (the residue) goes to the insurance fund.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from perpbot.risk.margin import MONEY_SCALE, RATE_SCALE, ceil_div

__all__ = [
    "DEFAULT_IMPACT_MARGIN",
    "FundingCalculator",
    "FundingConfig",
    "div_toward_zero",
    "funding_payments",
    "impact_notional",
    "impact_price",
    "premium_index",
]

HOUR_MS = 3_600_000
DEFAULT_IMPACT_MARGIN = 200 * MONEY_SCALE
"""Margin (money units) behind the default impact notional: 200 USDT."""


def div_toward_zero(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` truncated toward zero (``denominator`` > 0)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


def impact_notional(max_leverage: int, margin: int = DEFAULT_IMPACT_MARGIN) -> int:
    """Impact notional in money units: ``margin / initial-margin-rate at max leverage``.

    That is ``margin * max_leverage``; 200 USDT at 125x gives 25,000 USDT.
    """
    if max_leverage < 1 or margin <= 0:
        raise ValueError("need max_leverage >= 1 and margin > 0")
    return margin * max_leverage


def impact_price(
    levels: Sequence[tuple[int, int]], impact_notional_units: int, notional_factor: int
) -> int | None:
    """Average fill price (ticks) of a market order worth ``impact_notional_units``.

    ``levels`` is one side of the book best-first as ``(price_ticks, qty_lots)`` (bids
    descending, asks ascending). Levels are consumed whole until the last one needed, which is
    consumed only for the notional still missing (a fractional number of lots). The exact
    average ``notional / quantity`` lies between the best and the deepest level used and is
    rounded toward the deepest one - down for bids, up for asks - so rounding never improves it.
    Returns ``None`` if the whole side is worth less than the impact notional.
    """
    if impact_notional_units <= 0 or notional_factor <= 0:
        raise ValueError("impact notional and notional_factor must be positive")
    direction = 0
    prev: int | None = None
    for price, qty in levels:
        if price <= 0 or qty <= 0:
            raise ValueError(f"invalid level {(price, qty)}: price and qty must be positive")
        if prev is not None:
            step = (price > prev) - (price < prev)
            if step == 0 or (direction and step != direction):
                raise ValueError("levels must be strictly monotone, best first")
            direction = step
        prev = price

    filled_lots = 0  # whole levels consumed before the last one
    spent = 0  # their notional, money units
    for price, qty in levels:
        level_notional = price * qty * notional_factor
        if spent + level_notional < impact_notional_units:
            filled_lots += qty
            spent += level_notional
            continue
        # Last level: it supplies (impact - spent) of notional, i.e. that / (price * nf) lots.
        # average = impact / (nf * (filled_lots + rest / (price * nf)))
        #         = impact * price / (nf * price * filled_lots + rest)
        rest = impact_notional_units - spent
        numerator = impact_notional_units * price
        denominator = notional_factor * price * filled_lots + rest
        if price >= levels[0][0]:  # deepest used vs best: asks (or one level, exact): round up
            return ceil_div(numerator, denominator)
        return numerator // denominator  # bids: round down
    return None


def premium_index(impact_bid: int, impact_ask: int, index: int) -> int:
    """Premium in rate units: ``(max(0, bid - index) - max(0, index - ask)) / index``.

    Truncated toward zero. Positive when buyers pay above the index, negative when sellers
    accept below it, zero while the index lies between the impact prices.
    """
    if index <= 0:
        raise ValueError("index must be positive")
    spread = max(0, impact_bid - index) - max(0, index - impact_ask)
    return div_toward_zero(spread * RATE_SCALE, index)


@dataclass(frozen=True, slots=True)
class FundingConfig:
    """Funding parameters; rates in rate units, all *per funding interval*.

    Defaults: 8 h interval, one premium sample per minute, interest 0.01%, damper (clamp)
    ±0.05%, cap ±0.30% (0.75 x the 0.40% tier-1 maintenance rate). For a shorter interval
    scale ``interest_rate`` and ``cap`` by ``interval / 8h`` yourself.
    """

    interval_ms: int = 8 * HOUR_MS
    sample_interval_ms: int = 60_000
    interest_rate: int = 10_000
    clamp: int = 50_000
    cap: int = 300_000

    def __post_init__(self) -> None:
        if self.interval_ms <= 0 or self.sample_interval_ms <= 0:
            raise ValueError("interval_ms and sample_interval_ms must be positive")
        if self.clamp < 0 or self.cap < 0:
            raise ValueError("clamp and cap must be >= 0")


class FundingCalculator:
    """Collects premium samples over one funding interval and derives the rate.

    ``P`` is the plain mean of the samples kept since the last settlement, truncated toward
    zero (0 with no samples). Samples are kept at most once per ``sample_interval_ms``, so on
    a regular one-per-minute schedule each sample stands for the same span of time and the
    plain mean is the time-weighted mean. The rate is
    ``P + clamp(interest - P, -clamp, +clamp)`` limited to ``[-cap, +cap]``.
    """

    __slots__ = ("_config", "_count", "_last_rate", "_last_sample_ts", "_last_settle_ms", "_sum")

    def __init__(self, config: FundingConfig | None = None) -> None:
        self._config = config if config is not None else FundingConfig()
        self._sum = 0
        self._count = 0
        self._last_sample_ts: int | None = None
        self._last_settle_ms: int | None = None
        self._last_rate = 0

    @property
    def config(self) -> FundingConfig:
        """The parameters this calculator was built with."""
        return self._config

    @property
    def sample_count(self) -> int:
        """Premium samples kept in the current interval."""
        return self._count

    @property
    def last_rate(self) -> int:
        """Rate returned by the most recent :meth:`settle` (0 before the first)."""
        return self._last_rate

    def add_sample(self, premium: int, ts_ms: int) -> bool:
        """Add a premium sample (rate units) taken at ``ts_ms``; return whether it was kept.

        Refused if less than ``sample_interval_ms`` after the previous kept sample.
        """
        last = self._last_sample_ts
        if last is not None and ts_ms - last < self._config.sample_interval_ms:
            return False
        self._sum += premium
        self._count += 1
        self._last_sample_ts = ts_ms
        return True

    def average_premium(self) -> int:
        """Mean of the interval's samples in rate units, toward zero; 0 with no samples."""
        return div_toward_zero(self._sum, self._count) if self._count else 0

    def predicted_rate(self) -> int:
        """Funding rate the current samples would settle at (rate units)."""
        cfg = self._config
        premium = self.average_premium()
        damped = premium + min(max(cfg.interest_rate - premium, -cfg.clamp), cfg.clamp)
        return min(max(damped, -cfg.cap), cfg.cap)

    def next_funding_time(self, now_ms: int) -> int:
        """First funding time strictly after ``now_ms``; fundings fall on multiples of
        ``interval_ms`` since the epoch (00:00, 08:00, 16:00 UTC by default)."""
        interval = self._config.interval_ms
        return (now_ms // interval + 1) * interval

    def ms_to_next_funding(self, now_ms: int) -> int:
        """Milliseconds from ``now_ms`` to :meth:`next_funding_time`, in ``(0, interval_ms]``."""
        return self.next_funding_time(now_ms) - now_ms

    def settle(self, now_ms: int) -> int:
        """Close the interval at ``now_ms``: return its rate and clear the samples.

        The spacing of samples carries over, so a sample taken at the funding instant is not
        followed by a second one at the same instant.
        """
        if self._last_settle_ms is not None and now_ms < self._last_settle_ms:
            raise ValueError("settlement time went backwards")
        rate = self.predicted_rate()
        self._sum = 0
        self._count = 0
        self._last_settle_ms = now_ms
        self._last_rate = rate
        return rate


def funding_payments(
    positions: Mapping[str, int], mark_ticks: int, rate: int, notional_factor: int
) -> tuple[dict[str, int], int]:
    """Funding transfers for one settlement: ``(payments, residue)``.

    ``positions`` maps account to signed size in lots (long > 0) and must net to zero, as a
    market's open interest does. Each account with a position owes
    ``ceil(size * mark_ticks * notional_factor * rate / RATE_SCALE)`` money units; positive
    means it pays (longs when ``rate > 0``), negative that it receives. Rounding toward
    +infinity charges payers the fraction and withholds it from receivers, so
    ``residue = sum(payments) >= 0`` is what the venue collects beyond what it pays out (less
    than one unit per account); the caller credits it to the insurance fund, making the
    transfer exactly zero-sum. Flat accounts are omitted.
    """
    if mark_ticks <= 0 or notional_factor <= 0:
        raise ValueError("mark_ticks and notional_factor must be positive")
    if sum(positions.values()) != 0:
        raise ValueError("positions must net to zero for a zero-sum funding transfer")
    per_lot = mark_ticks * notional_factor * rate
    payments = {
        account: ceil_div(size * per_lot, RATE_SCALE)
        for account, size in positions.items()
        if size != 0
    }
    return payments, sum(payments.values())

"""Liquidation rules and the risk index (pure helpers; the exchange drives them).

See docs/mechanics.md §13-§15 for the definitions implemented here: the trigger, bankruptcy
price, step sizing per mode, the insurance fund backstop, ADL ranking, and how accounts are
indexed by distance to liquidation so that a mark update costs time only for accounts at risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from heapq import heapify, heappop, heappush

from perpbot.risk.margin import RATE_SCALE, bankruptcy_price, ceil_div

__all__ = [
    "LiquidationConfig",
    "LiquidationMode",
    "RiskIndex",
    "adl_score",
    "bankruptcy_price",
    "safe_distance",
    "slope_per_tick",
    "steps_for",
]


class LiquidationMode(StrEnum):
    """How a market closes a liquidated position (docs/mechanics.md §14)."""

    INCREMENTAL = "INCREMENTAL"
    MARKET = "MARKET"
    AUCTION = "AUCTION"


@dataclass(frozen=True, slots=True)
class LiquidationConfig:
    """Per-market liquidation parameters (rates in 1e-8 units, money in 1e-8 USDT)."""

    mode: LiquidationMode = LiquidationMode.INCREMENTAL
    step_rate: int = 20_000_000  # incremental: close 20% of the position per step ...
    min_step_notional: int = 100_000 * 10**8  # ... unless it is worth <= this: then all of it
    cooldown_ms: int = 30_000  # incremental: time between steps
    target_ratio: int = 80_000_000  # stop once MM / equity <= 80%
    margin_call_ratio: int = 80_000_000  # margin_call when MM / equity >= 80%
    backstop_ratio: int = 66_666_667  # equity < 2/3 MM: skip the book, backstop takes it all
    fee_rate: int = 300_000  # 0.30% of the notional closed, to the insurance fund
    auction_steps: int = 5  # auction: price steps from mark to bankruptcy
    insurance_seed: int = 1_000_000 * 10**8  # the market's insurance fund starts with this

    def __post_init__(self) -> None:
        if not 0 < self.step_rate <= RATE_SCALE:
            raise ValueError("step_rate must be in (0, 100%]")
        if not 0 < self.target_ratio < RATE_SCALE:
            raise ValueError("target_ratio must be in (0, 100%)")
        if not 0 < self.backstop_ratio < RATE_SCALE:
            raise ValueError("backstop_ratio must be in (0, 100%)")
        if self.auction_steps < 1 or self.cooldown_ms < 0 or self.fee_rate < 0:
            raise ValueError("auction_steps >= 1, cooldown_ms >= 0 and fee_rate >= 0")


def adl_score(upnl: int, cost: int, notional: int, equity: int) -> Fraction:
    """ADL priority (higher goes first): ``pnl% * effective leverage`` when in profit, else
    ``pnl% / effective leverage``; pnl% = upnl / |cost|, effective leverage = notional / equity
    (equity floored at one unit)."""
    pnl_pct = Fraction(upnl, abs(cost) or 1)
    leverage = Fraction(notional, max(equity, 1))
    if pnl_pct > 0:
        return pnl_pct * leverage
    return pnl_pct / leverage if leverage else pnl_pct


class RiskIndex:
    """Accounts with a position in one market, keyed by the mark that would make them need a
    fresh look.

    For each account the exchange computes a safe distance (in ticks) for every market it holds
    (docs/mechanics.md §15); the account cannot reach the margin-call or liquidation condition
    while every mark stays within it. Longs are at risk when the mark falls to their trigger,
    shorts when it rises to theirs. ``due(mark)`` pops exactly the accounts whose trigger the
    mark has reached, so a mark update costs O(k log n) for k accounts at risk.
    """

    __slots__ = ("_falls", "_rises", "_version")

    def __init__(self) -> None:
        self._falls: list[tuple[int, int, str]] = []  # (-trigger, version, account) longs
        self._rises: list[tuple[int, int, str]] = []  # (trigger, version, account) shorts
        self._version: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._version)

    def set(self, account: str, size: int, trigger: int, version: int) -> None:
        """(Re)index ``account`` with a long (``size`` > 0) or short position."""
        self._version[account] = version
        if size > 0:
            if trigger <= 0:  # a mark is at least one tick: never due (older entries go stale)
                return
            heappush(self._falls, (-trigger, version, account))
        else:
            heappush(self._rises, (trigger, version, account))
        if len(self._falls) + len(self._rises) > 4 * len(self._version) + 64:
            self._compact()

    def discard(self, account: str) -> None:
        """Forget ``account`` (its heap entries go stale)."""
        self._version.pop(account, None)

    def due(self, mark: int) -> list[str]:
        """Accounts whose trigger ``mark`` has reached; their entries are consumed."""
        out: list[str] = []
        versions = self._version
        falls, rises = self._falls, self._rises
        while falls and -falls[0][0] >= mark:
            _, version, account = heappop(falls)
            if versions.get(account) == version:
                del versions[account]
                out.append(account)
        while rises and rises[0][0] <= mark:
            _, version, account = heappop(rises)
            if versions.get(account) == version:
                del versions[account]
                out.append(account)
        return out

    def _compact(self) -> None:
        live = self._version
        self._falls = [e for e in self._falls if live.get(e[2]) == e[1]]
        self._rises = [e for e in self._rises if live.get(e[2]) == e[1]]
        heapify(self._falls)
        heapify(self._rises)


def safe_distance(buffer: int, slopes_times_marks: int, mark: int) -> int:
    """Ticks the mark of one market may move against a position before its account needs a
    fresh look: the buffer is shared across the account's markets in proportion to each
    position's weight ``slope * mark``, which gives every market the same relative move
    ``buffer / sum(slope * mark)``; 0 when there is no buffer."""
    if buffer <= 0 or slopes_times_marks <= 0:
        return 0
    return buffer * mark // slopes_times_marks


def slope_per_tick(size: int, factor: int, top_mmr: int) -> int:
    """Upper bound (in 1e-8 money units, i.e. scaled by RATE_SCALE) of how much one tick of
    adverse mark move reduces ``threshold * equity - MM`` for this position."""
    return abs(size) * factor * (RATE_SCALE + top_mmr)


def steps_for(size: int, step_rate: int) -> int:
    """Lots in one incremental step: ``ceil(|size| * step_rate)``, at least one lot."""
    return max(1, ceil_div(abs(size) * step_rate, RATE_SCALE))

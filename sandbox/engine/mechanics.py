"""Per-market mechanics settings: index, mark, funding and liquidation (docs/mechanics.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .funding import FundingConfig
from .liquidation import LiquidationConfig
from .pricing import IndexConfig, MarkConfig

DEFAULT_INDEX_SOURCES = {"spot-a": 1, "spot-b": 1, "spot-c": 1}


@dataclass(frozen=True, slots=True)
class MarketMechanics:
    """How one market prices, funds and liquidates. Defaults: docs/mechanics.md §10-§16.

    ``mark_interval_ms``: the index and mark are recomputed at most this often (on ``Tick``).
    ``impact_margin``: the funding impact notional is ``impact_margin * max leverage`` (money).
    """

    index: IndexConfig = field(default_factory=lambda: IndexConfig(DEFAULT_INDEX_SOURCES))
    mark: MarkConfig = field(default_factory=MarkConfig)
    funding: FundingConfig = field(default_factory=FundingConfig)
    liquidation: LiquidationConfig = field(default_factory=LiquidationConfig)
    mark_interval_ms: int = 1_000
    impact_margin: int = 200 * 10**8

    def __post_init__(self) -> None:
        if self.mark_interval_ms <= 0 or self.impact_margin <= 0:
            raise ValueError("mark_interval_ms and impact_margin must be positive")

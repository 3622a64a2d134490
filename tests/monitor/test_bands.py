"""Liquidation bands on the hand-built exchange (numbers checked by hand in the comments)."""

from __future__ import annotations

import pytest

from perpbot.risk.margin import RATE_SCALE
from sandbox.monitor import Severity
from sandbox.monitor.bands import compute_bands, liquidation_levels
from sandbox.monitor.detectors import LiquidationClusterDetector

from .conftest import BTC, LONGS, START, scenario

FACTOR = 10_000  # BTC-PERP money units per tick x lot


def test_levels_are_the_engines_liquidation_prices() -> None:
    ex, _ = scenario()
    levels = {a: (size, price) for a, size, price in liquidation_levels(ex, BTC)}
    for account in LONGS:
        assert levels[account] == (1_000, ex.liquidation_price(account, BTC))
    # 50x longs of 1 BTC from 60,010, 150 USDT of collateral apart: ~150.7 USDT apart.
    assert [levels[a][1] for a in LONGS] == [580_000, 578_492, 576_984, 574_974, 571_959]
    assert levels["s1"][0] == -1_000 and levels["s1"][1] > 660_000
    assert not any(a.startswith("insurance:") for a in levels)


def test_bands_accumulate_flow_against_depth() -> None:
    ex, clock = scenario()
    # 120 buckets over +-10% of 60,000: 100 USDT (1,000 ticks) each, from 54,000.
    bands = compute_bands(ex, BTC, clock.now_ms(), buckets=120, range_rate=RATE_SCALE // 10)
    assert bands.bucket_ticks == 1_000 and bands.bands[0].low == 540_000
    by_low = {b.low: b for b in bands.bands}
    assert all(b.high == b.low + 999 for b in bands.bands)
    # Longs in their buckets, notional at the liquidation price.
    b = by_low[580_000]
    assert (b.long_qty, b.long_accounts, b.long_notional) == (1_000, 1, 580_000 * 1_000 * FACTOR)
    assert by_low[578_000].long_qty == 1_000 and by_low[571_000].long_qty == 1_000
    assert sum(x.long_qty for x in bands.bands) == 5_000
    # Cumulative from the mark down: forced sells vs bids at or above the bucket's low.
    expected = {  # low: (longs with liquidation >= low, bid lots >= low)
        580_000: (1_000, 0),
        579_000: (1_000, 300),
        578_000: (2_000, 700),
        576_000: (3_000, 1_600),
        574_000: (4_000, 3_000),
        572_000: (4_000, 4_000),
        571_000: (5_000, 4_000),
        570_000: (5_000, 9_000),
    }
    for low, (sell, bids) in expected.items():
        assert (by_low[low].cum_sell, by_low[low].cum_bids) == (sell, bids), low
    assert by_low[579_000].bid_qty == 300 and by_low[570_000].bid_qty == 5_000
    # The first shortfall below the mark: at 58,000 one BTC would be sold into no bids.
    gap = bands.long_shortfall
    assert gap is not None
    assert (gap.price, gap.forced_qty, gap.depth_qty, gap.accounts) == (580_000, 1_000, 0, 1)
    assert gap.forced_notional == 580_000 * 1_000 * FACTOR
    assert gap.distance == 20_000 * RATE_SCALE // 600_000  # 3.33%
    # Above the mark the only ask (57,950, below the mark) covers every bucket; s1's
    # liquidation (> 66,000) is out of range, so there is no short shortfall.
    assert bands.short_shortfall is None
    assert all(x.cum_asks == 5_000 for x in bands.bands if x.low >= 600_000)
    assert bands.positions == len(liquidation_levels(ex, BTC))


def test_thick_bids_remove_the_shortfall_and_the_alert() -> None:
    thick = ((585_000, 9_000), (579_000, 300))
    ex, clock = scenario(bids=thick)
    bands = compute_bands(ex, BTC, clock.now_ms())
    assert bands.long_shortfall is None
    assert LiquidationClusterDetector().evaluate(START, bands) == []
    ex, clock = scenario()
    alerts = LiquidationClusterDetector().evaluate(START, compute_bands(ex, BTC, clock.now_ms()))
    assert [(a.severity, a.values["side"]) for a in alerts] == [(Severity.WARNING, "long")]


def test_bad_parameters_are_refused() -> None:
    ex, clock = scenario()
    with pytest.raises(ValueError):
        compute_bands(ex, BTC, clock.now_ms(), buckets=1)
    with pytest.raises(ValueError):
        compute_bands(ex, BTC, clock.now_ms(), range_rate=RATE_SCALE)

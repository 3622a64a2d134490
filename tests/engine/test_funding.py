"""Funding: impact prices, premium, rate (the worked examples) and zero-sum payments."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpbot.risk.margin import MONEY_SCALE, RATE_SCALE
from sandbox.engine.funding import (
    FundingCalculator,
    FundingConfig,
    div_toward_zero,
    funding_payments,
    impact_notional,
    impact_price,
    premium_index,
)

HOUR = 3_600_000
EIGHT_H = 8 * HOUR
BTC_NF = 10_000  # tick 0.1 x lot 0.001 x 1e8
USDT = MONEY_SCALE


def test_div_toward_zero() -> None:
    assert div_toward_zero(7, 2) == 3
    assert div_toward_zero(-7, 2) == -3
    assert div_toward_zero(0, 5) == 0
    with pytest.raises(ValueError):
        div_toward_zero(1, 0)


def test_impact_notional_default() -> None:
    # 200 USDT / (1/125) = 25,000 USDT
    assert impact_notional(125) == 25_000 * USDT
    assert impact_notional(20, 100 * USDT) == 2_000 * USDT
    with pytest.raises(ValueError):
        impact_notional(0)


# --- impact price --------------------------------------------------------------------------


def test_impact_price_toy_asks_round_up() -> None:
    # notional_factor 1: level notional = price * qty.
    # Level 1: 100 x 10 = 1000; 500 still needed at 110 -> 500/110 = 4.545 lots.
    # average = 1500 / (10 + 4.545) = 1500 * 110 / (110 * 10 + 500) = 165000 / 1600 = 103.125
    assert impact_price([(100, 10), (110, 10)], 1500, 1) == 104  # up (asks)


def test_impact_price_toy_bids_round_down() -> None:
    # Level 1: 100 x 10 = 1000; 500 at 90 -> 5.556 lots.
    # average = 1500 * 90 / (90 * 10 + 500) = 135000 / 1400 = 96.43
    assert impact_price([(100, 10), (90, 10)], 1500, 1) == 96  # down (bids)


def test_impact_price_btc_asks_three_levels() -> None:
    impact = impact_notional(125)  # 25,000 USDT = 2.5e12 units
    asks = [(600000, 100), (600010, 200), (600050, 1000)]
    # level 1: 60000.0 x 0.1 BTC  = 6,000.0 USDT   (600000 * 100 * 10000 = 6.0e11)
    # level 2: 60001.0 x 0.2 BTC  = 12,000.2 USDT  (1.20002e12); spent 18,000.2
    # level 3 supplies the remaining 6,999.8 USDT = 6,999.8 / 60005 BTC
    # average = 2.5e12 * 600050 / (10000 * 600050 * 300 + 6.9998e11) = 600018.799 ticks
    assert impact_price(asks, impact, BTC_NF) == 600019


def test_impact_price_btc_bids_three_levels() -> None:
    impact = impact_notional(125)
    bids = [(599990, 100), (599980, 200), (599900, 1000)]
    # spent on levels 1-2 = (599990*100 + 599980*200) * 10000 = 1.79995e12; rest 7.0005e11
    # average = 2.5e12 * 599900 / (10000 * 599900 * 300 + 7.0005e11) = 599959.996 ticks
    assert impact_price(bids, impact, BTC_NF) == 599959


def test_impact_price_single_level_is_exact() -> None:
    assert impact_price([(600000, 5000)], 25_000 * USDT, BTC_NF) == 600000


def test_impact_price_level_consumed_exactly() -> None:
    # 100*10 + 110*10 = 2100 exactly: average = 2100 / 20 lots = 105
    assert impact_price([(100, 10), (110, 10), (200, 10)], 2100, 1) == 105


def test_impact_price_thin_book() -> None:
    assert impact_price([(100, 10), (110, 10)], 2101, 1) is None
    assert impact_price([], 1, 1) is None


@pytest.mark.parametrize(
    "levels",
    [
        [(100, 0)],
        [(0, 5)],
        [(100, 1), (100, 1)],  # not strictly monotone
        [(100, 1), (110, 1), (105, 1)],  # changes direction
    ],
)
def test_impact_price_rejects_bad_levels(levels: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        impact_price(levels, 10, 1)


def test_impact_price_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        impact_price([(100, 1)], 0, 1)
    with pytest.raises(ValueError):
        impact_price([(100, 1)], 10, 0)


# --- premium -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bid", "ask", "expected"),
    [
        (600060, 600100, 10_000),  # bid 60 above index: 60/600000 = +0.01%
        (599900, 599940, -10_000),  # ask 60 below index: -0.01%
        (599990, 600010, 0),  # index between the impact prices
        (600000, 600000, 0),
        (600007, 600020, 1_166),  # 7/600000 = 0.0011666% -> 1166.67 toward zero
        (599980, 599993, -1_166),  # -1166.67 toward zero
    ],
)
def test_premium_index(bid: int, ask: int, expected: int) -> None:
    assert premium_index(bid, ask, 600000) == expected


def test_premium_index_rejects_bad_index() -> None:
    with pytest.raises(ValueError):
        premium_index(1, 2, 0)


# --- rate ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("premium", "rate"),
    [
        (20_000, 10_000),  # P 0.02%: I - P = -0.01% inside the damper -> F = I = 0.01%
        (100_000, 50_000),  # P 0.10%: I - P = -0.09% -> -0.05%; F = 0.05%
        (-30_000, 10_000),  # P -0.03%: I - P = +0.04% inside -> F = 0.01%
        (500_000, 300_000),  # P 0.50%: F = 0.45%, capped to 0.30%
        (-500_000, -300_000),  # P -0.50%: F = -0.45%, capped to -0.30%
        (-100_000, -50_000),  # P -0.10%: I - P = +0.11% -> +0.05%; F = -0.05%
    ],
)
def test_rate_worked_examples(premium: int, rate: int) -> None:
    calc = FundingCalculator()
    for minute in range(480):  # one sample per minute for 8 h
        assert calc.add_sample(premium, minute * 60_000)
    assert calc.sample_count == 480
    assert calc.average_premium() == premium
    assert calc.predicted_rate() == rate
    assert calc.settle(EIGHT_H) == rate
    assert calc.last_rate == rate


def test_rate_average_over_samples_truncates_toward_zero() -> None:
    calc = FundingCalculator()
    for i, p in enumerate([100_000, 100_000, 100_001]):
        calc.add_sample(p, i * 60_000)
    assert calc.average_premium() == 100_000  # 300001 / 3 = 100000.33 -> 100000
    neg = FundingCalculator()
    for i, p in enumerate([-1, -2]):
        neg.add_sample(p, i * 60_000)
    assert neg.average_premium() == -1  # -1.5 -> -1 (toward zero)
    # mixed: (0.02% * 2 + 0.14% * 1) / 3 = 0.06%; I - P = -0.05% exactly (edge) -> F = 0.01%
    mixed = FundingCalculator()
    for i, p in enumerate([20_000, 20_000, 140_000]):
        mixed.add_sample(p, i * 60_000)
    assert mixed.predicted_rate() == 10_000


def test_rate_without_samples_is_interest() -> None:
    assert FundingCalculator().predicted_rate() == 10_000
    cfg = FundingConfig(interest_rate=80_000)  # interest above the damper: F = 0 + 0.05%
    assert FundingCalculator(cfg).predicted_rate() == 50_000


def test_samples_kept_at_most_once_per_minute() -> None:
    calc = FundingCalculator()
    assert calc.add_sample(10, 0)
    assert not calc.add_sample(99_999, 59_999)
    assert calc.add_sample(20, 60_000)
    assert not calc.add_sample(99_999, 60_000)
    assert calc.add_sample(30, 130_000)
    assert calc.sample_count == 3
    assert calc.average_premium() == 20


def test_settle_resets_samples_and_keeps_spacing() -> None:
    calc = FundingCalculator()
    calc.add_sample(100_000, EIGHT_H - 60_000)
    calc.add_sample(100_000, EIGHT_H)
    assert calc.settle(EIGHT_H) == 50_000
    assert calc.sample_count == 0
    assert calc.predicted_rate() == 10_000  # fresh interval, no samples
    assert not calc.add_sample(0, EIGHT_H)  # same instant as the last kept sample
    assert calc.add_sample(-20_000, EIGHT_H + 60_000)
    assert calc.settle(2 * EIGHT_H) == 10_000
    with pytest.raises(ValueError):
        calc.settle(EIGHT_H)


def test_next_funding_time() -> None:
    calc = FundingCalculator()
    assert calc.next_funding_time(0) == EIGHT_H
    assert calc.next_funding_time(EIGHT_H - 1) == EIGHT_H
    assert calc.next_funding_time(EIGHT_H) == 2 * EIGHT_H  # strictly after
    assert calc.ms_to_next_funding(EIGHT_H) == EIGHT_H
    # 2024-01-01 05:00 UTC -> 08:00 UTC
    jan1 = 1_704_067_200_000
    assert calc.next_funding_time(jan1 + 5 * HOUR) == jan1 + 8 * HOUR
    assert calc.ms_to_next_funding(jan1 + 5 * HOUR) == 3 * HOUR
    hourly = FundingCalculator(FundingConfig(interval_ms=HOUR))
    assert hourly.next_funding_time(jan1 + 5 * HOUR + 1) == jan1 + 6 * HOUR


def test_funding_config_validation() -> None:
    with pytest.raises(ValueError):
        FundingConfig(interval_ms=0)
    with pytest.raises(ValueError):
        FundingConfig(sample_interval_ms=0)
    with pytest.raises(ValueError):
        FundingConfig(clamp=-1)
    with pytest.raises(ValueError):
        FundingConfig(cap=-1)


# --- payments ------------------------------------------------------------------------------


def test_payment_btc_worked_example() -> None:
    # 2 BTC = 2000 lots, mark 60,000 = 600000 ticks, rate 0.01%:
    # 2000 * 600000 * 10000 * 10000 / 1e8 = 1.2e9 units = 12 USDT
    payments, residue = funding_payments({"alice": 2000, "bob": -2000}, 600000, 10_000, BTC_NF)
    assert payments == {"alice": 12 * USDT, "bob": -12 * USDT}
    assert residue == 0
    assert sum(payments.values()) - residue == 0


def test_payment_negative_rate_shorts_pay() -> None:
    payments, residue = funding_payments({"alice": 2000, "bob": -2000}, 600000, -10_000, BTC_NF)
    assert payments == {"alice": -12 * USDT, "bob": 12 * USDT}
    assert residue == 0


def test_payment_rounding_and_residue() -> None:
    # per lot: 600001 * 10000 * 12345 / 1e8 = 740701.2345 units
    # a (+3): pays 2222103.7035 -> 2222104 (up)
    # b (-1): receives 740701.2345 -> 740701 (down)
    # c (-2): receives 1481402.469 -> 1481402 (down)
    # residue = 2222104 - 740701 - 1481402 = 1
    positions = {"a": 3, "b": -1, "c": -2, "flat": 0}
    payments, residue = funding_payments(positions, 600001, 12_345, BTC_NF)
    assert payments == {"a": 2_222_104, "b": -740_701, "c": -1_481_402}
    assert residue == 1
    assert sum(payments.values()) - residue == 0


def test_payment_zero_rate_and_no_positions() -> None:
    payments, residue = funding_payments({"a": 5, "b": -5}, 600000, 0, BTC_NF)
    assert payments == {"a": 0, "b": 0} and residue == 0
    assert funding_payments({}, 600000, 10_000, BTC_NF) == ({}, 0)


def test_payment_rejects_unbalanced_or_bad_inputs() -> None:
    with pytest.raises(ValueError):
        funding_payments({"a": 5, "b": -4}, 600000, 10_000, BTC_NF)
    with pytest.raises(ValueError):
        funding_payments({"a": 5, "b": -5}, 0, 10_000, BTC_NF)
    with pytest.raises(ValueError):
        funding_payments({"a": 5, "b": -5}, 600000, 10_000, 0)


@given(
    sizes=st.lists(st.integers(-1_000_000, 1_000_000), min_size=1, max_size=12),
    mark=st.integers(1, 10**9),
    rate=st.integers(-5_000_000, 5_000_000),
    factor=st.sampled_from([1, 1_000, 10_000, 100_000]),
)
def test_payments_are_zero_sum(sizes: list[int], mark: int, rate: int, factor: int) -> None:
    positions = {f"acct{i}": size for i, size in enumerate(sizes)}
    positions["balancer"] = -sum(sizes)
    payments, residue = funding_payments(positions, mark, rate, factor)

    paid = sum(v for v in payments.values() if v > 0)
    received = -sum(v for v in payments.values() if v < 0)
    assert sum(payments.values()) - residue == 0
    assert paid - residue == received
    assert 0 <= residue < max(1, len(payments))
    assert set(payments) == {k for k, v in positions.items() if v != 0}
    for account, amount in payments.items():
        exact = Fraction(positions[account] * mark * factor * rate, RATE_SCALE)
        assert 0 <= amount - exact < 1  # payers round up, receivers down


def test_docs_worked_example_premium_and_average() -> None:
    # docs/mechanics-prices-funding.md section 3: impact bid 599959, impact ask 600019
    # index 599800: (599959 - 599800) / 599800 = 159 / 599800 = 0.000265088 -> 26508
    assert premium_index(599959, 600019, 599800) == 26_508
    # index 600100: -(600100 - 600019) / 600100 = -0.0001349775 -> -13497
    assert premium_index(599959, 600019, 600100) == -13_497
    calc = FundingCalculator()
    for minute, premium in enumerate([26_508] * 300 + [-5_000] * 180):
        calc.add_sample(premium, minute * 60_000)
    # (300 * 26508 - 180 * 5000) / 480 = 7052400 / 480 = 14692.5 -> 14692
    assert calc.average_premium() == 14_692
    assert calc.predicted_rate() == 10_000

"""perpbot.risk.margin: exact conversions, brackets, initial and maintenance margin.

Money and rates are both ``int`` units of 1e-8 (1 USDT = 100_000_000 units; 0.02% = 20_000).
"""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest

from perpbot.risk.margin import (
    MONEY_SCALE,
    RATE_SCALE,
    Bracket,
    bracket_for,
    build_brackets,
    ceil_div,
    initial_margin,
    maintenance_margin,
    max_leverage_for,
    max_notional_at,
    money_from_decimal,
    money_to_decimal,
    mul_rate_ceil,
    mul_rate_floor,
    rate_from_decimal,
    rate_to_decimal,
)
from sandbox.engine import default_instruments
from sandbox.engine.instruments import DEFAULT_BRACKET_ROWS

U = MONEY_SCALE  # units per USDT


def usdt(value: int | str) -> int:
    return int(Decimal(value) * U)


BTC_ROWS = [
    (money_from_decimal(c), lev, rate_from_decimal(m)) for c, lev, m in DEFAULT_BRACKET_ROWS
]
BTC_BRACKETS = build_brackets(BTC_ROWS)


# -- integer helpers -------------------------------------------------------------------------------
def test_scales() -> None:
    assert MONEY_SCALE == 100_000_000
    assert RATE_SCALE == 100_000_000


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [(10, 3, 4), (9, 3, 3), (0, 5, 0), (1, 10**8, 1), (-7, 2, -3), (-6, 2, -3), (-1, 3, 0)],
)
def test_ceil_div(num: int, den: int, expected: int) -> None:
    assert ceil_div(num, den) == expected


def test_mul_rate_rounding_directions() -> None:
    # 2_100_007_000 * 0.0002 = 420_001.4
    assert mul_rate_ceil(2_100_007_000, 20_000) == 420_002
    assert mul_rate_floor(2_100_007_000, 20_000) == 420_001
    # a negative rate (rebate): -210_000.7 -> ceil toward zero, floor away from zero
    assert mul_rate_ceil(2_100_007_000, -10_000) == -210_000
    assert mul_rate_floor(2_100_007_000, -10_000) == -210_001
    # exact products are not nudged
    assert mul_rate_ceil(6 * 10**12, 50_000) == mul_rate_floor(6 * 10**12, 50_000) == 3 * 10**9


# -- money and rate conversions ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "units"),
    [
        ("1", 100_000_000),
        ("0.00000001", 1),
        ("1e-8", 1),
        ("123.45678901", 12_345_678_901),
        ("60000.05", 6_000_005_000_000),
        ("-2.5", -250_000_000),
        ("0", 0),
        (7, 700_000_000),
        (Decimal("0.10000000"), 10_000_000),
        ("10000000000", 10**18),
    ],
)
def test_money_from_decimal_exact(value: Any, units: int) -> None:
    assert money_from_decimal(value) == units


@pytest.mark.parametrize(
    "value", ["0.000000001", "1.123456789", "NaN", "Infinity", "-Infinity", "abc", "", "1,5"]
)
def test_money_from_decimal_refuses(value: Any) -> None:
    with pytest.raises(ValueError):
        money_from_decimal(value)


@pytest.mark.parametrize(
    "value", ["1.000000000000000000000000000001", "123456789012345678901.000000001"]
)
def test_money_from_decimal_refuses_over_precise_long_input(value: str) -> None:
    # both have digits below 1e-8; the product with 1e8 needs more than 28 digits
    # (regression: fails on e11b3bf, where the decimal context rounded it to a whole number)
    with pytest.raises(ValueError):
        money_from_decimal(value)


@pytest.mark.parametrize("units", [0, 1, 12_345_678_901, -250_000_000, 10**18])
def test_money_round_trip(units: int) -> None:
    dec = money_to_decimal(units)
    assert dec.as_tuple().exponent == -8
    assert money_from_decimal(dec) == units
    assert money_from_decimal(str(dec)) == units


def test_money_to_decimal_values() -> None:
    assert money_to_decimal(12_345_678_901) == Decimal("123.45678901")
    assert str(money_to_decimal(1)) == "1E-8"
    assert str(money_to_decimal(100_000_000)) == "1.00000000"


@pytest.mark.parametrize(
    ("value", "units"),
    [
        ("0.0002", 20_000),
        ("0.0005", 50_000),
        ("0.05", 5_000_000),
        ("1", RATE_SCALE),
        ("-0.0001", -10_000),
        ("0.00000001", 1),
    ],
)
def test_rate_from_decimal_exact(value: str, units: int) -> None:
    assert rate_from_decimal(value) == units
    assert rate_to_decimal(units) == Decimal(value)


@pytest.mark.parametrize("value", ["0.000000001", "0.00025000001", "NaN", "Infinity", "x"])
def test_rate_from_decimal_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        rate_from_decimal(value)


# -- brackets ------------------------------------------------------------------------------------
def test_btc_brackets_derive_maint_amount() -> None:
    # maint_amount[i] = maint_amount[i-1] + cap[i-1] * (mmr[i] - mmr[i-1]):
    #   0
    #   0      + 50_000     * (0.005  - 0.004)  = 50
    #   50     + 600_000    * (0.0065 - 0.005)  = 950
    #   950    + 3_000_000  * (0.01   - 0.0065) = 11_450
    #   11_450 + 12_000_000 * (0.02   - 0.01)   = 131_450
    #   131_450 + 70_000_000 * (0.025 - 0.02)   = 481_450
    assert [b.maint_amount for b in BTC_BRACKETS] == [
        usdt(0),
        usdt(50),
        usdt(950),
        usdt(11_450),
        usdt(131_450),
        usdt(481_450),
    ]
    assert [b.max_leverage for b in BTC_BRACKETS] == [125, 100, 75, 50, 25, 20]
    assert [b.mmr for b in BTC_BRACKETS] == [
        400_000,
        500_000,
        650_000,
        1_000_000,
        2_000_000,
        2_500_000,
    ]
    assert [b.notional_cap for b in BTC_BRACKETS] == [
        usdt(c) for c in (50_000, 600_000, 3_000_000, 12_000_000, 70_000_000, 100_000_000)
    ]
    assert default_instruments()[0].brackets == BTC_BRACKETS


def test_sol_brackets_derive_maint_amount() -> None:
    # 0; 50_000 * 0.01 = 500; 500 + 250_000 * 0.005 = 1_750; 1_750 + 1_000_000 * 0.025 = 26_750
    sol = default_instruments()[2]
    assert sol.symbol == "SOL-PERP"
    assert [b.maint_amount for b in sol.brackets] == [0, usdt(500), usdt(1_750), usdt(26_750)]


# maintenance margin exactly at each edge, computed with both neighbouring brackets:
#   50_000:      50_000 * 0.004 - 0             =     200
#   600_000:    600_000 * 0.005 - 50 = 3_000 - 50 =  2_950 = 600_000 * 0.0065 - 950
#   3_000_000:  19_500 - 950     = 18_550 = 30_000 - 11_450
#   12_000_000: 120_000 - 11_450 = 108_550 = 240_000 - 131_450
#   70_000_000: 1_400_000 - 131_450 = 1_268_550 = 1_750_000 - 481_450
EDGE_MM = [200, 2_950, 18_550, 108_550, 1_268_550]


@pytest.mark.parametrize("i", range(5))
def test_maintenance_margin_is_continuous_at_each_edge(i: int) -> None:
    lower, upper = BTC_BRACKETS[i], BTC_BRACKETS[i + 1]
    cap = lower.notional_cap
    at_edge = maintenance_margin(BTC_BRACKETS, cap)
    assert at_edge == usdt(EDGE_MM[i])
    # both brackets' formulas agree exactly at the edge
    assert cap * lower.mmr // RATE_SCALE - lower.maint_amount == at_edge
    assert cap * upper.mmr // RATE_SCALE - upper.maint_amount == at_edge
    # one unit either side: ceil((cap - 1) * mmr) = cap * mmr (mmr < 1 unit per unit), and
    # ceil((cap + 1) * mmr') = cap * mmr' + 1 -> no jump, just the one-unit rounding step
    assert maintenance_margin(BTC_BRACKETS, cap - 1) == at_edge
    assert maintenance_margin(BTC_BRACKETS, cap + 1) == at_edge + 1


def test_maintenance_margin_small_and_beyond_last_bracket() -> None:
    assert maintenance_margin(BTC_BRACKETS, 0) == 0
    assert maintenance_margin(BTC_BRACKETS, 1) == 1  # ceil(1 * 0.004)
    # 1 BTC at 60000 = 6e12: bracket 2, 6e12 * 0.005 - 50 USDT = 3e10 - 5e9
    assert maintenance_margin(BTC_BRACKETS, 6 * 10**12) == 25_000_000_000
    # 200M USDT is above the last cap: last bracket, 200M * 0.025 - 481_450 = 4_518_550
    assert maintenance_margin(BTC_BRACKETS, usdt(200_000_000)) == usdt(4_518_550)


def test_bracket_for_boundaries() -> None:
    first_cap = usdt(50_000)
    assert bracket_for(BTC_BRACKETS, 0) is BTC_BRACKETS[0]
    assert bracket_for(BTC_BRACKETS, first_cap) is BTC_BRACKETS[0]  # == cap: lower bracket
    assert bracket_for(BTC_BRACKETS, first_cap + 1) is BTC_BRACKETS[1]
    for lower, upper in pairwise(BTC_BRACKETS):
        assert bracket_for(BTC_BRACKETS, lower.notional_cap) is lower
        assert bracket_for(BTC_BRACKETS, lower.notional_cap + 1) is upper
    last_cap = usdt(100_000_000)
    assert bracket_for(BTC_BRACKETS, last_cap) is BTC_BRACKETS[-1]
    assert bracket_for(BTC_BRACKETS, last_cap + 1) is None
    assert max_leverage_for(BTC_BRACKETS, first_cap) == 125
    assert max_leverage_for(BTC_BRACKETS, first_cap + 1) == 100
    assert max_leverage_for(BTC_BRACKETS, last_cap) == 20
    assert max_leverage_for(BTC_BRACKETS, last_cap + 1) == 0


@pytest.mark.parametrize(
    ("leverage", "max_usdt"),
    [
        (1, 100_000_000),
        (20, 100_000_000),
        (21, 70_000_000),
        (25, 70_000_000),
        (50, 12_000_000),
        (75, 3_000_000),
        (100, 600_000),
        (101, 50_000),
        (125, 50_000),
        (126, 0),
    ],
)
def test_max_notional_at_leverage(leverage: int, max_usdt: int) -> None:
    assert max_notional_at(BTC_BRACKETS, leverage) == usdt(max_usdt)


@pytest.mark.parametrize(
    ("notional", "leverage", "expected"),
    [
        (6 * 10**12, 20, 3 * 10**11),  # 60000 USDT at 20x = 3000 USDT
        (6_123_450_000_000, 7, 874_778_571_429),  # 874_778_571_428.57... rounds up
        (1, 20, 1),
        (21, 20, 2),
        (20, 20, 1),
        (0, 20, 0),
    ],
)
def test_initial_margin_rounds_up(notional: int, leverage: int, expected: int) -> None:
    assert initial_margin(notional, leverage) == expected


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [(usdt(100), 10, 1_000_000), (usdt(100), 5, 2_000_000)],  # cap not increasing
        [(usdt(100), 10, 1_000_000), (usdt(50), 5, 2_000_000)],  # cap decreasing
        [(usdt(100), 0, 1_000_000)],  # leverage < 1
        [(usdt(100), 10, 0)],  # mmr must be positive
        [(usdt(100), 10, 2_000_000), (usdt(200), 5, 1_000_000)],  # mmr decreasing
        [(1, 10, 1_000_000), (usdt(200), 5, 1_000_001)],  # 1 unit * 1e-8 -> fractional amount
    ],
)
def test_build_brackets_refuses_bad_rows(rows: list[tuple[int, int, int]]) -> None:
    with pytest.raises(ValueError):
        build_brackets(rows)


def test_build_brackets_single_row_and_type() -> None:
    (only,) = build_brackets([(usdt(1_000), 10, 1_000_000)])
    assert only == Bracket(usdt(1_000), 10, 1_000_000, 0)

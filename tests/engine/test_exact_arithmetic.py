"""``mul``, ``mul_div``, ``mul_rate_*`` and ``rate_below`` equal the plain big-int formulas.

They take machine-integer shortcuts in the compiled engine, so the interesting inputs sit at
the edges of those shortcuts: 2**31, 2**62 (the largest unboxed int) and 2**63 (i64), on both
signs. ``make test`` runs this file on the compiled engine and again on the Python sources.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from perpbot._native import compiled_modules
from perpbot.risk import margin
from perpbot.risk.margin import (
    RATE_SCALE,
    mul,
    mul_div,
    mul_rate_ceil,
    mul_rate_floor,
    order_reserve,
    rate_below,
)

_EDGES = [0, 1, 2, 3, 2**30, 2**31, 2**32, 2**61, 2**62, 2**63, 2**64, 10**8, 10**17, 10**30]
_EDGE_INTS = sorted({s * (e + d) for e in _EDGES for d in (-1, 0, 1) for s in (1, -1)})
ints = st.one_of(st.sampled_from(_EDGE_INTS), st.integers(-(2**70), 2**70))
divisors = st.one_of(st.sampled_from([1, 2, 3, 7, RATE_SCALE, 2**31, 2**62, 2**63]), ints)


@given(ints, ints)
def test_mul_is_the_exact_product(a: int, b: int) -> None:
    assert mul(a, b) == a * b
    assert mul(b, a) == a * b


def test_mul_at_the_i64_boundary() -> None:
    # products just inside and just outside 64 bits, both signs
    assert mul(2**31, 2**31) == 2**62
    assert mul(-(2**31), 2**31) == -(2**62)
    assert mul(2**62 - 1, 2) == 2**63 - 2
    assert mul(2**62 - 1, 3) == 3 * (2**62 - 1)
    assert mul(-(2**62) + 1, -2) == 2**63 - 2
    assert mul(3037000499, 3037000499) == 3037000499**2  # floor(sqrt(2**63 - 1))
    assert mul(3037000500, 3037000500) == 3037000500**2  # just past it


@given(ints, ints, divisors.filter(lambda d: d > 0))
def test_mul_div_is_the_floor_of_the_exact_quotient(a: int, b: int, d: int) -> None:
    assert mul_div(a, b, d) == (a * b) // d


@given(st.integers(-(2**62), 2**62 - 1), st.integers(0, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_mul_div_in_its_machine_integer_domain(a: int, b: int, d: int) -> None:
    assert mul_div(a, b, d) == (a * b) // d


def test_mul_div_at_the_edges_of_its_machine_integer_path() -> None:
    # b and d just inside and outside 2**31, a at the edges of 62 bits, quotients around 2**31
    big = 2**62 - 1
    cases = [
        (big, 2**31 - 1, 2**31 - 1),
        (-big, 2**31 - 1, 2**31 - 1),
        (big, 2**31 - 1, 1),
        (-big - 1, 2**31 - 1, 3),
        (big + 1, 5, 7),
        (2**31 * 7 - 1, 2**31 - 1, 7),  # quotient just below 2**31
        (2**31 * 7, 2**31 - 1, 7),  # ... and at it
        (-(2**31) * 7, 2**31 - 1, 7),
        (-(2**31) * 7 + 1, 2**31 - 1, 7),
        (123_456_789_012_345, 2**31, RATE_SCALE),  # b just outside
        (123_456_789_012_345, 5_000, 2**31),  # d just outside
        (-123_456_789_012_345, 5_000, RATE_SCALE),  # negative money: floor, not truncation
        (big, 2**31 - 1, 2**31 - 1),  # b <= d with a large quotient
        (-big - 1, 1_000, 1_000),
        (-big - 1, 999, 1_000),
        (big, 1_000, 999),  # b > d and a quotient past 2**31: the general path
        (-1, 1, RATE_SCALE),
        (0, 2**31 - 1, 1),
    ]
    for a, b, d in cases:
        assert mul_div(a, b, d) == (a * b) // d, (a, b, d)


@given(ints, ints)
def test_rate_rounding_and_comparison(amount: int, rate: int) -> None:
    assert mul_rate_floor(amount, rate) == (amount * rate) // RATE_SCALE
    assert mul_rate_ceil(amount, rate) == -((-amount * rate) // RATE_SCALE)


@given(ints, ints, ints)
def test_rate_below_is_the_scaled_comparison(amount: int, rate: int, other: int) -> None:
    assert rate_below(amount, rate, other) == (amount * RATE_SCALE < rate * other)


def _reserve_by_the_formula(
    size: int, buy: tuple[int, int], sell: tuple[int, int], leverage: int, factor: int
) -> int:
    """order_reserve's docstring, in big integers: each side's quantity that adds exposure,
    valued at the side's average price; the larger side, rounded up."""
    held = [0]
    for (qty, value), opposite in ((buy, size < 0), (sell, size > 0)):
        if qty:
            excess = qty - abs(size) if opposite else qty
            if excess > 0:
                held.append(-((-value * excess * factor) // (qty * leverage)))
    return max(held)


lots = st.one_of(st.sampled_from([0, 1, 2, 10**6, 2**31, 10**9]), st.integers(0, 10**10))
prices = st.one_of(st.sampled_from([1, 600_000, 2**30, 10**9]), st.integers(1, 10**10))


@given(
    st.integers(-(10**10), 10**10),
    lots,
    prices,
    lots,
    prices,
    st.integers(1, 125),
    st.sampled_from([1, 10**4, 10**5, 10**8]),
)
def test_order_reserve_is_its_formula(
    size: int, buy_qty: int, buy_price: int, sell_qty: int, sell_price: int, lev: int, f: int
) -> None:
    # (values as the engine keeps them: quantity x an average price, up to ~2**67 here)
    buy = (buy_qty, buy_qty * buy_price)
    sell = (sell_qty, sell_qty * sell_price)
    expected = _reserve_by_the_formula(size, buy, sell, lev, f)
    assert order_reserve(size, *buy, *sell, lev, f) == expected


def test_the_machine_integer_path_is_taken_exactly_when_compiled() -> None:
    # Interpreted, the helpers are the plain formulas; compiled, they must not be (or the
    # engine would silently lose the speed they exist for).
    assert margin._COMPILED is compiled_modules()["perpbot.risk.margin"]

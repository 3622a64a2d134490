"""Wire formatting: engine units -> exact decimal strings, the same as Decimal arithmetic."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from sandbox.server import wire


def reference(units: int, size: Decimal) -> str:
    text = format(units * size, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@given(
    units=st.integers(-(10**15), 10**15),
    size=st.sampled_from(["0.1", "0.01", "0.001", "0.5", "0.25", "25", "0.0005", "1", "0.125"]),
)
def test_scaled_steps_match_decimal_arithmetic(units: int, size: str) -> None:
    mult, decimals, scale = wire._step(Decimal(size))
    assert wire._scaled(units * mult, decimals, scale) == reference(units, Decimal(size))


@given(st.integers(-(10**20), 10**20))
def test_money_and_rate_strings(units: int) -> None:
    assert Decimal(wire.money(units)) == Decimal(units).scaleb(-8)
    assert wire.money(units) == reference(units, Decimal("0.00000001"))
    assert wire.rate(units) == wire.money(units)

"""Commands as values: named tuples that equal only their own kind, read by position in the
engine's hot paths."""

from __future__ import annotations

import pytest

from sandbox.engine import exchange as engine
from sandbox.engine.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Deposit,
    PlaceOrder,
    Side,
    Tick,
    Withdraw,
)

# The positions sandbox/engine/exchange.py reads unvalidated fields at.
PLACE = {
    "account": engine._ACCOUNT,
    "market": engine._MARKET,
    "side": engine._SIDE,
    "qty": engine._QTY,
    "price": engine._PRICE,
    "order_type": engine._ORDER_TYPE,
    "tif": engine._TIF,
    "reduce_only": engine._REDUCE_ONLY,
    "client_id": engine._PLACE_CLIENT_ID,
    "stp": engine._STP,
}
FIND = {
    "account": engine._ACCOUNT,
    "market": engine._MARKET,
    "order_id": engine._ORDER_ID,
    "client_id": engine._CLIENT_ID,
}


def test_place_order_positions_match_its_fields() -> None:
    assert set(PLACE) == set(PlaceOrder._fields)
    for name, index in PLACE.items():
        assert PlaceOrder._fields[index] == name


@pytest.mark.parametrize("cls", [CancelOrder, AmendOrder])
def test_cancel_and_amend_positions_match_their_fields(cls: type) -> None:
    for name, index in FIND.items():
        assert cls._fields[index] == name  # type: ignore[attr-defined]


def test_every_command_with_an_account_has_it_first() -> None:
    from sandbox.engine import commands

    for cls in vars(commands).values():
        fields = getattr(cls, "_fields", ())
        if "account" in fields:
            assert fields.index("account") == engine._ACCOUNT, cls


def test_a_command_equals_only_its_own_kind() -> None:
    assert Deposit("a", 1) == Deposit("a", 1)
    assert Deposit("a", 1) != Withdraw("a", 1)
    assert Deposit("a", 1) != ("a", 1)
    assert ("a", 1) != Deposit("a", 1)  # noqa: SIM300 (the reflected comparison)
    assert (Deposit("a", 1) != Deposit("a", 1)) is False
    assert CancelAll("a") != CancelAll("b")
    assert Tick() == Tick() and Tick() != ()
    place = PlaceOrder("a", "BTC-PERP", Side.BUY, 5, 100)
    assert {place: 1}[PlaceOrder("a", "BTC-PERP", Side.BUY, 5, 100)] == 1
    assert len({Deposit("a", 1), Withdraw("a", 1), ("a", 1)}) == 3


def test_commands_are_immutable() -> None:
    place = PlaceOrder("a", "BTC-PERP", Side.BUY, 5, 100)
    with pytest.raises(AttributeError):
        place.qty = 6  # type: ignore[misc]
    assert place._replace(qty=6).qty == 6 and place.qty == 5

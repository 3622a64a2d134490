"""Any value in any field of any command: ``submit`` answers, it never raises.

Python callers can put anything in a command (the named tuples do not check their fields). For
every command type, every field is given values of the wrong type or shape, one at a time, on
an exchange with an account, a resting order and a position. Each command must come back as
events or one ``Rejected``, and a rejection must leave the exchange exactly as it was. Runs on
the compiled engine and on the Python sources (``make test``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Deposit,
    Exchange,
    ManualClock,
    PlaceOrder,
    RegisterBackstop,
    Rejected,
    SetLeverage,
    SetMarkPrice,
    Side,
    UpdateIndexSource,
    Withdraw,
    default_instruments,
)

from .conftest import snapshot, usdt

BTC = "BTC-PERP"

# A well-formed instance of each command; the test spoils one field at a time.
VALID: list[Any] = [
    Deposit("alice", usdt(1_000)),
    Withdraw("alice", usdt(1)),
    PlaceOrder("alice", BTC, Side.BUY, 10, 590_000),
    CancelOrder("alice", BTC, order_id=1),
    CancelAll("alice", BTC),
    AmendOrder("alice", BTC, order_id=1, price=591_000),
    SetLeverage("alice", BTC, 5),
    SetMarkPrice(BTC, 600_000),
    UpdateIndexSource(BTC, "spot-a", 600_000),
    RegisterBackstop("alice", BTC, 10, 1_000),
]

WRONG: list[Any] = [
    None,
    True,
    -1,
    0,
    10**40,
    1.5,
    float("nan"),
    float("inf"),
    Decimal("1.5"),
    Decimal("NaN"),
    "",
    "nope",
    "x" * 1_000,
    b"alice",
    ["alice"],
    {"id": 1},
    (1, 2),
    object(),
]


def _exchange() -> Exchange:
    ex = Exchange(default_instruments(), clock=ManualClock(0))
    for account in ("alice", "bob"):
        ex.submit(Deposit(account, usdt(1_000_000)))
    ex.submit(PlaceOrder("alice", BTC, Side.BUY, 10, 590_000, client_id="a1"))
    ex.submit(PlaceOrder("bob", BTC, Side.SELL, 5, 600_000))
    ex.submit(PlaceOrder("alice", BTC, Side.BUY, 5, 600_000))  # a position for both
    return ex


@pytest.mark.parametrize("valid", VALID, ids=lambda c: type(c).__name__)
def test_no_field_value_makes_submit_raise(valid: Any) -> None:
    for name in valid._fields:
        for wrong in WRONG:
            ex = _exchange()
            before = snapshot(ex)
            command = valid._replace(**{name: wrong})
            events = ex.submit(command)  # must not raise
            assert events, (command, events)
            if type(events[0]) is Rejected:
                assert len(events) == 1, (command, events)
                assert snapshot(ex) == before, command

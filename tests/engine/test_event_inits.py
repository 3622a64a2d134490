"""The hot events' hand-written ``__init__`` must take every field, in field order."""

from __future__ import annotations

from dataclasses import fields

import pytest

from sandbox.engine.events import OrderAccepted, OrderAmended, OrderCanceled, Trade

# Field types by name (a compiled dataclass does not keep its annotations as written).
_TEXT = {"stream", "client_id", "account", "order_type", "tif", "reason"}
_TEXT |= {"maker_account", "taker_account"}
_FLAGS = {"reduce_only", "priority_kept"}


@pytest.mark.parametrize("cls", [OrderAccepted, Trade, OrderCanceled, OrderAmended])
def test_hand_written_init_matches_the_fields(cls: type) -> None:
    names = [f.name for f in fields(cls)]
    # One distinct value of the right type per field, passed positionally: a missing, extra or
    # misplaced parameter fails (compiled classes also check the types; they have no signature).
    values = [
        f"v{i}" if name in _TEXT else bool(i % 2) if name in _FLAGS else 1000 + i
        for i, name in enumerate(names)
    ]
    event = cls(*values)
    assert [getattr(event, n) for n in names] == values

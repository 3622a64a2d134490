"""The hot events' hand-written ``__init__`` must take every field, in field order."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

from sandbox.engine.events import OrderAccepted, OrderAmended, OrderCanceled, Trade


@pytest.mark.parametrize("cls", [OrderAccepted, Trade, OrderCanceled, OrderAmended])
def test_hand_written_init_matches_the_fields(cls: type) -> None:
    names = [f.name for f in fields(cls)]
    try:
        params = list(inspect.signature(cls.__init__).parameters)[1:]
    except ValueError:  # compiled: no signature; check by construction below
        params = names
    assert params == names
    # One distinct value of the right type per field (a compiled class checks the types).
    values = [
        f"v{i}" if "str" in str(f.type) else bool(i % 2) if f.type == "bool" else 1000 + i
        for i, f in enumerate(fields(cls))
    ]
    event = cls(*values)
    assert [getattr(event, n) for n in names] == values

"""Events: what ``Exchange.submit`` returns. Every state change is one sequenced event.

Sequenced events carry ``stream`` and a gapless ``seq`` per stream: a market's events
(orders, trades, leverage, mark) are on the stream named by its symbol, collateral movements on
the ``accounts`` stream. A refused command yields one :class:`Rejected`, which is not sequenced
because nothing changed.

Units are the engine's: prices in ticks, quantities in lots, money in 1e-8 USDT.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from .codes import RejectCode

ACCOUNTS_STREAM = "accounts"


@dataclass(slots=True, kw_only=True)
class Event:
    """Base of every event; ``ts`` is the clock's time in milliseconds."""

    ts: int

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict with a ``type`` key; enums become their values."""
        record: dict[str, Any] = {"type": type(self).__name__}
        for f in fields(self):
            value = getattr(self, f.name)
            record[f.name] = value.value if isinstance(value, Enum) else value
        return record


@dataclass(slots=True, kw_only=True)
class Rejected(Event):
    """The command was refused and changed nothing."""

    code: RejectCode
    message: str
    details: dict[str, Any]


@dataclass(slots=True, kw_only=True)
class SequencedEvent(Event):
    stream: str
    seq: int


@dataclass(slots=True, kw_only=True)
class Deposited(SequencedEvent):
    account: str
    amount: int
    collateral: int


@dataclass(slots=True, kw_only=True)
class Withdrawn(SequencedEvent):
    account: str
    amount: int
    collateral: int


@dataclass(slots=True, kw_only=True)
class OrderAccepted(SequencedEvent):
    order_id: int
    client_id: str | None
    account: str
    side: int
    order_type: str
    tif: str
    price: int
    qty: int
    reduce_only: bool


@dataclass(slots=True, kw_only=True)
class Trade(SequencedEvent):
    """One fill between a resting (maker) and an incoming (taker) order, at the maker's price.

    Fees are positive charges (a negative maker fee is a rebate). ``*_realized`` is the PnL the
    fill realized for each side; ``*_remaining`` the order's unfilled quantity after the fill.
    """

    trade_id: int
    price: int
    qty: int
    taker_side: int
    maker_order_id: int
    taker_order_id: int
    maker_account: str
    taker_account: str
    maker_fee: int
    taker_fee: int
    maker_realized: int
    taker_realized: int
    maker_remaining: int
    taker_remaining: int


@dataclass(slots=True, kw_only=True)
class OrderCanceled(SequencedEvent):
    """An order left the book unfilled (in part or whole).

    ``reason``: ``canceled`` (by its owner), ``expired`` (IOC/market remainder),
    ``self_trade`` (self-trade prevention), ``reduce_only`` (would no longer reduce the position).
    """

    order_id: int
    client_id: str | None
    account: str
    remaining: int
    reason: str


@dataclass(slots=True, kw_only=True)
class OrderAmended(SequencedEvent):
    order_id: int
    account: str
    price: int
    qty: int
    remaining: int
    priority_kept: bool


@dataclass(slots=True, kw_only=True)
class LeverageChanged(SequencedEvent):
    account: str
    leverage: int


@dataclass(slots=True, kw_only=True)
class MarkPriceSet(SequencedEvent):
    price: int


def encode_event(event: Event) -> bytes:
    """Canonical bytes for an event log line: same events -> byte-identical log."""
    return json.dumps(event.to_record(), sort_keys=True, separators=(",", ":")).encode()

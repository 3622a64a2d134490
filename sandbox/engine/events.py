"""Events: what ``Exchange.submit`` returns. Every state change is one sequenced event.

Sequenced events carry ``stream`` and a gapless ``seq`` per stream: a market's events
(orders, trades, leverage, mark) are on the stream named by its symbol, collateral movements on
the ``accounts`` stream. A refused command yields one :class:`Rejected`, which is not sequenced
because nothing changed.

Units are the engine's: prices in ticks, quantities in lots, money in 1e-8 USDT. Field order is
part of the API: the hottest events are built positionally (keyword construction of a large
slotted dataclass costs about a tenth of a command), and those four (OrderAccepted, Trade,
OrderCanceled, OrderAmended) have a hand-written ``__init__`` in field order - when the engine
is compiled (see README), mypyc compiles it, while dataclass's generated one stays interpreted.

Compiled, events are not tracked by the cyclic garbage collector (mypyc's ``acyclic``): each
command makes one or more and its caller usually drops them at once, and an untracked object is
smaller (no collector header) and cheaper to make and free. Their fields are typed values
(strings, numbers, enums; a rejection's details dict, a list of names): an event can only be in
a reference cycle that code outside the engine builds through those containers, and such a
cycle would not be freed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Final

from mypy_extensions import i64, mypyc_attr

from .codes import RejectCode

ACCOUNTS_STREAM: Final = "accounts"


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
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


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Rejected(Event):
    """The command was refused and changed nothing."""

    code: RejectCode
    message: str
    details: dict[str, Any]


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class SequencedEvent(Event):
    stream: str
    seq: i64


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Deposited(SequencedEvent):
    account: str
    amount: int
    collateral: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class Withdrawn(SequencedEvent):
    account: str
    amount: int
    collateral: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True, init=False)
class OrderAccepted(SequencedEvent):
    order_id: int
    client_id: str | None
    account: str
    side: i64
    order_type: str
    tif: str
    price: i64
    qty: i64
    reduce_only: bool

    def __init__(  # by hand, in field order: compiled, unlike dataclass's
        self,
        ts: int,
        stream: str,
        seq: i64,
        order_id: int,
        client_id: str | None,
        account: str,
        side: i64,
        order_type: str,
        tif: str,
        price: i64,
        qty: i64,
        reduce_only: bool,
    ) -> None:
        self.ts = ts
        self.stream = stream
        self.seq = seq
        self.order_id = order_id
        self.client_id = client_id
        self.account = account
        self.side = side
        self.order_type = order_type
        self.tif = tif
        self.price = price
        self.qty = qty
        self.reduce_only = reduce_only


@mypyc_attr(acyclic=True)
@dataclass(slots=True, init=False)
class Trade(SequencedEvent):
    """One fill between a resting (maker) and an incoming (taker) order, at the maker's price.

    Fees are positive charges (a negative maker fee is a rebate). ``*_realized`` is the PnL the
    fill realized for each side; ``*_remaining`` the order's unfilled quantity after the fill.
    """

    trade_id: i64
    price: i64
    qty: i64
    taker_side: i64
    maker_order_id: int
    taker_order_id: int
    maker_account: str
    taker_account: str
    maker_fee: int
    taker_fee: int
    maker_realized: int
    taker_realized: int
    maker_remaining: i64
    taker_remaining: i64

    def __init__(  # by hand, in field order: compiled, unlike dataclass's
        self,
        ts: int,
        stream: str,
        seq: i64,
        trade_id: i64,
        price: i64,
        qty: i64,
        taker_side: i64,
        maker_order_id: int,
        taker_order_id: int,
        maker_account: str,
        taker_account: str,
        maker_fee: int,
        taker_fee: int,
        maker_realized: int,
        taker_realized: int,
        maker_remaining: i64,
        taker_remaining: i64,
    ) -> None:
        self.ts = ts
        self.stream = stream
        self.seq = seq
        self.trade_id = trade_id
        self.price = price
        self.qty = qty
        self.taker_side = taker_side
        self.maker_order_id = maker_order_id
        self.taker_order_id = taker_order_id
        self.maker_account = maker_account
        self.taker_account = taker_account
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.maker_realized = maker_realized
        self.taker_realized = taker_realized
        self.maker_remaining = maker_remaining
        self.taker_remaining = taker_remaining


@mypyc_attr(acyclic=True)
@dataclass(slots=True, init=False)
class OrderCanceled(SequencedEvent):
    """An order left the book unfilled (in part or whole).

    ``reason``: ``canceled`` (by its owner), ``expired`` (IOC/market remainder),
    ``self_trade`` (self-trade prevention), ``reduce_only`` (would no longer reduce the position).
    """

    order_id: int
    client_id: str | None
    account: str
    side: i64
    price: i64
    remaining: i64
    reason: str

    def __init__(  # by hand, in field order: compiled, unlike dataclass's
        self,
        ts: int,
        stream: str,
        seq: i64,
        order_id: int,
        client_id: str | None,
        account: str,
        side: i64,
        price: i64,
        remaining: i64,
        reason: str,
    ) -> None:
        self.ts = ts
        self.stream = stream
        self.seq = seq
        self.order_id = order_id
        self.client_id = client_id
        self.account = account
        self.side = side
        self.price = price
        self.remaining = remaining
        self.reason = reason


@mypyc_attr(acyclic=True)
@dataclass(slots=True, init=False)
class OrderAmended(SequencedEvent):
    """``price``/``qty`` are the new values; ``old_price`` where the order rested before."""

    order_id: int
    account: str
    side: i64
    old_price: i64
    price: i64
    qty: i64
    remaining: i64
    priority_kept: bool

    def __init__(  # by hand, in field order: compiled, unlike dataclass's
        self,
        ts: int,
        stream: str,
        seq: i64,
        order_id: int,
        account: str,
        side: i64,
        old_price: i64,
        price: i64,
        qty: i64,
        remaining: i64,
        priority_kept: bool,
    ) -> None:
        self.ts = ts
        self.stream = stream
        self.seq = seq
        self.order_id = order_id
        self.account = account
        self.side = side
        self.old_price = old_price
        self.price = price
        self.qty = qty
        self.remaining = remaining
        self.priority_kept = priority_kept


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class LeverageChanged(SequencedEvent):
    account: str
    leverage: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class MarkPriceSet(SequencedEvent):
    price: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class IndexSourceUpdated(SequencedEvent):
    source: str
    price: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class PricesUpdated(SequencedEvent):
    """The scheduled index and mark update. ``funding_rate`` is the predicted rate used in P1."""

    index: int
    mark: int
    last: int | None
    funding_rate: int
    next_funding_ts: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class IndexDegraded(SequencedEvent):
    """Fewer than two usable sources: the index holds ``held`` until they come back.
    ``excluded`` lists ``source:reason``. Emitted when the state starts, not on every update."""

    held: int
    excluded: list[str]


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class IndexRestored(SequencedEvent):
    index: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class FundingSettled(SequencedEvent):
    """Funding at ``funding_ts``: every position paid ``size * mark * rate`` (longs pay when the
    rate is positive); ``residue`` (rounding, >= 0) went to the insurance fund."""

    funding_ts: int
    rate: int
    mark: int
    paid: int
    residue: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class FundingPaid(SequencedEvent):
    """One account's funding; ``amount`` > 0 paid, < 0 received."""

    account: str
    size: int
    amount: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class MarginCall(SequencedEvent):
    """Maintenance margin reached the margin-call share of equity (still above liquidation)."""

    account: str
    equity: int
    maintenance_margin: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class LiquidationStarted(SequencedEvent):
    account: str
    equity: int
    maintenance_margin: int
    orders_cancelled: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class LiquidationFill(SequencedEvent):
    """One liquidation step in one market: how much was to be closed and where it went.

    ``qty`` = ``book_qty + auction_qty + takeover_qty + adl_qty``; ``fee`` went to the insurance
    fund; equity and maintenance margin are the account's before the step.
    """

    account: str
    mode: str
    side: int
    qty: int
    book_qty: int
    auction_qty: int
    takeover_qty: int
    adl_qty: int
    mark: int
    bankruptcy_price: int
    fee: int
    equity: int
    maintenance_margin: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class PositionTransferred(SequencedEvent):
    """A position moved between accounts off the book at ``price``.

    ``reason``: ``auction`` (a backstop bought it), ``takeover`` (the insurance fund took it at
    the bankruptcy price) or ``adl`` (an opposing position was closed against it)."""

    from_account: str
    to_account: str
    side: int
    qty: int
    price: int
    reason: str


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class InsuranceFundUsed(SequencedEvent):
    """The insurance fund absorbed ``amount`` (> 0): a takeover below mark value, or a deficit
    left on an account. ``balance`` is the fund's collateral afterwards."""

    account: str
    amount: int
    balance: int
    reason: str


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class LiquidationFinished(SequencedEvent):
    account: str
    equity: int
    maintenance_margin: int


@mypyc_attr(acyclic=True)
@dataclass(slots=True)
class BackstopRegistered(SequencedEvent):
    account: str
    max_qty: int
    discount: int


def encode_event(event: Event) -> bytes:
    """Canonical bytes for an event log line: same events -> byte-identical log."""
    return json.dumps(event.to_record(), sort_keys=True, separators=(",", ":")).encode()

"""Commands: the only way to change the exchange's state (``Exchange.submit(command)``).

Prices are ``int`` ticks, quantities ``int`` lots and amounts ``int`` money units (1e-8 USDT);
convert decimals at the boundary with :class:`~sandbox.engine.instruments.Instrument`.

Commands are immutable named tuples. Nothing checks their fields on construction: the engine
validates every field and answers a bad one with a typed rejection. Two commands are equal only
if they are of the same class with equal fields (unlike plain tuples). The compiled engine reads
the fields of the commands it sees most by position, which costs far less than by name.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any, NamedTuple


class Side(IntEnum):
    """Order side; the value is the sign of the position change."""

    BUY = 1
    SELL = -1


class OrderType(StrEnum):
    """LIMIT and MARKET are what clients send; LIQUIDATION marks the exchange's own orders."""

    LIMIT = "LIMIT"
    MARKET = "MARKET"
    LIQUIDATION = "LIQUIDATION"


class TimeInForce(StrEnum):
    """GTC rests; IOC fills what it can and expires the rest; FOK fills fully or is rejected;
    POST_ONLY rests only if it would not take (otherwise rejected)."""

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    POST_ONLY = "POST_ONLY"


class SelfTradePrevention(StrEnum):
    """What happens when a taker meets a resting order of the same account."""

    CANCEL_TAKER = "CANCEL_TAKER"
    CANCEL_MAKER = "CANCEL_MAKER"
    CANCEL_BOTH = "CANCEL_BOTH"


class Deposit(NamedTuple):
    """Credit collateral; creates the account on first deposit."""

    account: str
    amount: int


class Withdraw(NamedTuple):
    """Debit collateral, at most the available balance."""

    account: str
    amount: int


class PlaceOrder(NamedTuple):
    """A new order. ``price`` is required for LIMIT and must be None for MARKET.

    ``tif`` defaults to GTC for limit and IOC for market orders; ``stp`` defaults to the
    exchange's configured self-trade prevention mode.
    """

    account: str
    market: str
    side: Side
    qty: int
    price: int | None = None
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce | None = None
    reduce_only: bool = False
    client_id: str | None = None
    stp: SelfTradePrevention | None = None


class CancelOrder(NamedTuple):
    """Cancel one open order by exchange ``order_id`` or by ``client_id``."""

    account: str
    market: str
    order_id: int | None = None
    client_id: str | None = None


class CancelAll(NamedTuple):
    """Cancel every open order of the account, in one market or (``market=None``) in all."""

    account: str
    market: str | None = None


class AmendOrder(NamedTuple):
    """Change an open order's price and/or total quantity (``qty`` includes what has filled).

    A price change or a size increase loses time priority; a size decrease keeps it.
    """

    account: str
    market: str
    order_id: int | None = None
    client_id: str | None = None
    price: int | None = None
    qty: int | None = None


class SetLeverage(NamedTuple):
    """Set the account's leverage in a market (1 .. the bracket's maximum)."""

    account: str
    market: str
    leverage: int


class SetMarkPrice(NamedTuple):
    """Set a market's mark price (the reference for bands, margin and unrealized PnL)."""

    market: str
    price: int


class UpdateIndexSource(NamedTuple):
    """A spot source's latest price (ticks) for a market's index, stamped with the clock."""

    market: str
    source: str
    price: int


class Tick(NamedTuple):
    """Let time act: sample premiums, settle funding, recompute index and mark, run due
    liquidation steps, and unwind insurance-fund positions, up to the clock's current time."""


class RegisterBackstop(NamedTuple):
    """Offer to take liquidated positions in a market's auctions: up to ``max_qty`` lots at a
    price at least ``discount`` (rate units) better than the mark. ``max_qty=0`` withdraws."""

    account: str
    market: str
    max_qty: int
    discount: int


Command = (
    Deposit
    | Withdraw
    | PlaceOrder
    | CancelOrder
    | CancelAll
    | AmendOrder
    | SetLeverage
    | SetMarkPrice
    | UpdateIndexSource
    | Tick
    | RegisterBackstop
)


def _same_command(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other) is True


def _other_command(self: tuple[Any, ...], other: object) -> bool:
    return not _same_command(self, other)


def _command_hash(self: tuple[Any, ...]) -> int:
    return hash((type(self).__name__, tuple.__hash__(self)))


# A command equals only a command of its own class: Deposit("a", 1) != Withdraw("a", 1) and
# != ("a", 1). (A NamedTuple body cannot override these, so they are set here.)
for _cls in (
    Deposit,
    Withdraw,
    PlaceOrder,
    CancelOrder,
    CancelAll,
    AmendOrder,
    SetLeverage,
    SetMarkPrice,
    UpdateIndexSource,
    Tick,
    RegisterBackstop,
):
    setattr(_cls, "__eq__", _same_command)  # noqa: B010 (mypy refuses assigning a method)
    setattr(_cls, "__ne__", _other_command)  # noqa: B010
    setattr(_cls, "__hash__", _command_hash)  # noqa: B010
del _cls

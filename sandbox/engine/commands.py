"""Commands: the only way to change the exchange's state (``Exchange.submit(command)``).

Prices are ``int`` ticks, quantities ``int`` lots and amounts ``int`` money units (1e-8 USDT);
convert decimals at the boundary with :class:`~sandbox.engine.instruments.Instrument`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


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


@dataclass(frozen=True, slots=True)
class Deposit:
    """Credit collateral; creates the account on first deposit."""

    account: str
    amount: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Debit collateral, at most the available balance."""

    account: str
    amount: int


@dataclass(frozen=True, slots=True)
class PlaceOrder:
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


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel one open order by exchange ``order_id`` or by ``client_id``."""

    account: str
    market: str
    order_id: int | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelAll:
    """Cancel every open order of the account, in one market or (``market=None``) in all."""

    account: str
    market: str | None = None


@dataclass(frozen=True, slots=True)
class AmendOrder:
    """Change an open order's price and/or total quantity (``qty`` includes what has filled).

    A price change or a size increase loses time priority; a size decrease keeps it.
    """

    account: str
    market: str
    order_id: int | None = None
    client_id: str | None = None
    price: int | None = None
    qty: int | None = None


@dataclass(frozen=True, slots=True)
class SetLeverage:
    """Set the account's leverage in a market (1 .. the bracket's maximum)."""

    account: str
    market: str
    leverage: int


@dataclass(frozen=True, slots=True)
class SetMarkPrice:
    """Set a market's mark price (the reference for bands, margin and unrealized PnL)."""

    market: str
    price: int


@dataclass(frozen=True, slots=True)
class UpdateIndexSource:
    """A spot source's latest price (ticks) for a market's index, stamped with the clock."""

    market: str
    source: str
    price: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Let time act: sample premiums, settle funding, recompute index and mark, run due
    liquidation steps, and unwind insurance-fund positions, up to the clock's current time."""


@dataclass(frozen=True, slots=True)
class RegisterBackstop:
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

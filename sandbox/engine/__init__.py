"""The pure exchange engine: deterministic, synchronous, no I/O and no wall clock.

``Exchange.submit(command) -> list[Event]`` is the whole interface that changes state.
"""

from .clock import Clock, ManualClock
from .codes import EngineError, RejectCode
from .commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    OrderType,
    PlaceOrder,
    SelfTradePrevention,
    SetLeverage,
    SetMarkPrice,
    Side,
    TimeInForce,
    Withdraw,
)
from .events import (
    Deposited,
    Event,
    LeverageChanged,
    MarkPriceSet,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    Rejected,
    SequencedEvent,
    Trade,
    Withdrawn,
    encode_event,
)
from .exchange import AccountView, BookSnapshot, Exchange, ExchangeConfig, PositionView
from .instruments import Instrument, default_instruments, money_units

__all__ = [
    "AccountView",
    "AmendOrder",
    "BookSnapshot",
    "CancelAll",
    "CancelOrder",
    "Clock",
    "Command",
    "Deposit",
    "Deposited",
    "EngineError",
    "Event",
    "Exchange",
    "ExchangeConfig",
    "Instrument",
    "LeverageChanged",
    "ManualClock",
    "MarkPriceSet",
    "OrderAccepted",
    "OrderAmended",
    "OrderCanceled",
    "OrderType",
    "PlaceOrder",
    "PositionView",
    "RejectCode",
    "Rejected",
    "SelfTradePrevention",
    "SequencedEvent",
    "SetLeverage",
    "SetMarkPrice",
    "Side",
    "TimeInForce",
    "Trade",
    "Withdraw",
    "Withdrawn",
    "default_instruments",
    "encode_event",
    "money_units",
]

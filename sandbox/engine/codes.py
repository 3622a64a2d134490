"""Stable rejection codes and the engine's typed error.

A rejected command changes no state; the exchange answers it with a ``Rejected`` event carrying
one of these codes, a message, and the numbers that explain it (``details``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RejectCode(StrEnum):
    """Why a command was refused. The values are part of the public API: never renumber."""

    UNKNOWN_MARKET = "UNKNOWN_MARKET"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    INVALID_ACCOUNT_ID = "INVALID_ACCOUNT_ID"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
    INVALID_ORDER = "INVALID_ORDER"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_CLIENT_ORDER_ID = "INVALID_CLIENT_ORDER_ID"
    INVALID_LEVERAGE = "INVALID_LEVERAGE"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    WITHDRAWAL_EXCEEDS_AVAILABLE = "WITHDRAWAL_EXCEEDS_AVAILABLE"
    MAX_POSITION_EXCEEDED = "MAX_POSITION_EXCEEDED"
    TOO_MANY_OPEN_ORDERS = "TOO_MANY_OPEN_ORDERS"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    REDUCE_ONLY_WOULD_INCREASE = "REDUCE_ONLY_WOULD_INCREASE"
    AMEND_NO_CHANGE = "AMEND_NO_CHANGE"
    ACCOUNT_IN_LIQUIDATION = "ACCOUNT_IN_LIQUIDATION"
    UNKNOWN_INDEX_SOURCE = "UNKNOWN_INDEX_SOURCE"
    INVALID_BACKSTOP = "INVALID_BACKSTOP"
    RESERVED_ACCOUNT = "RESERVED_ACCOUNT"


class EngineError(Exception):
    """A command or a boundary conversion was refused; carries a stable ``RejectCode``."""

    def __init__(self, code: RejectCode, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

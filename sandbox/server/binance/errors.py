"""Binance-style errors: ``{"code": -NNNN, "msg": "..."}`` with Binance's codes and statuses.

The sandbox's own errors (engine rejections, conversions) are translated here, so the compat
layer answers every failure in the shape Binance clients parse (ccxt maps ``code``/``msg`` to
its exception classes; a non-JSON body would look like an outage to it).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from sandbox.engine.codes import EngineError, RejectCode

from ..wire import ApiError


class BinanceError(Exception):
    """A refused request: HTTP ``status`` and Binance's numeric ``code`` with its message."""

    def __init__(
        self, code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps({"code": self.code, "msg": self.msg})


# Binance's codes for the conditions the sandbox reports.
UNKNOWN = -1000
INTERNAL_ERROR = -1001
TIMEOUT = -1007
TOO_MANY_REQUESTS = -1003
TOO_MANY_ORDERS = -1015
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
ILLEGAL_CHARS = -1100
TOO_MANY_PARAMETERS = -1101
MANDATORY_PARAM = -1102
UNKNOWN_PARAM = -1104
PARAM_NOT_REQUIRED = -1106
BAD_PRECISION = -1111
INVALID_TIF = -1115
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
BAD_INTERVAL = -1120
BAD_SYMBOL = -1121
INVALID_LISTEN_KEY = -1125
BAD_RECV_WINDOW = -1131
ILLEGAL_PARAM = -1130
UNKNOWN_ORDER_CANCEL = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FMT = -2014
REJECTED_MBX_KEY = -2015
MARGIN_INSUFFICIENT = -2019
REDUCE_ONLY_REJECT = -2022
USER_IN_LIQUIDATION = -2023
MAX_OPEN_ORDERS = -2025
MAX_POSITION = -2027
FILTER_FAILURE = -1013
QTY_TOO_SMALL = -4003
QTY_TOO_LARGE = -4005
PRICE_NOT_ON_TICK = -4014
PRICE_TOO_HIGH = -4016
PRICE_TOO_LOW = -4024
INVALID_LEVERAGE = -4028
NO_NEED_TO_CHANGE_MARGIN_TYPE = -4046
NO_NEED_TO_CHANGE_POSITION_SIDE = -4059
POSITION_SIDE_MISMATCH = -4061
DUPLICATE_CLIENT_ID = -4116
MIN_NOTIONAL = -4164
ISOLATED_UNSUPPORTED = -4168
NO_NEED_TO_MODIFY = -5027
FOK_REJECTED = -5021
GTX_REJECTED = -5022
NOT_FOUND = -5000

_MESSAGES: dict[RejectCode, tuple[int, str]] = {
    RejectCode.UNKNOWN_MARKET: (BAD_SYMBOL, "Invalid symbol."),
    RejectCode.UNKNOWN_ORDER: (NO_SUCH_ORDER, "Order does not exist."),
    RejectCode.INSUFFICIENT_MARGIN: (MARGIN_INSUFFICIENT, "Margin is insufficient."),
    RejectCode.UNKNOWN_ACCOUNT: (MARGIN_INSUFFICIENT, "Margin is insufficient."),
    RejectCode.REDUCE_ONLY_WOULD_INCREASE: (REDUCE_ONLY_REJECT, "ReduceOnly Order is rejected."),
    RejectCode.ACCOUNT_IN_LIQUIDATION: (USER_IN_LIQUIDATION, "User in liquidation mode now."),
    RejectCode.TOO_MANY_OPEN_ORDERS: (MAX_OPEN_ORDERS, "Reach max open order limit."),
    RejectCode.MAX_POSITION_EXCEEDED: (
        MAX_POSITION,
        "Exceeded the maximum allowable position at current leverage.",
    ),
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: (DUPLICATE_CLIENT_ID, "ClientOrderId is duplicated."),
    RejectCode.POST_ONLY_WOULD_TAKE: (
        GTX_REJECTED,
        "Due to the order could not be executed as maker, the Post Only order will be "
        "rejected. The order will not be recorded in the order history",
    ),
    RejectCode.FOK_NOT_FILLABLE: (
        FOK_REJECTED,
        "Due to the order could not be filled immediately, the FOK order has been rejected. "
        "The order will not be recorded in the order history",
    ),
    RejectCode.INVALID_CLIENT_ORDER_ID: (
        ILLEGAL_CHARS,
        "Illegal characters found in parameter 'newClientOrderId'; legal range is "
        "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
    ),
    RejectCode.INVALID_LEVERAGE: (INVALID_LEVERAGE, "Leverage is not valid"),
    RejectCode.AMEND_NO_CHANGE: (NO_NEED_TO_MODIFY, "No need to modify the order."),
    RejectCode.QTY_BELOW_MIN: (FILTER_FAILURE, "Filter failure: LOT_SIZE"),
    RejectCode.QTY_ABOVE_MAX: (FILTER_FAILURE, "Filter failure: LOT_SIZE"),
}


def from_reject(
    code: RejectCode,
    message: str,
    details: dict[str, Any],
    *,
    price: Decimal | None = None,
    market_order: bool = False,
) -> BinanceError:
    """Binance's code for an engine rejection. ``price``/``market_order`` describe the order
    that was refused, to tell a too-high price from a too-low one and LOT_SIZE from
    MARKET_LOT_SIZE."""
    if code is RejectCode.NOTIONAL_BELOW_MIN:
        floor = details.get("min_notional", "the minimum")
        return BinanceError(
            MIN_NOTIONAL,
            f"Order's notional must be no smaller than {floor} (unless you choose reduce only).",
        )
    if code is RejectCode.PRICE_OUT_OF_BAND:
        high = details.get("max_price")
        low = details.get("min_price")
        if price is not None and high is not None and price > Decimal(str(high)):
            return BinanceError(PRICE_TOO_HIGH, f"Limit price can't be higher than {high}.")
        return BinanceError(PRICE_TOO_LOW, f"Limit price can't be lower than {low}.")
    if code is RejectCode.QTY_ABOVE_MAX and market_order:
        return BinanceError(FILTER_FAILURE, "Filter failure: MARKET_LOT_SIZE")
    if code is RejectCode.INVALID_QUANTITY:
        return BinanceError(BAD_PRECISION, "Precision is over the maximum defined for this asset.")
    if code is RejectCode.INVALID_PRICE:
        return BinanceError(PRICE_NOT_ON_TICK, "Price not increased by tick size.")
    known = _MESSAGES.get(code)
    if known is not None:
        return BinanceError(known[0], known[1])
    return BinanceError(ILLEGAL_PARAM, f"Invalid data sent for a parameter: {message}")


def from_api_error(
    exc: ApiError, *, price: Decimal | None = None, market_order: bool = False
) -> BinanceError:
    """Translate the sandbox's own :class:`ApiError` (its code is a RejectCode name)."""
    try:
        code = RejectCode(exc.code)
    except ValueError:
        return BinanceError(UNKNOWN, exc.message)
    return from_reject(code, exc.message, exc.details, price=price, market_order=market_order)


def from_engine_error(exc: EngineError) -> BinanceError:
    return from_reject(exc.code, exc.message, exc.details)


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        MANDATORY_PARAM,
        f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
    )


def illegal(name: str) -> BinanceError:
    return BinanceError(ILLEGAL_PARAM, f"Invalid data sent for a parameter '{name}'.")

"""Engine units <-> wire JSON: decimal strings for money, typed errors for bad input.

Everything here is plain functions over the engine's ints and the instruments; the routes and
the WebSocket publisher use them so REST and streams say the same thing in the same words.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from perpbot.risk.margin import MONEY_DECIMALS, RATE_DECIMALS
from sandbox.engine import EngineError, Instrument
from sandbox.engine.book import Order
from sandbox.engine.codes import RejectCode
from sandbox.engine.events import Rejected
from sandbox.engine.exchange import AccountView, PositionView

_MONEY_SCALE = 10**MONEY_DECIMALS
_RATE_SCALE = 10**RATE_DECIMALS


class ApiError(Exception):
    """A request the API refuses: HTTP ``status`` with a stable ``code`` (docs/api.md)."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    """The error envelope as JSON bytes (for answers written outside FastAPI)."""
    return orjson.dumps({"code": code, "message": message, "details": details or {}})


# HTTP status per engine rejection (default 400).
_REJECT_STATUS = {
    RejectCode.UNKNOWN_ORDER: 404,
    RejectCode.UNKNOWN_MARKET: 404,
    RejectCode.UNKNOWN_ACCOUNT: 404,
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: 409,
    RejectCode.RESERVED_ACCOUNT: 403,
}


def _scaled(units: int, decimals: int, scale: int) -> str:
    """``units / 10**decimals`` as the shortest exact decimal string."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(-units if units < 0 else units, scale)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"


def money(units: int) -> str:
    """Money units (1e-8 USDT) -> ``"12.5"``."""
    return _scaled(units, MONEY_DECIMALS, _MONEY_SCALE)


def rate(units: int) -> str:
    """Rate units (1e-8) -> ``"0.0001"``."""
    return _scaled(units, RATE_DECIMALS, _RATE_SCALE)


_STEPS: dict[Decimal, tuple[int, int, int]] = {}


def _step(size: Decimal) -> tuple[int, int, int]:
    """``size`` as ``(multiplier, decimals, 10**decimals)``: units * size = units * m / 10**d."""
    cached = _STEPS.get(size)
    if cached is None:
        num, den = size.as_integer_ratio()
        decimals = 0
        while 10**decimals % den:
            decimals += 1
        cached = _STEPS[size] = (num * 10**decimals // den, decimals, 10**decimals)
    return cached


def price(inst: Instrument, ticks: int) -> str:
    """Ticks -> the exact decimal price string (``"64250.5"``)."""
    mult, decimals, scale = _step(inst.tick_size)
    return _scaled(ticks * mult, decimals, scale)


def qty(inst: Instrument, lots: int) -> str:
    """Lots -> the exact decimal quantity string (``"0.012"``)."""
    mult, decimals, scale = _step(inst.lot_size)
    return _scaled(lots * mult, decimals, scale)


def _fmt(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


SIDE_NAME = {1: "BUY", -1: "SELL"}


def order_json(inst: Instrument, order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "client_order_id": order.client_id,
        "market": order.market,
        "side": SIDE_NAME[order.side],
        "type": str(order.order_type),
        "tif": str(order.tif),
        "price": price(inst, order.price),
        "qty": qty(inst, order.qty),
        "filled_qty": qty(inst, order.filled),
        "remaining_qty": qty(inst, order.remaining),
        "reduce_only": order.reduce_only,
        "status": order.status,
        "created_ts": order.ts,
        "done_ts": order.done_ts or None,
    }


_PRICE_KEYS = frozenset({"best_price", "mark", "max_price", "min_price", "price"})
_QTY_KEYS = frozenset({"fillable", "filled", "max_qty", "min_qty", "position"})
_MONEY_KEYS = frozenset(
    {"available", "max_notional", "min_notional", "notional", "released_margin", "required"}
    | {"requested"}
)


def wire_details(details: dict[str, Any], inst: Instrument | None) -> dict[str, Any]:
    """Engine rejection details in wire units: prices, quantities and money as decimals."""
    out: dict[str, Any] = {}
    for key, value in details.items():
        if type(value) is int:
            if key in _MONEY_KEYS:
                value = money(value)
            elif inst is not None and key in _PRICE_KEYS:
                value = price(inst, value)
            elif inst is not None and key in _QTY_KEYS:
                value = qty(inst, value)
        elif key == "existing_order" and isinstance(value, dict):
            owner = inst
            if owner is not None:
                value = _record_json(owner, value)
        out[key] = value
    return out


# The engine words its messages in engine units (ticks, lots, 1e-8 USDT); on the wire, the
# messages that quote numbers are rebuilt from the converted details.
_MESSAGES: dict[RejectCode, tuple[str, str]] = {
    RejectCode.MAX_POSITION_EXCEEDED: (
        "worst-case position notional {notional} USDT exceeds {max_notional} USDT at "
        "{leverage}x leverage",
        "the worst-case position would exceed the bracket limit at this leverage",
    ),
    RejectCode.INSUFFICIENT_MARGIN: (
        "order needs {required} USDT of margin, {available} USDT available",
        "not enough available margin",
    ),
    RejectCode.QTY_BELOW_MIN: ("quantity is below the minimum {min_qty}", "quantity too small"),
    RejectCode.QTY_ABOVE_MAX: ("quantity is above the maximum {max_qty}", "quantity too large"),
    RejectCode.POST_ONLY_WOULD_TAKE: (
        "a post-only order at this price would take the resting {best_price}",
        "a post-only order at this price would take liquidity",
    ),
    RejectCode.NOTIONAL_BELOW_MIN: (
        "notional {notional} USDT is below the minimum {min_notional} USDT",
        "notional is below the market's minimum",
    ),
    RejectCode.FOK_NOT_FILLABLE: (
        "fill-or-kill: only {fillable} can fill now",
        "fill-or-kill: the book cannot fill it now",
    ),
    RejectCode.PRICE_OUT_OF_BAND: (
        "price is outside the band around the mark {mark}: [{min_price}, {max_price}]",
        "price is outside the band around the mark",
    ),
    RejectCode.WITHDRAWAL_EXCEEDS_AVAILABLE: (
        "withdrawal of {requested} USDT exceeds the {available} USDT available",
        "withdrawal exceeds the available balance",
    ),
}


def wire_message(code: RejectCode, message: str, details: dict[str, Any]) -> str:
    """The engine's message, restated in wire units where it quotes numbers."""
    if code is RejectCode.INVALID_QUANTITY and "filled" in details:
        return f"the new quantity must exceed what has filled ({details['filled']})"
    templates = _MESSAGES.get(code)
    if templates is None:
        return message
    try:
        return templates[0].format(**details)
    except (KeyError, IndexError):
        return templates[1]


def rejection_error(event: Rejected, inst: Instrument | None) -> ApiError:
    """The API error for an engine rejection (a duplicate carries the existing order)."""
    details = wire_details(event.details, inst)
    message = wire_message(event.code, event.message, details)
    return ApiError(_REJECT_STATUS.get(event.code, 400), str(event.code), message, details)


def _record_json(inst: Instrument, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_id": rec["order_id"],
        "client_order_id": rec["client_id"],
        "market": rec["market"],
        "side": SIDE_NAME[rec["side"]],
        "type": rec["order_type"],
        "tif": rec["tif"],
        "price": price(inst, rec["price"]),
        "qty": qty(inst, rec["qty"]),
        "filled_qty": qty(inst, rec["filled"]),
        "remaining_qty": qty(inst, rec["remaining"]),
        "reduce_only": rec["reduce_only"],
        "status": rec["status"],
        "created_ts": rec["ts"],
        "done_ts": None,
    }


def engine_error(exc: EngineError) -> ApiError:
    """A boundary conversion refused by the engine's rules (bad decimal, off tick, ...)."""
    return ApiError(
        _REJECT_STATUS.get(exc.code, 400),
        str(exc.code),
        exc.message,
        wire_details(exc.details, None),
    )


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message, details)


def position_json(inst: Instrument, pos: PositionView) -> dict[str, Any]:
    size = pos.size
    entry = None
    if size:
        # average entry = cost / (size * factor), shown exactly to the tick's precision and
        # beyond (a cost basis need not be on the tick after partial closes).
        entry_dec = Decimal(pos.cost) / Decimal(size * inst.notional_factor) * inst.tick_size
        entry = _fmt(entry_dec.quantize(Decimal(1).scaleb(-12)).normalize())
    return {
        "market": pos.market,
        "size": qty(inst, size),
        "side": "LONG" if size > 0 else "SHORT" if size < 0 else "FLAT",
        "entry_price": entry,
        "mark": price(inst, pos.mark),
        "notional": money(abs(size) * pos.mark * inst.notional_factor),
        "leverage": pos.leverage,
        "unrealized_pnl": money(pos.unrealized_pnl),
        "realized_pnl": money(pos.realized_pnl),
        "initial_margin": money(pos.initial_margin),
        "maintenance_margin": money(pos.maintenance_margin),
        "order_margin": money(pos.order_margin),
        "liquidation_price": (
            None if pos.liquidation_price is None else price(inst, pos.liquidation_price)
        ),
    }


def account_json(instruments: dict[str, Instrument], view: AccountView) -> dict[str, Any]:
    return {
        "account": view.account,
        "collateral": money(view.collateral),
        "equity": money(view.equity),
        "unrealized_pnl": money(view.unrealized_pnl),
        "position_margin": money(view.position_margin),
        "order_margin": money(view.order_margin),
        "available": money(view.available),
        "maintenance_margin": money(view.maintenance_margin),
        "margin_ratio": None if view.margin_ratio is None else rate(view.margin_ratio),
        "in_liquidation": view.in_liquidation,
        "positions": [position_json(instruments[p.market], p) for p in view.positions],
    }

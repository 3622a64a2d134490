"""Shared pieces of the /fapi handlers: request parameters, route specs, and the context
(engine, records, streams, throttle) with the lookups every handler uses."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.engine import Instrument
from sandbox.engine.book import Order

from ..state import SandboxState
from ..throttle import Throttle, ThrottleConfig
from . import errors as E
from .codec import OrderQuotes, Symbols, order_json
from .errors import BinanceError
from .listen_keys import ListenKeys
from .streams import BinanceStreams

_DECIMAL = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
INT_PATTERN = re.compile(r"^-?[0-9]{1,19}$")


def binance_throttle_config() -> ThrottleConfig:
    """Binance's USDⓈ-M defaults: 2400 weight/min per IP, 300 orders/10 s, 1200 orders/min."""
    return ThrottleConfig(
        weight_limit=2400,
        weight_window_ms=60_000,
        key_weight_limit=2400,
        order_limit=300,
        order_window_ms=10_000,
        order_limit_long=1200,
        order_window_long_ms=60_000,
    )


class Params:
    """Request parameters (query string then form body) with Binance's validation errors."""

    def __init__(self, pairs: list[tuple[str, str]], symbols: Symbols) -> None:
        self.values: dict[str, str] = {}
        for k, v in pairs:
            if k in self.values:
                raise BinanceError(
                    E.TOO_MANY_PARAMETERS, "Duplicate values for a parameter detected."
                )
            self.values[k] = v
        self.symbols = symbols
        self.account = ""

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value else None

    def req(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise E.mandatory(name)
        return value

    def symbol(self, required: bool = True) -> str | None:
        raw = self.get("symbol") if not required else self.req("symbol")
        if raw is None:
            return None
        sym = self.symbols.ours(raw)
        if sym is None:
            raise BinanceError(E.BAD_SYMBOL, "Invalid symbol.")
        return sym

    def integer(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        raw = self.get(name)
        if raw is None:
            return default
        if not INT_PATTERN.match(raw):
            raise E.illegal(name)
        value = int(raw)
        if not lo <= value <= hi:
            raise E.illegal(name)
        return value

    def limit(self, default: int, hi: int) -> int:
        value = self.integer("limit", default, 1, 10**9)
        assert value is not None
        return min(value, hi)

    def flag(self, name: str) -> bool:
        raw = self.get(name)
        if raw is None:
            return False
        low = raw.lower()
        if low not in ("true", "false"):
            raise E.illegal(name)
        return low == "true"

    def decimal(self, name: str) -> Decimal | None:
        raw = self.get(name)
        if raw is None:
            return None
        if not _DECIMAL.match(raw):
            raise E.illegal(name)
        try:
            return Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            raise E.illegal(name) from None


Weight = int | Callable[[Params], int]


@dataclass(frozen=True, slots=True)
class Spec:
    """One route: weight, whether it is an order (order-count budget), and its auth level."""

    method: str
    path: str
    handler: Callable[[Params], Any]
    weight: Weight
    auth: str = "none"  # "none", "key" (X-MBX-APIKEY only) or "signed"
    orders: int = 0


def depth_weight(p: Params) -> int:
    """``/depth``: 2 up to 50 levels, 5 for 100, 10 for 500, 20 for 1000 (Binance's table)."""
    limit = p.integer("limit", 500, 1, 10**9) or 500
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def kline_weight(p: Params) -> int:
    """``/klines``: 1 below 100 candles, 2 below 500, 5 up to 1000, 10 beyond."""
    limit = p.integer("limit", 500, 1, 10**9) or 500
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def per_symbol(one: int, every: int) -> Callable[[Params], int]:
    """Weight ``one`` with a ``symbol`` parameter, ``every`` without (all symbols)."""
    return lambda p: one if p.get("symbol") else every


class Context:
    """What the handlers share: the sandbox, the compat layer's sinks, its throttle."""

    def __init__(
        self,
        state: SandboxState,
        quotes: OrderQuotes,
        streams: BinanceStreams,
        keys: ListenKeys,
        symbols: Symbols,
    ) -> None:
        self.state = state
        self.core = state.core
        self.exchange = state.core.exchange
        self.instruments = state.core.instruments
        self.quotes = quotes
        self.streams = streams
        self.listen_keys = keys
        self.symbols = symbols
        self.throttle = Throttle(binance_throttle_config(), now_ms=state.wall_ms)
        self.onboard_ms = state.core.now_ms()
        self._auto_id = 0

    # -- helpers -------------------------------------------------------------------------------
    def _inst(self, sym: str) -> Instrument:
        return self.instruments[sym]

    def _syms(self, p: Params) -> list[str]:
        sym = p.symbol(required=False)
        return [sym] if sym is not None else list(self.instruments)

    def _order(self, order: Order) -> dict[str, Any]:
        inst = self._inst(order.market)
        return order_json(inst, order, self.quotes.get(inst, order.id))

    def _find(self, p: Params, sym: str) -> Order | None:
        order_id = p.integer("orderId", None, 1, 2**62)
        client_id = p.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise BinanceError(
                E.MANDATORY_PARAM,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if p.account not in self.exchange.accounts:
            return None
        if order_id is not None:
            order = self.exchange.get_order(p.account, order_id=order_id)
            if order is not None and client_id is not None and order.client_id != client_id:
                return None
        else:
            order = self.exchange.get_order(p.account, client_id=client_id)
        return order if order is not None and order.market == sym else None

    def _window(self, rows: list[Any], p: Params, ts_of: Callable[[Any], int], limit: int) -> Any:
        start = p.integer("startTime", None, 0, 2**62)
        end = p.integer("endTime", None, 0, 2**62)
        out = [r for r in rows if (start is None or ts_of(r) >= start)]
        out = [r for r in out if (end is None or ts_of(r) <= end)]
        return out[:limit] if start is not None else out[-limit:]

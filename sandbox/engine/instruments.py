"""Instruments (perpetual contracts) and the exact conversions between decimals and engine units.

Inside the engine a price is an ``int`` number of ticks, a quantity an ``int`` number of lots and
money an ``int`` number of 1e-8 USDT. Decimal strings exist only at the boundary, and a value
that is not exactly representable (off-tick, finer than a lot, NaN, infinite) is refused with a
typed :class:`~sandbox.engine.codes.EngineError` - never rounded silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Final

from perpbot.risk.margin import (
    MONEY_SCALE,
    Bracket,
    build_brackets,
    money_from_decimal,
    rate_from_decimal,
    whole_units,
)

from .codes import EngineError, RejectCode
from .funding import FundingConfig
from .mechanics import MarketMechanics

DecimalLike = Decimal | str | int

# The largest order price (ticks) and order quantity (lots) the engine takes. A price times a
# quantity is then below 2**62: the compiled engine keeps prices, quantities and counts as
# 64-bit machine integers (money stays in Python ints, which never overflow).
MAX_TICKS: Final = 2**31 - 1
MAX_LOTS: Final = 2**31 - 1

# Binance BTCUSDT brackets (tiers 1-6, snapshot 2024-10): (notional cap USDT, max leverage, mmr).
DEFAULT_BRACKET_ROWS: tuple[tuple[str, int, str], ...] = (
    ("50000", 125, "0.004"),
    ("600000", 100, "0.005"),
    ("3000000", 75, "0.0065"),
    ("12000000", 50, "0.01"),
    ("70000000", 25, "0.02"),
    ("100000000", 20, "0.025"),
)


def _to_decimal(value: object, code: RejectCode, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise EngineError(code, f"{what} must be a decimal string, got {type(value).__name__}")
    try:
        dec = value if isinstance(value, Decimal) else Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise EngineError(code, f"{what} {value!r} is not a decimal number") from exc
    if not dec.is_finite():
        raise EngineError(code, f"{what} {value!r} is not finite")
    return dec


@dataclass(frozen=True, slots=True)
class Instrument:
    """A linear USDT-margined perpetual. Build one with :meth:`Instrument.create`.

    Integer fields are in engine units: ``*_qty`` in lots, ``min_notional`` in money units,
    ``*_band`` and fees in rate units (1e-8), ``initial_price`` in ticks.
    """

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_qty: int
    max_qty: int
    market_max_qty: int
    min_notional: int
    price_band: int
    market_band: int
    maker_fee: int
    taker_fee: int
    brackets: tuple[Bracket, ...]
    initial_price: int
    default_leverage: int
    mechanics: MarketMechanics = field(default_factory=MarketMechanics)
    notional_factor: int = field(init=False)

    def __post_init__(self) -> None:
        factor = self.tick_size * self.lot_size * MONEY_SCALE
        if factor != factor.to_integral_value() or factor <= 0:
            raise ValueError(f"{self.symbol}: tick*lot must be a whole number of 1e-8 USDT")
        object.__setattr__(self, "notional_factor", int(factor))
        if not 0 < self.min_qty <= self.market_max_qty <= self.max_qty <= MAX_LOTS:
            raise ValueError(
                f"{self.symbol}: need 0 < min_qty <= market_max_qty <= max_qty <= {MAX_LOTS}"
            )
        if not 0 < self.initial_price <= MAX_TICKS:
            raise ValueError(f"{self.symbol}: initial price must be 1..{MAX_TICKS} ticks")
        if not 1 <= self.default_leverage <= self.brackets[0].max_leverage:
            raise ValueError(f"{self.symbol}: default leverage outside the first bracket")

    @classmethod
    def create(
        cls,
        symbol: str,
        *,
        tick_size: DecimalLike,
        lot_size: DecimalLike,
        min_qty: DecimalLike,
        max_qty: DecimalLike,
        market_max_qty: DecimalLike,
        min_notional: DecimalLike,
        initial_price: DecimalLike,
        price_band: DecimalLike = "0.05",
        market_band: DecimalLike = "0.05",
        maker_fee: DecimalLike = "0.0002",
        taker_fee: DecimalLike = "0.0005",
        brackets: Sequence[tuple[DecimalLike, int, DecimalLike]] = DEFAULT_BRACKET_ROWS,
        default_leverage: int = 20,
        mechanics: MarketMechanics | None = None,
    ) -> Instrument:
        """Build an instrument from human decimals (``"0.1"``), validating exactness.

        Without ``mechanics`` the defaults apply, with the funding cap set to 0.75 x the first
        bracket's maintenance rate (0.30% for BTC).
        """
        tick, lot = Decimal(tick_size), Decimal(lot_size)
        if tick <= 0 or lot <= 0:
            raise ValueError(f"{symbol}: tick and lot sizes must be positive")

        def lots(value: DecimalLike) -> int:
            n = Decimal(value) / lot
            if n != n.to_integral_value():
                raise ValueError(f"{symbol}: {value} is not a whole number of lots")
            return int(n)

        price = Decimal(initial_price) / tick
        if price != price.to_integral_value() or price <= 0:
            raise ValueError(f"{symbol}: initial price {initial_price} is not on the tick")
        rows = [
            (money_from_decimal(cap), lev, rate_from_decimal(mmr)) for cap, lev, mmr in brackets
        ]
        built = build_brackets(rows)
        if mechanics is None:
            cap = built[0].mmr * 3 // 4
            mechanics = MarketMechanics(funding=FundingConfig(cap=cap))
        return cls(
            symbol=symbol,
            tick_size=tick,
            lot_size=lot,
            min_qty=lots(min_qty),
            max_qty=lots(max_qty),
            market_max_qty=lots(market_max_qty),
            min_notional=money_from_decimal(min_notional),
            price_band=rate_from_decimal(price_band),
            market_band=rate_from_decimal(market_band),
            maker_fee=rate_from_decimal(maker_fee),
            taker_fee=rate_from_decimal(taker_fee),
            brackets=built,
            initial_price=int(price),
            default_leverage=default_leverage,
            mechanics=mechanics,
        )

    # -- boundary conversions -------------------------------------------------------------
    def price_to_ticks(self, value: DecimalLike) -> int:
        """Exact decimal price -> ticks; refuses off-tick, non-positive and non-finite values."""
        dec = _to_decimal(value, RejectCode.INVALID_PRICE, "price")
        ticks = whole_units(dec, self.tick_size)
        if ticks is None:
            raise EngineError(
                RejectCode.INVALID_PRICE,
                f"price {value} is not a multiple of the tick size {self.tick_size}",
                tick_size=str(self.tick_size),
            )
        if ticks <= 0:
            raise EngineError(RejectCode.INVALID_PRICE, f"price {value} must be positive")
        return ticks

    def qty_to_lots(self, value: DecimalLike) -> int:
        """Exact decimal quantity -> lots; refuses values finer than a lot, zero and negatives."""
        dec = _to_decimal(value, RejectCode.INVALID_QUANTITY, "quantity")
        lots = whole_units(dec, self.lot_size)
        if lots is None:
            raise EngineError(
                RejectCode.INVALID_QUANTITY,
                f"quantity {value} is not a multiple of the lot size {self.lot_size}",
                lot_size=str(self.lot_size),
            )
        if lots <= 0:
            raise EngineError(RejectCode.INVALID_QUANTITY, f"quantity {value} must be positive")
        return lots

    def price_to_decimal(self, ticks: int) -> Decimal:
        """Ticks -> exact decimal price."""
        return ticks * self.tick_size

    def qty_to_decimal(self, lots: int) -> Decimal:
        """Lots -> exact decimal quantity."""
        return lots * self.lot_size

    def notional(self, price_ticks: int, qty_lots: int) -> int:
        """``price * qty`` in money units (exact)."""
        return price_ticks * qty_lots * self.notional_factor


def money_units(value: DecimalLike) -> int:
    """Exact USDT amount -> money units, refusing non-finite or over-precise input."""
    dec = _to_decimal(value, RejectCode.INVALID_AMOUNT, "amount")
    try:
        return money_from_decimal(dec)
    except ValueError as exc:
        raise EngineError(RejectCode.INVALID_AMOUNT, str(exc)) from exc


def default_instruments() -> tuple[Instrument, ...]:
    """BTC-PERP, ETH-PERP and SOL-PERP with the defaults of docs/mechanics.md."""
    return (
        Instrument.create(
            "BTC-PERP",
            tick_size="0.1",
            lot_size="0.001",
            min_qty="0.001",
            max_qty="1000",
            market_max_qty="120",
            min_notional="100",
            initial_price="60000",
        ),
        Instrument.create(
            "ETH-PERP",
            tick_size="0.01",
            lot_size="0.001",
            min_qty="0.001",
            max_qty="10000",
            market_max_qty="2000",
            min_notional="20",
            initial_price="3000",
        ),
        Instrument.create(
            "SOL-PERP",
            tick_size="0.001",
            lot_size="0.01",
            min_qty="0.01",
            max_qty="100000",
            market_max_qty="20000",
            min_notional="5",
            initial_price="150",
            brackets=(
                ("50000", 75, "0.01"),
                ("250000", 50, "0.02"),
                ("1000000", 25, "0.025"),
                ("5000000", 10, "0.05"),
            ),
        ),
    )

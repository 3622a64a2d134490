"""Margin arithmetic shared by the sandbox exchange and the pre-trade checker.

One source of truth: the engine and :mod:`perpbot.risk` import these functions, so both compute the
same initial margin, maintenance margin and bracket for the same inputs, to the unit.

Units (all ``int``, never ``float``):

* money: ``10**-8`` USDT per unit (``MONEY_SCALE`` units = 1 USDT);
* rates (fees, maintenance rates, funding): ``10**-8`` per unit (``RATE_SCALE`` units = 100%),
  so 0.02% is ``20_000``.

Rounding is explicit: margin requirements round *up* (in the venue's favour).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Final, Protocol

from mypy_extensions import i64

MONEY_DECIMALS: Final = 8
MONEY_SCALE: Final = 10**MONEY_DECIMALS
RATE_DECIMALS: Final = 8
RATE_SCALE: Final = 10**RATE_DECIMALS

__all__ = [
    "MONEY_SCALE",
    "RATE_SCALE",
    "Bracket",
    "bankruptcy_price",
    "bracket_for",
    "build_brackets",
    "ceil_div",
    "initial_margin",
    "is_liquidatable",
    "liquidation_price",
    "maintenance_margin",
    "margin_ratio",
    "max_leverage_for",
    "max_notional_at",
    "money_from_decimal",
    "money_to_decimal",
    "mul",
    "mul_div",
    "mul_rate_ceil",
    "mul_rate_floor",
    "order_reserve",
    "rate_below",
    "rate_from_decimal",
    "rate_to_decimal",
    "whole_units",
]


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding toward +infinity (``denominator`` > 0)."""
    return -((-numerator) // denominator)


# Exact products without Python's arbitrary-precision path where 64 bits suffice. Compiled
# (mypyc) code multiplies two ints natively only when both are non-negative and below 2**30;
# money times a size, a price or a rate is larger, and a bid's sign is negative, so a plain
# ``a * b`` there converts both to Python ints and back (hundreds of instructions). These
# helpers give the same exact results. Interpreted, they are the plain formulas (an ``i64``
# annotation does nothing there, and the checks would only cost time). Where both factors are
# usually non-negative and below 2**30 - a price in ticks times a quantity in lots, a quantity
# times a leverage - plain ``*`` is faster than a call, and still exact when they are not.
_COMPILED: Final = not __file__.endswith(".py")  # compiled, this is an extension module
_MUL_SMALL: Final = 1 << 31  # |a|, |b| below this: |a * b| < 2**62
_MUL_SHORT: Final = (1 << 62) - 1  # the largest int compiled code keeps unboxed
_I64_MAX: Final[i64] = (1 << 63) - 1


def mul(a: int, b: int) -> int:
    """``a * b``, exactly; as machine integers whenever the product fits in 64 bits."""
    if not _COMPILED:
        return a * b
    if -_MUL_SMALL < a < _MUL_SMALL and -_MUL_SMALL < b < _MUL_SMALL:
        x: i64 = a
        y: i64 = b
        return x * y
    if -_MUL_SHORT <= a <= _MUL_SHORT and -_MUL_SHORT <= b <= _MUL_SHORT:
        x2: i64 = a
        y2: i64 = b
        size_y = y2 if y2 >= 0 else -y2
        if size_y == 0 or (x2 if x2 >= 0 else -x2) <= _I64_MAX // size_y:
            return x2 * y2
    return a * b


def mul_div(a: int, b: int, d: int) -> int:
    """``floor(a * b / d)`` for ``d > 0``, exactly, without forming ``a * b``: with
    ``a = q*d + r`` (``0 <= r < d``) it is ``q*b + floor(r*b / d)``, whose terms stay within
    64 bits for money times rates."""
    if not _COMPILED:
        return a * b // d
    if 0 <= b < _MUL_SMALL and 0 < d < _MUL_SMALL and -_MUL_SHORT <= a <= _MUL_SHORT:
        # The usual case (money times a rate or a quantity ratio), all in machine integers:
        # r * b < 2**62; |q * b| < 2**62 when |q| < 2**31, and |q * b| <= |a| + b when b <= d.
        x: i64 = a
        y: i64 = b
        z: i64 = d
        q64 = x // z
        if y <= z or -_MUL_SMALL < q64 < _MUL_SMALL:
            return q64 * y + (x - q64 * z) * y // z
    q = a // d
    return mul(q, b) + mul(a - mul(q, d), b) // d


def mul_rate_ceil(amount: int, rate: int) -> int:
    """``amount * rate`` rounded toward +infinity (a charge in the venue's favour)."""
    return -mul_div(-amount, rate, RATE_SCALE)


def mul_rate_floor(amount: int, rate: int) -> int:
    """``amount * rate`` rounded toward -infinity (a credit in the venue's favour)."""
    return mul_div(amount, rate, RATE_SCALE)


def rate_below(amount: int, rate: int, other: int) -> bool:
    """``amount < rate * other`` with ``rate`` in rate units, i.e. ``amount * RATE_SCALE <
    rate * other``, exactly: for an integer ``amount`` that is ``amount < ceil(rate * other)``."""
    return amount < -mul_div(-other, rate, RATE_SCALE)


def whole_units(value: Decimal, unit: Decimal | Fraction | int) -> int | None:
    """``value / unit`` if it is a whole number, else None. Exact at any precision (no decimal
    context rounding), for finite ``value`` and positive ``unit``."""
    # Integer arithmetic on exact ratios (Fraction objects cost ~10x more on the order path).
    num, den = value.as_integer_ratio()
    unum, uden = unit.as_integer_ratio()
    q, r = divmod(num * uden, den * unum)
    return q if r == 0 else None


def _scaled(value: Decimal | str | int, scale: int, what: str) -> int:
    try:
        dec = value if isinstance(value, Decimal) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValueError(f"{what} {value!r} is not a decimal number") from exc
    if not dec.is_finite():
        raise ValueError(f"{what} {value!r} is not finite")
    units = whole_units(dec, Fraction(1, scale))
    if units is None:
        raise ValueError(f"{what} {value!r} has more precision than 1/{scale}")
    return units


def money_from_decimal(value: Decimal | str | int) -> int:
    """Exact USDT amount -> money units; raises ``ValueError`` if not a multiple of 1e-8."""
    return _scaled(value, MONEY_SCALE, "amount")


def money_to_decimal(units: int) -> Decimal:
    """Money units -> USDT as an exact ``Decimal`` (8 decimal places)."""
    return Decimal(units).scaleb(-MONEY_DECIMALS)


def rate_from_decimal(value: Decimal | str | int) -> int:
    """Exact fraction (``"0.0002"`` = 0.02%) -> rate units; raises ``ValueError`` if inexact."""
    return _scaled(value, RATE_SCALE, "rate")


def rate_to_decimal(units: int) -> Decimal:
    """Rate units -> fraction as an exact ``Decimal``."""
    return Decimal(units).scaleb(-RATE_DECIMALS)


@dataclass(frozen=True, slots=True)
class Bracket:
    """One leverage bracket: positions with notional <= ``notional_cap`` use these rates.

    ``maint_amount`` is the Binance-style cumulative amount that makes maintenance margin
    continuous at the bracket edges: ``MM = ceil(notional * mmr) - maint_amount``.
    """

    notional_cap: int
    max_leverage: int
    mmr: int
    maint_amount: int


def build_brackets(rows: Sequence[tuple[int, int, int]]) -> tuple[Bracket, ...]:
    """Build brackets from ``(notional_cap, max_leverage, mmr)`` rows, deriving maint_amount.

    ``maint_amount[i] = maint_amount[i-1] + cap[i-1] * (mmr[i] - mmr[i-1])`` so that
    maintenance margin is the same on both sides of every edge. Raises ``ValueError`` if the rows
    are not increasing or the amount is not a whole number of money units.
    """
    brackets: list[Bracket] = []
    prev_cap, prev_mmr, cum = 0, 0, 0
    for cap, leverage, mmr in rows:
        if cap <= prev_cap or leverage < 1 or mmr <= 0 or mmr < prev_mmr:
            raise ValueError(f"bracket rows must increase: {(cap, leverage, mmr)}")
        if brackets:
            step, rest = divmod(prev_cap * (mmr - prev_mmr), RATE_SCALE)
            if rest:
                raise ValueError(f"bracket edge {prev_cap} gives a fractional maint_amount")
            cum += step
        brackets.append(Bracket(cap, leverage, mmr, cum))
        prev_cap, prev_mmr = cap, mmr
    if not brackets:
        raise ValueError("at least one bracket is required")
    return tuple(brackets)


def bracket_for(brackets: Sequence[Bracket], notional: int) -> Bracket | None:
    """The bracket whose range holds ``notional`` (``notional <= cap``); None above the last."""
    for bracket in brackets:
        if notional <= bracket.notional_cap:
            return bracket
    return None


def max_leverage_for(brackets: Sequence[Bracket], notional: int) -> int:
    """Highest leverage allowed for a position of ``notional``; 0 if above the last bracket."""
    bracket = bracket_for(brackets, notional)
    return bracket.max_leverage if bracket is not None else 0


def initial_margin(notional: int, leverage: int) -> int:
    """``ceil(notional / leverage)``: initial margin, rounded up."""
    return ceil_div(notional, leverage)


def maintenance_margin(brackets: tuple[Bracket, ...], notional: int) -> int:
    """``ceil(notional * mmr) - maint_amount`` of the bracket holding ``notional``.

    Above the last bracket the last bracket's rates apply (such a position cannot be opened,
    but a mark move can carry an existing one there).
    """
    for bracket in brackets:  # bracket_for, inlined: this runs on every risk check
        if notional <= bracket.notional_cap:
            break
    margin = -mul_div(-notional, bracket.mmr, RATE_SCALE) - bracket.maint_amount
    return margin if margin > 0 else 0


def margin_ratio(maintenance: int, equity: int) -> int | None:
    """``maintenance / equity`` in rate units, rounded up; None when equity <= 0."""
    return ceil_div(maintenance * RATE_SCALE, equity) if equity > 0 else None


def is_liquidatable(equity: int, maintenance: int) -> bool:
    """The liquidation condition for an account holding positions: ``equity <= MM``."""
    return equity <= maintenance


def bankruptcy_price(size: int, mark: int, equity: int, factor: int) -> int:
    """The price (ticks) at which moving this position alone from ``mark`` leaves the account
    with zero equity: ``mark - equity / (size * factor)``.

    Rounded in the account's favour (a long's price up, a short's down) so that closing at it
    never leaves the account below zero because of rounding; never below one tick.
    """
    if size > 0:
        return max(1, mark - equity // (size * factor))
    return max(1, mark + equity // (-size * factor))


def liquidation_price(
    size: int,
    cost: int,
    factor: int,
    brackets: tuple[Bracket, ...],
    other_equity: int,
    other_maintenance: int,
    mark: int,
) -> int | None:
    """The price (ticks) of one position's market at which its account becomes liquidatable,
    every other position unchanged (cross margin).

    ``other_equity`` is collateral plus the other positions' unrealized PnL, and
    ``other_maintenance`` their maintenance margin. For a long, the highest price with
    ``equity <= MM``; for a short, the lowest. None if no price makes it liquidatable. Exact:
    a bisection on the same integer condition the exchange applies.
    """
    if size == 0:
        return None

    def liquidatable(price: int) -> bool:
        value = size * price * factor
        return other_equity + value - cost <= other_maintenance + maintenance_margin(
            brackets, abs(value)
        )

    if size > 0:  # liquidatable on [1, P]: one below the first price that is safe
        safe = _first_true(lambda price: not liquidatable(price), mark)
        if safe == 1:
            return None
        return safe - 1 if safe is not None else _PRICE_SEARCH_LIMIT * max(mark, 1)
    return _first_true(liquidatable, mark)  # short: liquidatable on [P, inf)


_PRICE_SEARCH_LIMIT: Final = 2**64


def order_reserve(
    size: int,
    buy_qty: int,
    buy_value: int,
    sell_qty: int,
    sell_value: int,
    leverage: int,
    factor: int,
) -> int:
    """Initial margin held by a market's open (non-reduce-only) orders, in money units.

    Only the quantity that would *increase* exposure is margined: buy orders beyond what would
    close a short, sell orders beyond what would close a long, each valued at the orders' average
    price. Both sides cannot be filled into exposure at once, so the larger of the two is held:
    ``ceil(max(buy_excess_value, sell_excess_value) * factor / leverage)``.
    """
    buy = 0
    if buy_qty:
        excess = buy_qty + size if size < 0 else buy_qty
        if excess > 0:
            buy = _excess_margin(buy_value, buy_qty, excess, leverage, factor)
    sell = 0
    if sell_qty:
        excess = sell_qty - size if size > 0 else sell_qty
        if excess > 0:
            sell = _excess_margin(sell_value, sell_qty, excess, leverage, factor)
    return buy if buy > sell else sell


def _excess_margin(value: int, qty: int, excess: int, leverage: int, factor: int) -> int:
    """``ceil(value * excess * factor / (qty * leverage))`` for ``0 < excess <= qty``, without
    forming the full product (it passes 64 bits for large order books)."""
    money = mul(value, factor)
    if excess == qty:  # the whole side adds exposure: the quantities cancel
        return (money + leverage - 1) // leverage  # ceil, for money >= 0
    return -mul_div(-money, excess, qty * leverage)


def max_notional_at(brackets: Sequence[Bracket], leverage: int) -> int:
    """Largest position notional allowed at ``leverage`` (the highest cap whose bracket allows
    that leverage); 0 if no bracket does."""
    best = 0
    for bracket in brackets:
        if bracket.max_leverage >= leverage:
            best = bracket.notional_cap
    return best


def _first_true(predicate: Callable[[int], bool], start: int) -> int | None:
    """Smallest price >= 1 where a monotone (False...True) ``predicate`` holds, searching
    upward from ``start`` by doubling, then bisecting; None if none below ``start * 2**64``."""
    if predicate(1):
        return 1
    low, high = 1, max(start, 2)
    for _ in range(64):
        if predicate(high):
            break
        low, high = high, high * 2
    else:
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(middle):
            high = middle
        else:
            low = middle
    return high


class FilledPosition(Protocol):
    """Anything holding a position as ``size`` (signed lots) and ``cost`` (money units)."""

    size: int
    cost: int


def apply_fill(pos: FilledPosition, side: int, price: int, qty: int, factor: int) -> int:
    """Move ``qty`` lots bought (``side`` 1) or sold (-1) at ``price`` (ticks) into ``pos``;
    return the PnL realized (money units). One definition for the engine, the risk checker and
    the cascade simulator (see :func:`fill_position`)."""
    pos.size, pos.cost, pnl = fill_position(pos.size, pos.cost, side, price, qty, factor)
    return pnl


def fill_position(
    size: int, cost: int, side: int, price: int, qty: int, factor: int
) -> tuple[int, int, int]:
    """``(size, cost, realized PnL)`` after ``qty`` lots bought (``side`` 1) or sold (-1) at
    ``price`` (ticks) by a position of ``size`` lots and entry ``cost`` (money units).

    The closing part releases cost pro rata (rounded toward zero, all of it on a full close);
    any remainder opens a position on the other side at ``price``.
    """
    # Notionals are built from non-negative factors and signed afterwards, with ``mul`` (exact,
    # and on machine integers in compiled code).
    if size == 0 or (size > 0) == (side > 0):
        notional = mul(price * qty, factor)
        if side > 0:
            return size + qty, cost + notional, 0
        return size - qty, cost - notional, 0
    held = size if size > 0 else -size
    closing = qty if qty < held else held
    if closing == held:
        released = cost
    elif cost >= 0:
        released = mul_div(cost, closing, held)
    else:
        released = -mul_div(-cost, closing, held)
    exit_notional = mul(price * closing, factor)
    pnl = (exit_notional if size > 0 else -exit_notional) - released
    cost -= released
    opening = qty - closing  # what is left opens a position on the other side
    if opening:
        notional = mul(price * opening, factor)
        cost = cost + notional if side > 0 else cost - notional
    return (size + qty if side > 0 else size - qty), cost, pnl

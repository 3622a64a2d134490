"""Client-side limits: a mirror of the exchange's rate budgets, and pre-trade size checks.

:class:`RateLimiter` keeps a bot under the exchange's request-weight and order-count budgets so
that it never sees a 429. The exchange counts in *fixed* windows aligned to multiples of the
window length in wall time (``start = now_ms - now_ms % window_ms``); a leaky bucket can still
burst past such a window at its boundary, so the limiter keeps the same fixed-window counters
(against the same wall clock), stops each window at ``safety * limit``, learns what other
processes on the same IP spend from the response headers, and treats requests within ``guard_s``
of a boundary as belonging to both windows (clock skew and latency move them across).

:class:`SizeLimits` refuses an order before it is sent: the exchange's own filters that can be
checked from :class:`~perpbot.models.MarketInfo`, and the bot's own caps on quantity, notional,
position, distance from the mark and slippage (:func:`estimate_fill` walks the book).

Pure: no I/O; time enters through the injected ``clock``, ``wall`` and ``sleep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Context, Decimal, InvalidOperation, localcontext
from typing import Any

from perpbot.errors import LimitExceeded
from perpbot.models import MarketInfo, OrderBook, RateLimitRules

__all__ = [
    "ORDER_COUNT_HEADER",
    "USED_WEIGHT_HEADER",
    "FillEstimate",
    "RateLimiter",
    "SizeLimits",
    "estimate_fill",
]

USED_WEIGHT_HEADER = "x-pb-used-weight-1m"
ORDER_COUNT_HEADER = "x-pb-order-count-10s"

_MIN_SLEEP_S = 0.001  # never spin: a wake-up that finds nothing to do sleeps at least this long
_ZERO = Decimal(0)
_ONE = Decimal(1)
# Products and sums of decimal strings (<= 40 digits each) are exact at this precision ...
_EXACT = Context(prec=200)
# ... and quotients (averages, ratios) are correctly rounded to 28 significant digits.
_QUOTIENT = Context(prec=28)


# -- rate limits ----------------------------------------------------------------------------
class _Window:
    """One fixed-window budget aligned like the server's, with counts per window start (ms)."""

    __slots__ = ("cap", "counts", "length", "limit")

    def __init__(self, limit: int, length_ms: int, safety: Decimal) -> None:
        self.length = length_ms
        self.counts: dict[int, int] = {}
        self.limit = limit
        self.cap = _cap(limit, safety)

    def start(self, t: int) -> int:
        return t - t % self.length

    def starts(self, t: int, guard: int) -> range:
        """Starts of every window a request sent at ``t`` (+- ``guard``) may land in."""
        return range(self.start(t - guard), self.start(t + guard) + 1, self.length)

    def release_ms(self, t: int, guard: int, amount: int) -> int | None:
        """None if ``amount`` fits now, else the earliest time the full windows stop mattering."""
        if amount == 0:
            return None
        release: int | None = None
        for s in self.starts(t, guard):
            if self.counts.get(s, 0) + amount > self.cap:
                end = s + self.length + guard
                release = end if release is None else max(release, end)
        return release

    def charge(self, t: int, guard: int, amount: int) -> None:
        if amount == 0:
            return
        counts = self.counts
        for s in self.starts(t, guard):
            counts[s] = counts.get(s, 0) + amount
        if len(counts) > 4:
            horizon = self.start(t - guard)
            for s in [s for s in counts if s < horizon]:
                del counts[s]

    def used(self, t: int) -> int:
        return self.counts.get(self.start(t), 0)


def _cap(limit: int, safety: Decimal) -> int:
    return max(1, int((limit * safety).to_integral_value(ROUND_FLOOR)))


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _window_ms(name: str, seconds: float) -> int:
    ms = round(seconds * 1000)
    if not math.isfinite(seconds) or ms <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return ms


@dataclass(slots=True)
class _Waiter:
    weight: int
    orders: int
    future: asyncio.Future[None]


class RateLimiter:
    """Waits before each request until it fits every budget, then charges it.

    Budgets (all per fixed window aligned to the window length in wall time, as the exchange
    counts them): request weight per ``window_s``, orders per ``order_window_s`` and per
    ``order_window_long_s``. Each window stops at ``floor(safety * limit)``; the rest of the
    budget absorbs what is in flight when another process's spending shows up in the headers.

    A request sent within ``guard_s`` of a window boundary is charged to both windows, so client
    and server clocks may disagree (and requests may travel) by up to ``guard_s`` without a 429.
    ``wall`` should be the exchange's wall clock as well as you know it (``time.time`` corrected
    by the offset ``GET /v1/time`` reveals).

    Waiters are admitted in FIFO order; one that does not fit yet does not hold back a smaller
    one that does (it could not use the room anyway until its window rolls over, and it goes
    first then). Safe for any number of tasks on one event loop.
    """

    def __init__(
        self,
        rules: RateLimitRules | None = None,
        *,
        weight_limit: int = 2400,
        window_s: float = 60.0,
        order_limit: int = 300,
        order_window_s: float = 10.0,
        order_limit_long: int = 1200,
        order_window_long_s: float = 60.0,
        safety: float | Decimal = 0.95,
        guard_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        safety_dec = safety if isinstance(safety, Decimal) else Decimal(str(safety))
        if not (safety_dec.is_finite() and _ZERO < safety_dec <= _ONE):
            raise ValueError(f"safety must be in (0, 1], got {safety!r}")
        if not (math.isfinite(guard_s) and guard_s >= 0):
            raise ValueError(f"guard_s must be >= 0, got {guard_s!r}")
        self._safety = safety_dec
        self._guard = round(guard_s * 1000)
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._blocked_until = -math.inf
        self._queue: deque[_Waiter] = deque()
        self._timer: asyncio.Task[None] | None = None
        self.weights: dict[str, int] = {}
        """Each route's weight (``METHOD /path``) as the exchange last told us, if it did."""
        self._weight = _Window(
            _positive_int("weight_limit", weight_limit),
            _window_ms("window_s", window_s),
            safety_dec,
        )
        self._orders = _Window(
            _positive_int("order_limit", order_limit),
            _window_ms("order_window_s", order_window_s),
            safety_dec,
        )
        self._orders_long = _Window(
            _positive_int("order_limit_long", order_limit_long),
            _window_ms("order_window_long_s", order_window_long_s),
            safety_dec,
        )
        self._check_guard()
        if rules is not None:
            self.apply_rules(rules)

    @classmethod
    def from_rules(cls, rules: RateLimitRules, **kwargs: Any) -> RateLimiter:
        """A limiter for the budgets of ``GET /v1/rate-limits`` (other arguments as in the
        constructor)."""
        return cls(rules, **kwargs)

    def apply_rules(self, rules: RateLimitRules) -> None:
        """Adopt the exchange's limits (e.g. after an operator changed them live).

        Weight: the API key's REQUEST_WEIGHT budget (or the IP's, if lower). Orders: the API
        key's ORDERS budgets, shortest window first. Counts in the current windows are kept.
        """
        weight = [r for r in rules.rate_limits if r.type == "REQUEST_WEIGHT"]
        orders = sorted(
            (r for r in rules.rate_limits if r.type == "ORDERS" and r.scope == "API_KEY"),
            key=lambda r: r.window_ms,
        )
        key_weight = [r for r in weight if r.scope == "API_KEY"] or weight
        if not key_weight or not orders:
            raise ValueError("the rules need a REQUEST_WEIGHT and an API_KEY ORDERS limit")
        main = key_weight[0]
        limit = min(r.limit for r in weight if r.window_ms == main.window_ms)
        self._set(self._weight, _positive_int("weight limit", limit), main.window_ms)
        self._set(self._orders, _positive_int("order limit", orders[0].limit), orders[0].window_ms)
        long = orders[-1]
        self._set(self._orders_long, _positive_int("order limit", long.limit), long.window_ms)
        self._check_guard()
        self.weights = dict(rules.weights)
        self._fail_impossible()
        self._admit()

    def _set(self, window: _Window, limit: int, length_ms: int) -> None:
        window.limit = limit
        window.cap = _cap(limit, self._safety)
        if _positive_int("window_ms", length_ms) != window.length:
            window.length = length_ms
            window.counts.clear()  # cannot map old windows onto new ones; headers will tell

    def _check_guard(self) -> None:
        shortest = min(self._weight.length, self._orders.length, self._orders_long.length)
        if 2 * self._guard >= shortest:
            raise ValueError(f"guard_s must be under half the shortest window ({shortest} ms)")

    # -- introspection ----------------------------------------------------------------------
    def _now_ms(self) -> int:
        return math.floor(self._wall() * 1000)

    @property
    def used_weight(self) -> int:
        """Weight counted in the current weight window (ours, or the server's figure if more)."""
        return self._weight.used(self._now_ms())

    @property
    def used_orders(self) -> int:
        """Orders counted in the current short order window."""
        return self._orders.used(self._now_ms())

    @property
    def used_orders_long(self) -> int:
        """Orders counted in the current long order window."""
        return self._orders_long.used(self._now_ms())

    @property
    def weight_cap(self) -> int:
        """Weight the limiter lets through per window (``floor(safety * limit)``)."""
        return self._weight.cap

    @property
    def order_cap(self) -> int:
        """Orders the limiter lets through per short order window."""
        return self._orders.cap

    @property
    def order_cap_long(self) -> int:
        """Orders the limiter lets through per long order window."""
        return self._orders_long.cap

    @property
    def waiting(self) -> int:
        """Tasks waiting in :meth:`acquire`."""
        return sum(1 for w in self._queue if not w.future.done())

    @property
    def blocked_for(self) -> float:
        """Seconds until a throttle reported by :meth:`on_throttled` is over (0 if none)."""
        return max(0.0, self._blocked_until - self._clock())

    # -- the budget -------------------------------------------------------------------------
    def _wait_s(self, t: int, mono: float, weight: int, orders: int) -> float:
        """0 if the request fits now, else seconds until it might."""
        wait = self._blocked_until - mono
        guard = self._guard
        for window, amount in (
            (self._weight, weight),
            (self._orders, orders),
            (self._orders_long, orders),
        ):
            release = window.release_ms(t, guard, amount)
            if release is not None:
                wait = max(wait, (release - t) / 1000)
        return wait if wait > 0 else 0.0

    def _charge(self, t: int, weight: int, orders: int) -> None:
        guard = self._guard
        self._weight.charge(t, guard, weight)
        self._orders.charge(t, guard, orders)
        self._orders_long.charge(t, guard, orders)

    def _validate(self, weight: int, orders: int) -> None:
        for name, value in (("weight", weight), ("orders", orders)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if weight > self._weight.cap or orders > min(self._orders.cap, self._orders_long.cap):
            raise LimitExceeded(
                "REQUEST_TOO_HEAVY",
                "the request can never fit the rate limits in force",
                weight=weight,
                orders=orders,
                weight_cap=self._weight.cap,
                order_cap=min(self._orders.cap, self._orders_long.cap),
            )

    async def acquire(self, route: str, weight: int, orders: int = 0) -> None:
        """Wait until a request of ``weight`` (placing ``orders`` orders) fits every budget,
        then charge it. ``route`` (``METHOD /path``) is informational.

        Raises ``LimitExceeded("REQUEST_TOO_HEAVY")`` if it can never fit. Cancelling a waiting
        task charges nothing.
        """
        self._validate(weight, orders)
        if not self._queue:
            t = self._now_ms()
            if self._wait_s(t, self._clock(), weight, orders) == 0:
                self._charge(t, weight, orders)
                return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(weight, orders, loop.create_future())
        self._queue.append(waiter)
        self._admit()
        if not waiter.future.done() and self._timer is None:
            self._timer = loop.create_task(self._run_timer(), name="perpbot-rate-limiter")
        try:
            await waiter.future
        except asyncio.CancelledError:
            self._drop(waiter)
            raise

    def _drop(self, waiter: _Waiter) -> None:
        # Not queued any more: admitted (and charged) just before the cancellation; it stays.
        with contextlib.suppress(ValueError):
            self._queue.remove(waiter)
        if not self._queue and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _admit(self) -> None:
        """Charge and wake, in FIFO order, every waiter that fits now."""
        if not self._queue:
            return
        t = self._now_ms()
        mono = self._clock()
        keep: deque[_Waiter] = deque()
        for waiter in self._queue:
            if waiter.future.done():
                continue
            if self._wait_s(t, mono, waiter.weight, waiter.orders) == 0:
                self._charge(t, waiter.weight, waiter.orders)
                waiter.future.set_result(None)
            else:
                keep.append(waiter)
        self._queue = keep
        timer = self._timer
        if not keep and timer is not None and timer is not asyncio.current_task():
            timer.cancel()  # nobody left to wake
            self._timer = None

    def _next_wait(self) -> float:
        t = self._now_ms()
        mono = self._clock()
        waits = [
            self._wait_s(t, mono, w.weight, w.orders) for w in self._queue if not w.future.done()
        ]
        return max(min(waits, default=0.0), _MIN_SLEEP_S)

    async def _run_timer(self) -> None:
        me = asyncio.current_task()
        try:
            while self._queue:
                await self._sleep(self._next_wait())
                self._admit()
        except Exception as exc:  # a broken sleep must not leave waiters hanging forever
            for waiter in self._queue:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            self._queue.clear()
        finally:
            if self._timer is me:
                self._timer = None

    def _fail_impossible(self) -> None:
        for waiter in list(self._queue):
            if waiter.future.done():
                continue
            try:
                self._validate(waiter.weight, waiter.orders)
            except LimitExceeded as exc:
                waiter.future.set_exception(exc)
                self._queue.remove(waiter)

    # -- feedback from the exchange ---------------------------------------------------------
    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from a response's ``X-PB-Used-Weight-1m`` (the IP's weight, which other
        processes on the IP spend too) and ``X-PB-Order-Count-10s`` (the key's orders).

        A count only ever goes up to the server's figure, never down (responses arrive out of
        order, and requests in flight are ours already). A figure that arrives within ``guard_s``
        after a boundary may be the previous window's and is booked there.
        """
        used = _header_int(headers, USED_WEIGHT_HEADER)
        orders = _header_int(headers, ORDER_COUNT_HEADER)
        if used is None and orders is None:
            return
        t = self._now_ms() - self._guard
        if used is not None:
            counts = self._weight.counts
            s = self._weight.start(t)
            if used > counts.get(s, 0):
                counts[s] = used
        if orders is not None:
            counts = self._orders.counts
            s = self._orders.start(t)
            extra = orders - counts.get(s, 0)
            if extra > 0:
                counts[s] = orders
                # Orders we did not send count in the enclosing long window too.
                long = self._orders_long
                if long.length % self._orders.length == 0:
                    ls = long.start(t)
                    long.counts[ls] = long.counts.get(ls, 0) + extra

    def on_throttled(self, retry_after: float) -> None:
        """After a 429/418 anyway: hold every :meth:`acquire` for ``retry_after`` seconds."""
        if not math.isfinite(retry_after):
            raise ValueError(f"retry_after must be finite, got {retry_after!r}")
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, retry_after))


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        for key, v in headers.items():
            if key.lower() == name:
                value = v
                break
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


# -- order book walk ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FillEstimate:
    """What taking liquidity for a quantity would do now.

    ``filled``: quantity available (within the limit price, if any), at most the quantity asked;
    ``avg_price``: its average price; ``worst_price``: the last level touched; ``slippage``: the
    average's relative distance from the best price, in the adverse direction (>= 0);
    ``best_price``: the best level's price; ``notional``: the sum of price * qty taken. The
    prices are None when nothing fills.
    """

    avg_price: Decimal | None
    filled: Decimal
    worst_price: Decimal | None
    slippage: Decimal | None
    best_price: Decimal | None = None
    notional: Decimal = _ZERO


def _side(side: str) -> bool:
    """True for BUY, False for SELL."""
    s = str(side).upper()
    if s == "BUY":
        return True
    if s == "SELL":
        return False
    raise ValueError(f"side must be BUY or SELL, got {side!r}")


def _dec(name: str, value: object) -> Decimal:
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, int | str) and not isinstance(value, bool):
        try:
            dec = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name} is not a decimal number: {value!r}") from None
    else:
        raise TypeError(f"{name} must be a Decimal, int or decimal string, got {value!r}")
    if not dec.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return dec


def _levels(levels: Iterable[Sequence[str]], buy: bool) -> list[tuple[Decimal, Decimal]]:
    out: list[tuple[Decimal, Decimal]] = []
    for level in levels:
        if len(level) < 2:
            raise ValueError(f"a book level is [price, qty], got {level!r}")
        price = _dec("price", level[0])
        qty = _dec("qty", level[1])
        if price <= 0 or qty < 0:
            raise ValueError(f"bad book level {level!r}")
        if qty:
            out.append((price, qty))
    out.sort(key=lambda pq: pq[0], reverse=not buy)  # best first, whatever order they came in
    return out


def estimate_fill(
    levels: Sequence[tuple[str, str]] | Sequence[Sequence[str]],
    qty: Decimal,
    *,
    limit_price: Decimal | None = None,
    side: str,
) -> FillEstimate:
    """Walk ``levels`` (the side a ``side`` order takes: asks for a BUY, bids for a SELL; each
    ``[price, qty]``) level by level until ``qty`` is filled or the next level is beyond
    ``limit_price``. Exact decimal arithmetic; averages are rounded to 28 digits."""
    buy = _side(side)
    want = _dec("qty", qty)
    if want < 0:
        raise ValueError(f"qty must be >= 0, got {qty}")
    limit = None if limit_price is None else _dec("limit_price", limit_price)
    book = _levels(levels, buy)
    best = book[0][0] if book else None
    filled = _ZERO
    notional = _ZERO
    worst: Decimal | None = None
    with localcontext(_EXACT):
        for price, available in book:
            if filled >= want:
                break
            if limit is not None and (price > limit if buy else price < limit):
                break
            take = min(available, want - filled)
            filled += take
            notional += price * take
            worst = price
    if not filled or best is None:
        return FillEstimate(None, _ZERO, None, None, best, _ZERO)
    avg = _QUOTIENT.divide(notional, filled)
    slippage = _QUOTIENT.divide(avg - best if buy else best - avg, best)
    return FillEstimate(avg, filled, worst, slippage, best, notional)


# -- size limits ----------------------------------------------------------------------------
PerMarket = Mapping[str, Decimal] | Decimal | None
"""One limit for every market, a limit per market symbol (absent = no limit), or no limit."""


def _per_market(name: str, value: object) -> dict[str, Decimal] | Decimal | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        out: dict[str, Decimal] = {}
        for symbol, v in value.items():
            out[str(symbol)] = _non_negative(f"{name}[{symbol}]", v)
        return out
    return _non_negative(name, value)


def _non_negative(name: str, value: object) -> Decimal:
    dec = _dec(name, value)
    if dec < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return dec


def _lookup(limit: dict[str, Decimal] | Decimal | None, symbol: str) -> Decimal | None:
    if isinstance(limit, dict):
        return limit.get(symbol)
    return limit


class SizeLimits:
    """Pre-trade checks: :meth:`check_order` raises :class:`~perpbot.errors.LimitExceeded`.

    Each limit is one value for every market, or a ``{symbol: value}`` dict (markets absent from
    it are unlimited):

    * ``max_qty``: order quantity;
    * ``max_notional``: quantity * price (a market order: the book's estimated average fill
      price when a book is given, else the mark);
    * ``max_position``: absolute position after the order fills completely (an order that
      shrinks the absolute position is always allowed);
    * ``price_band``: a limit price's relative distance from the mark (``Decimal("0.02")``);
    * ``max_slippage``: the estimated average fill's relative distance from the best price
      (needs a book: ``needs_book``).

    Reason codes: ``MARKET_FILTER`` (the exchange's own filters from ``MarketInfo``:
    positive quantity, lot and tick multiples, min/max quantity, its price band, min notional;
    ``details["filter"]`` says which), ``MAX_QTY``, ``MAX_NOTIONAL``, ``MAX_POSITION``,
    ``PRICE_BAND``, ``BOOK_TOO_THIN`` (a market order the book cannot fill within the exchange's
    market band), ``MAX_SLIPPAGE``. Numbers in ``details`` are decimal strings.
    """

    def __init__(
        self,
        max_qty: PerMarket = None,
        max_notional: PerMarket = None,
        max_position: PerMarket = None,
        price_band: PerMarket = None,
        max_slippage: PerMarket = None,
    ) -> None:
        self.max_qty = _per_market("max_qty", max_qty)
        self.max_notional = _per_market("max_notional", max_notional)
        self.max_position = _per_market("max_position", max_position)
        self.price_band = _per_market("price_band", price_band)
        self.max_slippage = _per_market("max_slippage", max_slippage)
        self.needs_book: bool = self.max_slippage is not None
        """True when :meth:`check_order` needs the order book (a slippage limit is set)."""

    def needs_book_for(self, symbol: str) -> bool:
        """True when orders in ``symbol`` are checked against the book."""
        return _lookup(self.max_slippage, symbol) is not None

    def check_order(
        self,
        *,
        market: MarketInfo,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        mark: Decimal,
        position: Decimal,
        book: OrderBook | None,
        reduce_only: bool = False,
    ) -> None:
        """Raise ``LimitExceeded`` if the order (``price`` None: a market order) breaks a limit.

        ``mark``: the market's mark price; ``position``: the signed position now; ``book``: the
        order book (required when :meth:`needs_book_for` the market)."""
        with localcontext(_EXACT):  # products of decimal strings stay exact
            self._check(market, side, qty, price, mark, position, book, reduce_only)

    def _check(
        self,
        market: MarketInfo,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        mark: Decimal,
        position: Decimal,
        book: OrderBook | None,
        reduce_only: bool,
    ) -> None:
        symbol = market.symbol
        buy = _side(side)
        side_s = "BUY" if buy else "SELL"
        qty = _dec("qty", qty)
        mark = _dec("mark", mark)
        position = _dec("position", position)
        if mark <= 0:
            raise ValueError(f"mark must be positive, got {mark}")
        is_market = price is None
        limit_price = None if price is None else _dec("price", price)

        def refuse(reason: str, message: str, **numbers: object) -> LimitExceeded:
            details = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in numbers.items()}
            return LimitExceeded(reason, message, market=symbol, side=side_s, **details)

        def filt(name: str, message: str, **numbers: object) -> LimitExceeded:
            return refuse("MARKET_FILTER", message, filter=name, **numbers)

        # The exchange's own filters.
        lot = Decimal(market.lot_size)
        if qty <= 0:
            raise filt("qty", f"quantity {qty} must be positive", qty=qty)
        if qty % lot:
            raise filt("lot_size", f"quantity {qty} is not a multiple of {lot}", qty=qty, lot=lot)
        min_qty = Decimal(market.min_qty)
        if qty < min_qty:
            raise filt("min_qty", f"quantity {qty} < {min_qty}", qty=qty, min_qty=min_qty)
        max_qty = Decimal(market.market_max_qty if is_market else market.max_qty)
        if qty > max_qty:
            raise filt("max_qty", f"quantity {qty} > {max_qty}", qty=qty, max_qty=max_qty)
        if limit_price is not None:
            tick = Decimal(market.tick_size)
            if limit_price <= 0 or limit_price % tick:
                raise filt(
                    "tick_size",
                    f"price {limit_price} is not a positive multiple of {tick}",
                    price=limit_price,
                    tick=tick,
                )
            band = Decimal(market.price_band)
            lo, hi = mark * (1 - band), mark * (1 + band)
            if not lo <= limit_price <= hi:
                raise filt(
                    "price_band",
                    f"price {limit_price} is outside mark {mark} +- {band}",
                    price=limit_price,
                    mark=mark,
                    min_price=lo,
                    max_price=hi,
                )
        if not reduce_only:
            # The exchange values a market order at the mark.
            exchange_notional = qty * (mark if limit_price is None else limit_price)
            min_notional = Decimal(market.min_notional)
            if exchange_notional < min_notional:
                raise filt(
                    "min_notional",
                    f"notional {exchange_notional} < {min_notional}",
                    notional=exchange_notional,
                    min_notional=min_notional,
                )

        # The book: a market order never sweeps beyond the exchange's market band.
        estimate: FillEstimate | None = None
        walk_limit = limit_price
        if book is not None:
            if walk_limit is None:
                band = Decimal(market.market_band)
                walk_limit = mark * (1 + band) if buy else mark * (1 - band)
            estimate = estimate_fill(
                book.asks if buy else book.bids, qty, limit_price=walk_limit, side=side_s
            )

        # The bot's own limits.
        cap = _lookup(self.max_qty, symbol)
        if cap is not None and qty > cap:
            raise refuse("MAX_QTY", f"quantity {qty} > {cap}", qty=qty, max_qty=cap)
        cap = _lookup(self.max_notional, symbol)
        if cap is not None:
            if limit_price is not None:
                at, notional = limit_price, qty * limit_price
            elif estimate is not None and estimate.avg_price is not None:
                at = estimate.avg_price
                notional = estimate.notional if estimate.filled == qty else qty * at
            else:
                at, notional = mark, qty * mark
            if notional > cap:
                raise refuse(
                    "MAX_NOTIONAL",
                    f"notional {notional} > {cap}",
                    notional=notional,
                    price=at,
                    max_notional=cap,
                )
        cap = _lookup(self.max_position, symbol)
        if cap is not None:
            change = qty
            if reduce_only and (position > 0) != buy:
                change = min(qty, abs(position))  # the exchange clips reduce-only orders
            after = position + (change if buy else -change)
            if abs(after) > cap and abs(after) > abs(position):
                raise refuse(
                    "MAX_POSITION",
                    f"position after the order {after} exceeds +-{cap}",
                    position=position,
                    position_after=after,
                    max_position=cap,
                )
        band_cap = _lookup(self.price_band, symbol)
        if band_cap is not None and limit_price is not None:
            distance = _QUOTIENT.divide(abs(limit_price - mark), mark)
            if distance > band_cap:
                raise refuse(
                    "PRICE_BAND",
                    f"price {limit_price} is {distance} from mark {mark} (max {band_cap})",
                    price=limit_price,
                    mark=mark,
                    distance=distance,
                    price_band=band_cap,
                )
        if is_market and estimate is not None and estimate.filled < qty:
            raise refuse(
                "BOOK_TOO_THIN",
                f"the book has {estimate.filled} of {qty} within {walk_limit}",
                qty=qty,
                available=estimate.filled,
                limit_price=walk_limit,
            )
        slip_cap = _lookup(self.max_slippage, symbol)
        if slip_cap is not None:
            if estimate is None:
                raise refuse("MAX_SLIPPAGE", "no order book to estimate slippage with")
            if estimate.slippage is not None and estimate.slippage > slip_cap:
                raise refuse(
                    "MAX_SLIPPAGE",
                    f"estimated slippage {estimate.slippage} > {slip_cap}",
                    slippage=estimate.slippage,
                    max_slippage=slip_cap,
                    avg_price=estimate.avg_price,
                    best_price=estimate.best_price,
                    worst_price=estimate.worst_price,
                )

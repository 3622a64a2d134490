"""A guard in front of order entry: size limits, the pre-trade risk check, and a kill switch.

::

    policy = GuardPolicy.from_toml("risk-policy.toml")
    guard = Guard(client, policy)              # our AsyncClient
    await guard.create_order("BTC-PERP", "BUY", "0.1", "60000")

    guard = CcxtGuard(exchange, policy)        # any ccxt exchange object (async or sync methods)
    await guard.create_order("BTC/USDT:USDT", "limit", "buy", 0.1, 60000)

Every order goes through, in this order: the kill switch (:class:`KillSwitchTripped` once it has
tripped, until :meth:`reset`), :class:`~perpbot.limits.SizeLimits` (``LimitExceeded``), then the
risk checker (``RiskRejected`` with the checker's reasons, or a smaller quantity when the checker
says ``resize`` and the policy allows it). Rejections, here or by the exchange (``InvalidOrder``),
count toward the kill switch, which also trips on a drawdown of equity from the session's peak.
Cancels are never blocked. State (markets, account, open orders, marks, books) is fetched at most
once per ``cache_ttl_s``; the account and open orders are refetched after every placement.
See docs/risk.md.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import logging
import time
import tomllib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .client import AsyncClient, Number
from .errors import InvalidOrder, LimitExceeded, RiskRejected
from .limits import SizeLimits
from .models import (
    Account,
    BracketInfo,
    CancelAllResult,
    MarketInfo,
    Order,
    OrderBook,
    OrderResult,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
)

__all__ = [
    "CcxtGuard",
    "Guard",
    "GuardPolicy",
    "GuardStatus",
    "KillSwitch",
    "KillSwitchPolicy",
    "KillSwitchTripped",
    "OrderIntent",
    "PolicyError",
    "RiskCheck",
    "SizePolicy",
    "Snapshot",
    "VenueDefaults",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
_ZERO = Decimal(0)
_DEFAULT = "*"


# -- the policy -----------------------------------------------------------------------------
class PolicyError(ValueError):
    """A policy that cannot be read or is invalid; the message names the offending fields."""


class _Plain(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


PerMarketLimit = Decimal | dict[str, Decimal] | None
"""One value for every market, or ``{symbol: value}`` with ``"*"`` as the default."""


class SizePolicy(_Plain):
    """Caps checked by :class:`~perpbot.limits.SizeLimits` (see its docstring for each)."""

    max_qty: PerMarketLimit = None
    max_notional: PerMarketLimit = None
    max_position: PerMarketLimit = None
    price_band: PerMarketLimit = None
    max_slippage: PerMarketLimit = None

    def for_market(self, symbol: str) -> SizeLimits:
        """The limits that apply to ``symbol``."""
        values = {name: _resolve(getattr(self, name), symbol) for name in type(self).model_fields}
        return SizeLimits(**values)


def _resolve(limit: PerMarketLimit, symbol: str) -> Decimal | None:
    if isinstance(limit, dict):
        return limit.get(symbol, limit.get(_DEFAULT))
    return limit


class KillSwitchPolicy(_Plain):
    """Stop trading after ``max_rejections`` rejections within ``window_s`` seconds, or when
    equity falls from the session's peak by ``max_drawdown`` (a fraction) or by
    ``max_drawdown_usdt``. ``None`` disables a trigger."""

    max_rejections: int | None = Field(default=5, ge=1)
    window_s: float = Field(default=60.0, gt=0)
    max_drawdown: Decimal | None = Field(default=None, gt=0, lt=1)
    max_drawdown_usdt: Decimal | None = Field(default=None, gt=0)


class VenueDefaults(_Plain):
    """What :class:`CcxtGuard` assumes where ccxt's unified structures say nothing: the price
    bands, a fallback fee, the leverage of a market without a position, and - for a market whose
    maintenance tiers ccxt cannot fetch (``fetch_leverage_tiers``), or when ``leverage_tiers``
    is off - one conservative bracket: ``maintenance_rate`` on any notional, up to
    ``max_leverage`` (positions reported at a higher leverage are checked at this one)."""

    settle: str = "USDT"
    price_band: Decimal = Field(default=Decimal("0.05"), gt=0)
    market_band: Decimal = Field(default=Decimal("0.05"), gt=0)
    fee: Decimal = Field(default=Decimal("0.001"), ge=0)
    leverage: int = Field(default=10, ge=1)
    max_leverage: int = Field(default=125, ge=1)
    maintenance_rate: Decimal = Field(default=Decimal("0.025"), gt=0, lt=1)
    leverage_tiers: bool = True


RiskValue = bool | Decimal | dict[str, Decimal]
"""A ``RiskLimits`` field: a flag, a number, or numbers per market (``stress_shocks``)."""


def _exact(key: str, value: object) -> object:
    """TOML numbers and strings as exact decimals (bools and tables kept; tables recursed)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _exact(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, float | int | str):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"risk.{key}: {value!r} is not a number") from None
    return value


class GuardPolicy(_Plain):
    """A guard's whole configuration as plain, reviewable data (load it with :meth:`from_toml`).

    ``size``: :class:`SizePolicy`; ``risk``: keyword arguments of
    ``perpbot.risk.checker.RiskLimits`` (numbers read as exact decimals); ``resize``: when the
    checker offers a smaller quantity, ``"reject"`` the order or send the ``"resize"``d one;
    ``stress``: also run the checker's stress scenarios (``risk.survive_stress`` makes failing
    one a rejection); ``volatility``: per market, the annualized volatility of log price (for
    distances in sigmas); ``cache_ttl_s`` / ``markets_ttl_s``: how old fetched state may be;
    ``book_depth``: levels fetched for slippage and expected fills; ``venue``: ccxt fallbacks.
    """

    size: SizePolicy = SizePolicy()
    risk: dict[str, RiskValue] = Field(default_factory=dict)
    resize: Literal["reject", "resize"] = "reject"
    kill_switch: KillSwitchPolicy = KillSwitchPolicy()
    stress: bool = False
    volatility: dict[str, Decimal] = Field(default_factory=dict)
    cache_ttl_s: float = Field(default=2.0, ge=0)
    markets_ttl_s: float = Field(default=3600.0, ge=0)
    book_depth: int = Field(default=100, ge=1, le=1000)
    venue: VenueDefaults = VenueDefaults()

    @field_validator("risk", mode="before")
    @classmethod
    def _exact_numbers(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value
        return {str(key): _exact(str(key), v) for key, v in value.items()}

    @field_validator("risk")
    @classmethod
    def _known_limits(cls, value: dict[str, RiskValue]) -> dict[str, RiskValue]:
        """Unknown ``RiskLimits`` fields are refused at load time (when the checker exists)."""
        try:
            fields = {f.name for f in dataclasses.fields(_risk_module().RiskLimits)}
        except ImportError:
            return value
        unknown = sorted(set(value) - fields)
        if unknown:
            raise ValueError(f"unknown RiskLimits field(s) {unknown}; known: {sorted(fields)}")
        return value

    @classmethod
    def from_toml(cls, source: str | Path) -> GuardPolicy:
        """A policy from a TOML file (a ``Path``, or a ``str`` path) or from TOML text."""
        text: str
        if isinstance(source, Path) or ("\n" not in source and "=" not in source):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PolicyError(f"cannot read policy file {str(path)!r}: {exc}") from exc
        else:
            text = source
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy is not valid TOML: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<policy>'}: {err['msg']}"
                for err in exc.errors()
            )
            raise PolicyError(f"invalid policy: {problems}") from exc


# -- the kill switch ------------------------------------------------------------------------
class KillSwitchTripped(RiskRejected):
    """Trading is stopped until a human calls ``reset()``; ``details["cause"]`` says why."""


@dataclass(frozen=True, slots=True)
class GuardStatus:
    """``killed`` and ``why``; ``rejections``: in the current window; equity peak and last."""

    killed: bool
    why: str | None
    rejections: int
    peak_equity: Decimal | None
    last_equity: Decimal | None


class KillSwitch:
    """Counts rejections in a rolling window and tracks equity's drawdown from its peak."""

    def __init__(self, policy: KillSwitchPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self._rejections: deque[float] = deque()
        self.why: str | None = None
        self.peak: Decimal | None = None
        self.last: Decimal | None = None

    @property
    def killed(self) -> bool:
        return self.why is not None

    def _in_window(self) -> int:
        horizon = self._clock() - self._policy.window_s
        while self._rejections and self._rejections[0] <= horizon:
            self._rejections.popleft()
        return len(self._rejections)

    def record_rejection(self, code: str) -> None:
        """One more rejection; trips at ``max_rejections`` within the window."""
        self._rejections.append(self._clock())
        cap = self._policy.max_rejections
        count = self._in_window()
        if cap is not None and count >= cap and self.why is None:
            window = self._policy.window_s
            self.why = f"{count} rejections within {window:g} s (max {cap}; last: {code})"

    def observe_equity(self, equity: Decimal) -> None:
        """Track equity; trips when the drawdown from the peak reaches a limit."""
        self.last = equity
        if self.peak is None or equity > self.peak:
            self.peak = equity
        drop = self.peak - equity
        if self.why is not None or drop <= 0:
            return
        cap = self._policy.max_drawdown_usdt
        if cap is not None and drop >= cap:
            self.why = f"drawdown {drop} USDT from peak {self.peak} (max {cap} USDT)"
            return
        frac = self._policy.max_drawdown
        if frac is not None and self.peak > 0 and drop >= frac * self.peak:
            self.why = (
                f"drawdown {drop / self.peak:.4%} from peak {self.peak} (equity {equity}, "
                f"max {frac:%})"
            )

    def status(self) -> GuardStatus:
        return GuardStatus(self.killed, self.why, self._in_window(), self.peak, self.last)

    def reset(self) -> None:
        """Re-arm: clear the trip and the rejections; the equity peak restarts from now."""
        self.why = None
        self._rejections.clear()
        self.peak = self.last


# -- the checker interface ------------------------------------------------------------------
class RiskReasonLike(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def details(self) -> Mapping[str, Any]: ...


class RiskReportLike(Protocol):
    @property
    def decision(self) -> str: ...
    @property
    def allowed_qty(self) -> Decimal: ...
    @property
    def reasons(self) -> Sequence[RiskReasonLike]: ...


class RiskCheck(Protocol):
    """What the guard needs of a checker (``perpbot.risk.checker.RiskChecker`` or a fake)."""

    def check(
        self,
        portfolio: Any,
        order: Any,
        *,
        marks: Mapping[str, Decimal],
        books: Mapping[str, OrderBook] | None = None,
        volatility: Mapping[str, Decimal] | None = None,
        funding_rates: Mapping[str, Decimal] | None = None,
        stress: bool = False,
    ) -> RiskReportLike: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The portfolio handed to the checker when ``perpbot.risk.checker`` is not installed."""

    account: Account
    open_orders: list[Order]


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """The order handed to the checker when ``perpbot.risk.checker`` is not installed."""

    market: str
    side: str
    qty: Decimal
    price: Decimal | None
    reduce_only: bool = False


def _risk_module() -> Any:
    return importlib.import_module("perpbot.risk.checker")


def _risk_types() -> tuple[Callable[[Account, list[Order]], Any], Callable[..., Any]]:
    """The checker's snapshot constructors, or this module's stand-ins without it."""
    try:
        risk = _risk_module()
    except ImportError:
        return Snapshot, OrderIntent
    return risk.Portfolio.from_models, risk.ProposedOrder


def _default_checker(markets: Mapping[str, MarketInfo], policy: GuardPolicy) -> RiskCheck:
    """``RiskChecker(rules, limits)`` of ``perpbot.risk.checker`` for these markets."""
    risk = _risk_module()
    rules = {s: risk.MarketRules.from_market_info(m) for s, m in markets.items()}
    try:
        limits = risk.RiskLimits(**policy.risk)
    except TypeError as exc:
        raise PolicyError(f"invalid policy [risk] table: {exc}") from exc
    return cast(RiskCheck, risk.RiskChecker(rules, limits))


# -- the core shared by both guards ---------------------------------------------------------
def _dec(name: str, value: object) -> Decimal:
    if isinstance(value, float):
        value = str(value)  # ccxt's floats; our client refuses them before sending anyway
    if isinstance(value, Decimal | int | str) and not isinstance(value, bool):
        try:
            dec = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name}={value!r} is not a decimal number") from None
        if dec.is_finite():
            return dec
    raise ValueError(f"{name}={value!r} is not a finite decimal number")


class _Cache:
    """Values fetched at most once per ttl (monotonic seconds from ``clock``)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._items: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str, ttl: float, fetch: Callable[[], Awaitable[T]]) -> T:
        hit = self._items.get(key)
        now = self._clock()
        if hit is not None and now - hit[0] < ttl:
            return cast(T, hit[1])
        value = await fetch()
        self._items[key] = (self._clock(), value)
        return value

    def drop(self, prefix: str) -> None:
        """Forget every value whose key starts with ``prefix``."""
        for key in [k for k in self._items if k.startswith(prefix)]:
            del self._items[key]


class _GuardCore:
    """Kill switch, cache and the check pipeline; subclasses fetch state from their venue."""

    def __init__(
        self, policy: GuardPolicy, checker: RiskCheck | None, clock: Callable[[], float]
    ) -> None:
        self.policy = policy
        self._checker = checker
        self._built: tuple[Mapping[str, MarketInfo], RiskCheck] | None = None
        self._cache = _Cache(clock)
        self._kill = KillSwitch(policy.kill_switch, clock)
        self._size: dict[str, SizeLimits] = {}

    # venue-specific fetchers
    async def _fetch_markets(self) -> dict[str, MarketInfo]:
        raise NotImplementedError

    async def _fetch_account(self) -> Account:
        raise NotImplementedError

    async def _fetch_open_orders(self, market: str) -> list[Order]:
        raise NotImplementedError

    async def _fetch_mark(self, market: str) -> Decimal:
        raise NotImplementedError

    async def _fetch_book(self, market: str) -> OrderBook:
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------------
    def status(self) -> GuardStatus:
        """Killed or not, why, rejections in the window, the equity peak and the last seen."""
        return self._kill.status()

    def reset(self) -> None:
        """Re-arm after a trip (an explicit human decision); drops cached state."""
        self._kill.reset()
        self._cache = _Cache(self._cache._clock)

    def invalidate(self) -> None:
        """Forget the cached account and open orders (they are refetched on the next order)."""
        self._cache.drop("account")
        self._cache.drop("orders")

    # -- the pipeline ---------------------------------------------------------------------
    def _raise_if_killed(self) -> None:
        if self._kill.why is not None:
            raise KillSwitchTripped(
                "KILL_SWITCH", f"trading is stopped: {self._kill.why}", cause=self._kill.why
            )

    def _reject(self, exc: RiskRejected) -> RiskRejected:
        self._kill.record_rejection(exc.reason)
        return exc

    async def _account(self) -> Account:
        async def fetch() -> Account:
            account = await self._fetch_account()
            self._kill.observe_equity(Decimal(account.equity))
            return account

        return await self._cache.get("account", self.policy.cache_ttl_s, fetch)

    async def _markets(self) -> dict[str, MarketInfo]:
        return await self._cache.get("markets", self.policy.markets_ttl_s, self._fetch_markets)

    def _checker_for(self, markets: Mapping[str, MarketInfo]) -> RiskCheck:
        if self._checker is not None:
            return self._checker
        if self._built is None or self._built[0] is not markets:
            self._built = (markets, _default_checker(markets, self.policy))
        return self._built[1]

    def _limits_for(self, symbol: str) -> SizeLimits:
        limits = self._size.get(symbol)
        if limits is None:
            limits = self._size[symbol] = self.policy.size.for_market(symbol)
        return limits

    async def _approve(
        self, market: str, side: str, qty: Decimal, price: Decimal | None, reduce_only: bool
    ) -> Decimal:
        """The quantity to send (``qty`` or the checker's smaller one), or raise."""
        self._raise_if_killed()
        ttl = self.policy.cache_ttl_s
        markets = await self._markets()
        account = await self._account()
        self._raise_if_killed()  # the fetch may have seen the drawdown
        info = markets.get(market)
        if info is None:
            raise self._reject(RiskRejected("UNKNOWN_MARKET", f"no market {market!r}"))
        orders = await self._cache.get(
            f"orders:{market}", ttl, lambda: self._fetch_open_orders(market)
        )
        mark = await self._cache.get(f"mark:{market}", ttl, lambda: self._fetch_mark(market))
        limits = self._limits_for(market)
        book: OrderBook | None = None
        if price is None or limits.needs_book or "max_slippage" in self.policy.risk:
            book = await self._cache.get(f"book:{market}", ttl, lambda: self._fetch_book(market))
        position = sum((Decimal(p.size) for p in account.positions if p.market == market), _ZERO)

        def size_check(q: Decimal) -> None:
            try:
                limits.check_order(
                    market=info,
                    side=side,
                    qty=q,
                    price=price,
                    mark=mark,
                    position=position,
                    book=book,
                    reduce_only=reduce_only,
                )
            except LimitExceeded as exc:
                raise self._reject(exc) from None

        size_check(qty)
        checker = self._checker_for(markets)
        make_portfolio, make_order = _risk_types()
        marks = {p.market: Decimal(p.mark) for p in account.positions}
        marks[market] = mark
        for o in orders:  # the checker values every market the portfolio holds
            if o.market not in marks:
                marks[o.market] = await self._cache.get(
                    f"mark:{o.market}", ttl, functools.partial(self._fetch_mark, o.market)
                )
        vol = self.policy.volatility
        report = checker.check(
            make_portfolio(account, orders),
            make_order(market, side, qty, price, reduce_only=reduce_only),
            marks=marks,
            books=None if book is None else {market: book},
            volatility=dict(vol) if vol else None,
            stress=self.policy.stress,
        )
        if report.decision == "allow":
            return qty
        resized = report.decision == "resize" and 0 < report.allowed_qty < qty
        if resized and self.policy.resize == "resize":
            size_check(report.allowed_qty)
            return report.allowed_qty
        reasons = [
            {"code": r.code, "message": r.message, "details": dict(r.details)}
            for r in report.reasons
        ]
        code = reasons[0]["code"] if reasons else "RISK_REJECTED"
        text = "; ".join(str(r["message"]) for r in reasons) or "refused by the risk checker"
        if resized:
            text = f"{text} (the checker would allow {report.allowed_qty}; policy: reject)"
        raise self._reject(
            RiskRejected(
                str(code),
                text,
                market=market,
                decision=report.decision,
                allowed_qty=str(report.allowed_qty),
                reasons=reasons,
            )
        )

    def _refused(self, code: str) -> None:
        """The exchange refused an order: count it, and refetch its view next time."""
        self._kill.record_rejection(code)
        self.invalidate()


# -- our client -----------------------------------------------------------------------------
class Guard(_GuardCore):
    """Guards order entry of an :class:`~perpbot.client.AsyncClient` (see the module doc).

    ``checker``: anything with the :class:`RiskCheck` ``check`` method (default: a
    ``perpbot.risk.checker.RiskChecker`` built from the markets and ``policy.risk``).
    ``clock``: monotonic seconds, for the cache and the rejection window.
    Read through ``guard.client``; only placements are guarded.
    """

    def __init__(
        self,
        client: AsyncClient,
        policy: GuardPolicy,
        *,
        checker: RiskCheck | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(policy, checker, clock)
        self.client = client

    async def _fetch_markets(self) -> dict[str, MarketInfo]:
        return {m.symbol: m for m in await self.client.markets()}

    async def _fetch_account(self) -> Account:
        return await self.client.account()

    async def _fetch_open_orders(self, market: str) -> list[Order]:
        return await self.client.open_orders()

    async def _fetch_mark(self, market: str) -> Decimal:
        return Decimal((await self.client.ticker(market)).mark)

    async def _fetch_book(self, market: str) -> OrderBook:
        return await self.client.order_book(market, depth=self.policy.book_depth)

    async def create_order(
        self,
        market: str,
        side: str,
        qty: Number,
        price: Number | None = None,
        *,
        type: str | None = None,
        tif: str | None = None,
        reduce_only: bool = False,
        client_order_id: str | None = None,
        stp: str | None = None,
    ) -> OrderResult:
        """:meth:`AsyncClient.create_order` behind the guard; raises ``RiskRejected``
        (``LimitExceeded``, ``KillSwitchTripped``) before sending anything it refuses."""
        if isinstance(qty, float) or isinstance(price, float):
            raise TypeError("qty and price must be exact decimals (str, Decimal or int)")
        side = side.upper()
        limit = None if price is None or (type or "").upper() == "MARKET" else _dec("price", price)
        want = _dec("qty", qty)
        send = await self._approve(market, side, want, limit, reduce_only)
        try:
            result = await self.client.create_order(
                market,
                side,
                qty if send == want else send,
                price,
                type=type,
                tif=tif,
                reduce_only=reduce_only,
                client_order_id=client_order_id,
                stp=stp,
            )
        except InvalidOrder as exc:
            self._refused(exc.code)
            raise
        self.invalidate()
        return result

    async def cancel_order(
        self, order_id: int | None = None, *, client_order_id: str | None = None
    ) -> Order:
        """Cancel one order. Never blocked, not even by a tripped kill switch."""
        result = await self.client.cancel_order(order_id, client_order_id=client_order_id)
        self.invalidate()
        return result

    async def cancel_all_orders(self, market: str | None = None) -> CancelAllResult:
        """Cancel every open order (of ``market``). Never blocked."""
        result = await self.client.cancel_all_orders(market)
        self.invalidate()
        return result


# -- ccxt -----------------------------------------------------------------------------------
async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a ccxt method, async (``ccxt.async_support``) or not (plain ``ccxt``)."""
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _text(value: object, default: str | None = None) -> str:
    """A ccxt number (float, int, str or None) as a plain decimal string."""
    if value is None or value == "":
        if default is None:
            raise ValueError("a required number is missing")
        return default
    return _fmt(_dec("value", value))


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _money(value: Decimal) -> Decimal:
    """A ccxt amount at the checker's money precision (1e-8 USDT), rounded down."""
    return value.quantize(_MONEY_UNIT, rounding=ROUND_FLOOR)


def _to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """A venue's mark (often finer than the tick) at the nearest tick, as the checker needs."""
    return (price / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


_HUGE = "1000000000000"
_MONEY_UNIT = Decimal("1E-8")
_DECIMAL_PLACES = 2  # ccxt.base.decimal_to_precision.DECIMAL_PLACES


def _brackets_from_tiers(tiers: Sequence[Mapping[str, Any]]) -> list[BracketInfo]:
    """ccxt leverage tiers (``maxNotional``, ``maxLeverage``, ``maintenanceMarginRate``) as our
    brackets, with the maintenance amount that keeps MM continuous at each edge (as the venues
    define it). [] if the tiers are unusable (missing fields, not increasing, inexact)."""
    rows: list[tuple[Decimal, int, Decimal]] = []
    try:
        for tier in tiers:
            cap = tier.get("maxNotional")
            rows.append(
                (
                    Decimal(str(cap)) if cap is not None else Decimal(_HUGE),
                    int(tier["maxLeverage"]),
                    Decimal(str(tier["maintenanceMarginRate"])),
                )
            )
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return []
    rows.sort(key=lambda r: r[0])
    if not all(0 < rate < 1 for _, _, rate in rows):
        return []
    from .risk.margin import (
        build_brackets,
        money_from_decimal,
        money_to_decimal,
        rate_from_decimal,
        rate_to_decimal,
    )

    try:  # the checker's rules: increasing, and whole money units at every edge
        brackets = build_brackets(
            [
                (money_from_decimal(min(cap, Decimal(_HUGE))), lev, rate_from_decimal(rate))
                for cap, lev, rate in rows
            ]
        )
    except ValueError:
        return []
    return [
        BracketInfo(
            notional_cap=_fmt(money_to_decimal(b.notional_cap)),
            max_leverage=b.max_leverage,
            maintenance_rate=_fmt(rate_to_decimal(b.mmr)),
            maintenance_amount=_fmt(money_to_decimal(b.maint_amount)),
        )
        for b in brackets
    ]


def _is_exchange_refusal(exc: BaseException) -> bool:
    """ccxt's InvalidOrder or InsufficientFunds, recognised by name (ccxt is optional)."""
    return any(c.__name__ in ("InvalidOrder", "InsufficientFunds") for c in type(exc).__mro__)


class CcxtGuard(_GuardCore):
    """The same guard over a ccxt exchange object (duck-typed; ccxt itself is not imported).

    Unified structures are mapped to our models: markets (``precision``, ``limits``, fees; the
    bands, leverage and a single maintenance bracket come from ``policy.venue``), the balance
    (``<settle>.total`` as equity, ``.free`` as available), positions (``contracts`` x
    ``contractSize``, ``side``, ``entryPrice``, ``markPrice``, ``leverage``), the ticker's
    ``markPrice`` (else ``last``) and the order book. Open orders are those of the order's
    symbol (``fetch_open_orders(symbol)``), when the exchange has the method.
    Read through ``guard.exchange``; only placements are guarded.
    """

    def __init__(
        self,
        exchange: Any,
        policy: GuardPolicy,
        *,
        checker: RiskCheck | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(policy, checker, clock)
        self.exchange = exchange

    async def _fetch_markets(self) -> dict[str, MarketInfo]:
        markets = await _call(self.exchange.load_markets)
        if not isinstance(markets, Mapping):
            markets = getattr(self.exchange, "markets", None) or {}
        tiers = await self._fetch_tiers()
        return {str(s): self._market(m, tiers.get(str(s))) for s, m in markets.items()}

    async def _fetch_tiers(self) -> dict[str, list[BracketInfo]]:
        """The venue's maintenance tiers per symbol, when ccxt can fetch them (else {})."""
        fetch = getattr(self.exchange, "fetch_leverage_tiers", None)
        has = getattr(self.exchange, "has", None) or {}
        if (
            not self.policy.venue.leverage_tiers
            or fetch is None
            or not has.get("fetchLeverageTiers")
        ):
            return {}
        try:
            rows = await _call(fetch)
        except Exception as exc:  # the conservative bracket stands in; say so
            log.warning("fetch_leverage_tiers failed (%s); using venue defaults", exc)
            return {}
        out: dict[str, list[BracketInfo]] = {}
        for symbol, tiers in (rows or {}).items():
            brackets = _brackets_from_tiers(tiers or [])
            if brackets:
                out[str(symbol)] = brackets
        return out

    def _market(self, m: Mapping[str, Any], tiers: list[BracketInfo] | None = None) -> MarketInfo:
        venue = self.policy.venue
        places = getattr(self.exchange, "precisionMode", None) == _DECIMAL_PLACES

        def step(value: Any) -> str:
            if value is None:
                return "0.00000001"
            if places:
                return format(Decimal(1).scaleb(-int(value)), "f")
            return _text(value)

        lot = step(_get(m, "precision", "amount"))
        max_qty = _text(_get(m, "limits", "amount", "max"), _HUGE)
        fee = _text(venue.fee)
        return MarketInfo(
            symbol=str(m["symbol"]),
            tick_size=step(_get(m, "precision", "price")),
            lot_size=lot,
            min_qty=_text(_get(m, "limits", "amount", "min"), lot),
            max_qty=max_qty,
            market_max_qty=_text(_get(m, "limits", "market", "max"), max_qty),
            min_notional=_text(_get(m, "limits", "cost", "min"), "0"),
            price_band=_text(venue.price_band),
            market_band=_text(venue.market_band),
            maker_fee=_text(m.get("maker"), fee),
            taker_fee=_text(m.get("taker"), fee),
            default_leverage=venue.leverage,
            funding_interval_ms=8 * 3_600_000,
            liquidation_mode="UNKNOWN",
            brackets=tiers
            or [
                BracketInfo(
                    notional_cap=_HUGE,
                    max_leverage=venue.max_leverage,
                    maintenance_rate=_text(venue.maintenance_rate),
                    maintenance_amount="0",
                )
            ],
        )

    async def _fetch_account(self) -> Account:
        venue = self.policy.venue
        balance = await _call(self.exchange.fetch_balance)
        rows = await _call(self.exchange.fetch_positions)
        markets = await self._markets()
        positions = [p for p in (self._position(r, markets) for r in rows or []) if p is not None]
        equity = _money(_dec("total", _get(balance, venue.settle, "total") or 0))
        free = _get(balance, venue.settle, "free")
        upnl = sum((Decimal(p.unrealized_pnl) for p in positions), _ZERO)
        pm = sum((Decimal(p.initial_margin) for p in positions), _ZERO)
        mm = sum((Decimal(p.maintenance_margin) for p in positions), _ZERO)
        available = equity - pm if free is None else _dec("free", free)
        return Account(
            account=str(getattr(self.exchange, "id", "ccxt")),
            collateral=_fmt(equity - upnl),
            equity=_fmt(equity),
            unrealized_pnl=_fmt(upnl),
            position_margin=_fmt(pm),
            order_margin=_fmt(max(_ZERO, equity - pm - available)),
            available=_fmt(available),
            maintenance_margin=_fmt(mm),
            margin_ratio=_fmt(mm / equity) if equity > 0 else None,
            in_liquidation=False,
            positions=positions,
        )

    def _position(
        self, row: Mapping[str, Any], markets: Mapping[str, MarketInfo]
    ) -> Position | None:
        venue = self.policy.venue
        contracts = _dec("contracts", row.get("contracts") or 0)
        if not contracts:
            return None
        size = contracts * _dec("contractSize", row.get("contractSize") or 1)
        if str(row.get("side", "long")).lower() == "short":
            size = -abs(size)
        entry = row.get("entryPrice")
        mark = _dec("markPrice", row.get("markPrice") or entry or 0)
        info = markets.get(str(row["symbol"]))
        if info is not None:
            mark = _to_tick(mark, Decimal(info.tick_size))
        leverage = int(_dec("leverage", row.get("leverage") or venue.leverage))
        cap = info.brackets[0].max_leverage if info is not None else venue.max_leverage
        leverage = max(1, min(leverage, cap))
        notional = abs(size) * mark
        upnl = row.get("unrealizedPnl")
        if upnl is None:
            upnl = size * (mark - _dec("entryPrice", entry or mark))
        upnl = _money(_dec("unrealizedPnl", upnl))
        im = row.get("initialMargin")
        mm = row.get("maintenanceMargin")
        liq = row.get("liquidationPrice")
        return Position(
            market=str(row["symbol"]),
            size=_fmt(size),
            side="LONG" if size > 0 else "SHORT",
            entry_price=None if entry is None else _text(entry),
            mark=_fmt(mark),
            notional=_fmt(notional),
            leverage=leverage,
            unrealized_pnl=_text(upnl),
            realized_pnl="0",
            initial_margin=_text(im, _fmt(notional / max(1, leverage))),
            maintenance_margin=_text(mm, _fmt(notional * venue.maintenance_rate)),
            order_margin="0",
            liquidation_price=None if liq is None else _text(liq),
        )

    async def _fetch_open_orders(self, market: str) -> list[Order]:
        fetch = getattr(self.exchange, "fetch_open_orders", None)
        if fetch is None:
            return []
        rows = await _call(fetch, market)
        out: list[Order] = []
        for i, r in enumerate(rows or []):
            oid = str(r.get("id", ""))
            amount = _dec("amount", r.get("amount") or 0)
            filled = _dec("filled", r.get("filled") or 0)
            out.append(
                Order(
                    order_id=int(oid) if oid.isdigit() else i,
                    client_order_id=r.get("clientOrderId"),
                    market=str(r.get("symbol", market)),
                    side=Side(str(r["side"]).upper()),
                    type=OrderType.MARKET if r.get("type") == "market" else OrderType.LIMIT,
                    tif=TimeInForce.GTC,
                    price=_text(r.get("price"), "0"),
                    qty=_fmt(amount),
                    filled_qty=str(filled),
                    remaining_qty=_text(r.get("remaining"), _fmt(amount - filled)),
                    reduce_only=bool(r.get("reduceOnly")),
                    status=OrderStatus.NEW,
                    created_ts=int(r.get("timestamp") or 0),
                    done_ts=None,
                )
            )
        return out

    async def _fetch_mark(self, market: str) -> Decimal:
        """The venue's mark price (``fetch_mark_price`` where ccxt has it: liquidation follows
        the mark, not the last trade), else the ticker's ``markPrice``, ``last``, ``close``."""
        has = getattr(self.exchange, "has", None) or {}
        fetch_mark = getattr(self.exchange, "fetch_mark_price", None)
        ticker: Any = None
        if fetch_mark is not None and has.get("fetchMarkPrice"):
            ticker = await _call(fetch_mark, market)
        if _get(ticker, "markPrice") is None:
            ticker = await _call(self.exchange.fetch_ticker, market)
        value = _get(ticker, "markPrice") or _get(ticker, "last") or _get(ticker, "close")
        if value is None:
            raise RiskRejected("NO_MARK", f"the ticker of {market} has no price", market=market)
        tick = Decimal((await self._markets())[market].tick_size)
        return _to_tick(_dec("mark", value), tick)

    async def _fetch_book(self, market: str) -> OrderBook:
        book = await _call(self.exchange.fetch_order_book, market, self.policy.book_depth)

        def levels(side: str) -> list[tuple[str, str]]:
            return [(_text(lv[0]), _text(lv[1])) for lv in book.get(side) or []]

        return OrderBook(
            market=market,
            seq=int(book.get("nonce") or 0),
            ts=int(book.get("timestamp") or 0),
            bids=levels("bids"),
            asks=levels("asks"),
        )

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Any,
        price: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """ccxt's ``create_order`` behind the guard (same arguments, same result)."""
        params = dict(params or {})
        reduce_only = bool(params.get("reduceOnly") or params.get("reduce_only"))
        market_order = str(type).lower() == "market"
        limit = None if price is None or market_order else _dec("price", price)
        want = _dec("amount", amount)
        send = await self._approve(symbol, side.upper(), want, limit, reduce_only)
        try:
            result = await _call(
                self.exchange.create_order,
                symbol,
                type,
                side,
                amount if send == want else float(send),
                price,
                params,
            )
        except Exception as exc:
            if _is_exchange_refusal(exc):
                self._refused(exc.__class__.__name__)
            raise
        self.invalidate()
        return result

    async def cancel_order(
        self, id: str, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """ccxt's ``cancel_order``. Never blocked."""
        result = await _call(self.exchange.cancel_order, id, symbol, dict(params or {}))
        self.invalidate()
        return result

    async def cancel_all_orders(
        self, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """ccxt's ``cancel_all_orders``. Never blocked."""
        result = await _call(self.exchange.cancel_all_orders, symbol, dict(params or {}))
        self.invalidate()
        return result

"""REST clients for the sandbox API (docs/api.md): :class:`AsyncClient` and its blocking twin.

::

    async with perpbot.AsyncClient(api_key="demo-key", api_secret="demo-secret-0123456789") as ex:
        book = await ex.order_book("BTC-PERP")
        result = await ex.create_order("BTC-PERP", "BUY", "0.01", "59000")
        await ex.cancel_order(result.order.order_id)

Every method returns a model of :mod:`perpbot.models` and raises the errors of
:mod:`perpbot.errors`. Private requests are signed for you (wall-clock milliseconds, a fresh
signature per attempt). Failures are retried by a :class:`~perpbot.retry.RetryPolicy` only when
that is safe; every placement carries a client order id (generated when you give none), so a
retried placement never creates a second order.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import TypeAdapter

from .errors import (
    DuplicateOrder,
    InvalidOrder,
    PerpbotError,
    RateLimited,
    RequestTimeout,
    TransportError,
    UnknownOrder,
    error_from_response,
)
from .models import (
    Account,
    Alert,
    CancelAllResult,
    Candle,
    Cascade,
    Fill,
    FundingInfo,
    FundingPayment,
    FundingRecord,
    LeverageInfo,
    LiquidationBands,
    LiquidationRecord,
    MarketInfo,
    Order,
    OrderBook,
    OrderResult,
    Position,
    PublicTrade,
    RateLimitRules,
    ServerTime,
    Ticker,
)
from .retry import RetryPolicy, is_ambiguous, is_retryable
from .signing import API_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, HmacSha256
from .streams import Backoff, LocalOrderBook, Stream, watch_book

__all__ = [
    "ORDER_ROUTES",
    "WEIGHTS",
    "AsyncClient",
    "Client",
    "OrderSizeLimits",
    "RequestLimiter",
    "book_weight",
    "new_client_order_id",
]

T = TypeVar("T")
P = ParamSpec("P")

Number = Decimal | str | int
"""An exact decimal: ``Decimal("0.01")``, ``"0.01"`` or an int. Floats are refused."""

# Request weights by route ("METHOD /template"), as the exchange counts them (docs/api.md).
# A mirror of the sandbox's table (a test keeps them equal); the book is weighted by depth.
WEIGHTS: dict[str, int] = {
    "POST /v1/orders": 1,
    "GET /v1/orders": 2,
    "DELETE /v1/orders": 5,
    "GET /v1/orders/history": 5,
    "GET /v1/orders/{order_id}": 1,
    "PATCH /v1/orders/{order_id}": 1,
    "DELETE /v1/orders/{order_id}": 1,
    "GET /v1/orders/by-client-id/{client_order_id}": 1,
    "PATCH /v1/orders/by-client-id/{client_order_id}": 1,
    "DELETE /v1/orders/by-client-id/{client_order_id}": 1,
    "GET /v1/account": 5,
    "GET /v1/positions": 5,
    "GET /v1/fills": 5,
    "GET /v1/funding-payments": 5,
    "GET /v1/liquidations": 5,
    "GET /v1/leverage": 1,
    "POST /v1/leverage/{market}": 1,
    "GET /v1/time": 1,
    "GET /v1/markets": 1,
    "GET /v1/tickers": 5,
    "GET /v1/markets/{market}/ticker": 1,
    "GET /v1/markets/{market}/book": 2,
    "GET /v1/markets/{market}/trades": 2,
    "GET /v1/markets/{market}/funding": 1,
    "GET /v1/markets/{market}/funding/history": 2,
    "GET /v1/markets/{market}/candles": 2,
    "GET /v1/rate-limits": 1,
    "GET /v1/alerts": 2,
    "GET /v1/markets/{market}/liquidation-bands": 10,
    "GET /v1/markets/{market}/cascade": 20,
}
ORDER_ROUTES = frozenset(
    {
        "POST /v1/orders",
        "PATCH /v1/orders/{order_id}",
        "PATCH /v1/orders/by-client-id/{client_order_id}",
    }
)
"""Routes that also count against the order-count budgets."""


def book_weight(depth: int) -> int:
    """Weight of ``GET /v1/markets/{market}/book`` at ``depth``: <=100: 2, <=500: 5, more: 10."""
    return 2 if depth <= 100 else 5 if depth <= 500 else 10


class RequestLimiter(Protocol):
    """Client-side rate limiting (e.g. :class:`perpbot.limits.RateLimiter`): waits before each
    request (``route`` is a :data:`WEIGHTS` key), learns from every response's
    ``x-pb-used-weight-1m`` / ``x-pb-order-count-10s`` headers, and hears of every 429/418."""

    async def acquire(self, route: str, weight: int, orders: int) -> None: ...

    def observe(self, headers: Mapping[str, str]) -> None: ...

    def on_throttled(self, retry_after: float) -> None:
        """Called after a 429 or 418 anyway, with its ``Retry-After`` in seconds."""


class OrderSizeLimits(Protocol):
    """Client-side size limits, checked before an order is sent; raises ``LimitExceeded``."""

    @property
    def needs_book(self) -> bool: ...

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
    ) -> None: ...


_MARKETS = TypeAdapter(list[MarketInfo])
_TICKERS = TypeAdapter(list[Ticker])
_TRADES = TypeAdapter(list[PublicTrade])
_FUNDING_HISTORY = TypeAdapter(list[FundingRecord])
_CANDLES = TypeAdapter(list[Candle])
_POSITIONS = TypeAdapter(list[Position])
_ORDERS = TypeAdapter(list[Order])
_FILLS = TypeAdapter(list[Fill])
_FUNDING_PAYMENTS = TypeAdapter(list[FundingPayment])
_ALERTS = TypeAdapter(list[Alert])
_LEVERAGE = TypeAdapter(list[LeverageInfo])
_LIQUIDATIONS = TypeAdapter(list[LiquidationRecord])

_JSON = "application/json"
_ZERO = Decimal(0)


@functools.lru_cache(maxsize=1024)
def _q(value: str) -> str:
    """``value`` percent-encoded for a path segment or a query value (signed as sent)."""
    return quote(value, safe="")


def _query(path: str, **params: object) -> str:
    parts = [f"{k}={_q(str(v))}" for k, v in params.items() if v is not None]
    return f"{path}?{'&'.join(parts)}" if parts else path


def _decimal_text(value: object, name: str) -> str:
    """The wire form of an exact decimal; floats (inexact) are refused with TypeError."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]  # the exchange validates the text
    if kind is Decimal:
        assert isinstance(value, Decimal)
        if not value.is_finite():
            raise ValueError(f"{name} must be finite, got {value}")
        return format(value, "f")
    if kind is int:
        return str(value)
    if isinstance(value, float):
        raise TypeError(
            f"{name}={value!r} is a float, which cannot hold most decimals exactly; "
            f"pass a str or a Decimal (e.g. {name}='{value}')"
        )
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return _decimal_text(Decimal(value), name)
    raise TypeError(f"{name} must be a str, Decimal or int, got {type(value).__name__}")


def _to_decimal(text: str, name: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name}={text!r} is not a decimal number") from None


def new_client_order_id() -> str:
    """A fresh client order id: ``pb-`` and 20 random hex digits."""
    return "pb-" + os.urandom(10).hex()


class _NoCookies(httpx.Cookies):
    """The exchange sets no cookies; httpx would still parse every response for them (through
    urllib's cookie jar, a large share of its per-request cost)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class AsyncClient:
    """Async client for the sandbox REST API, one keep-alive connection pool inside.

    ``api_key``/``api_secret`` are needed for private routes. ``transport`` replaces httpx's
    network transport (``httpx.ASGITransport(app)`` runs against an in-process app). ``retry``
    defaults to ``RetryPolicy()`` (``RetryPolicy(max_attempts=1)`` turns retries off).
    ``limiter`` and ``size_limits`` are optional client-side limits (see :mod:`perpbot.limits`).
    ``clock`` gives wall-clock seconds for request timestamps.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        limiter: RequestLimiter | None = None,
        size_limits: OrderSizeLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (api_key is None) != (api_secret is None):
            raise ValueError("give both api_key and api_secret, or neither")
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self._http._cookies = _NoCookies()  # no Set-Cookie parsing on every response
        self._prefix = self._http.base_url.raw_path.decode("ascii").rstrip("/")
        self._origin = str(self._http.base_url).rstrip("/")
        self._urls: dict[str, httpx.URL] = {}  # path -> absolute URL, parsed once
        self._key = api_key
        self._signer = None if api_secret is None else HmacSha256(api_secret.encode())
        self._secret = api_secret
        self._retry = retry if retry is not None else RetryPolicy()
        self._limiter = limiter
        self._size_limits = size_limits
        self._clock = clock
        self._markets: dict[str, MarketInfo] | None = None
        self._throttled_until = 0.0  # monotonic time until which the exchange said "wait"
        # Signatures are single-use: identical requests get distinct timestamps.
        self._ts_high = 0
        self._recent: dict[tuple[str, str, bytes], int] = {}

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- streams ------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        """The exchange's WebSocket endpoint (``ws://.../v1/ws``)."""
        base = str(self._http.base_url).rstrip("/")
        return ("wss" + base[5:] if base.startswith("https") else "ws" + base[4:]) + "/v1/ws"

    def stream(
        self, *channels: str, heartbeat_timeout: float = 15.0, reconnect: Backoff | None = None
    ) -> Stream:
        """A reconnecting WebSocket stream of ``channels`` (``book:BTC-PERP``, ``orders``, ...);
        private channels log in with this client's key. Use with ``async with`` and
        ``async for``; see :class:`perpbot.streams.Stream`."""
        return Stream(
            self.ws_url,
            channels,
            api_key=self._key,
            api_secret=self._secret,
            heartbeat_timeout=heartbeat_timeout,
            reconnect=reconnect if reconnect is not None else Backoff(),
        )

    async def watch_book(self, market: str) -> AsyncIterator[LocalOrderBook]:
        """A local order book of ``market`` kept in sync from the stream (snapshot + diffs,
        gaps and reconnects resynced); yields the same book object after every change. The
        stream closes when the iteration stops."""
        async with self.stream(f"book:{market}") as stream:
            async for book in watch_book(stream, market):
                yield book

    # -- the request path ------------------------------------------------------------------
    def _timestamp(self, method: str, path: str, body: bytes) -> int:
        ts = int(self._clock() * 1000)
        key = (method, path, body)
        if ts > self._ts_high:
            if self._recent:
                self._recent.clear()  # every remembered request is older than ts
            self._ts_high = ts
        else:
            last = self._recent.get(key)
            if last is not None and ts <= last:
                ts = last + 1
                if ts > self._ts_high:
                    self._ts_high = ts
        self._recent[key] = ts
        return ts

    async def _send(
        self, method: str, path: str, route: str, body: bytes, signed: bool, weight: int = 0
    ) -> httpx.Response:
        """One attempt: wait for limits, sign, send, map failures to perpbot errors."""
        if self._throttled_until:
            await self._wait_throttled(method, path)
        limiter = self._limiter
        if limiter is not None:
            await limiter.acquire(
                route, weight or WEIGHTS[route], 1 if route in ORDER_ROUTES else 0
            )
        headers: dict[str, str] | None = None
        if signed and self._signer is not None:
            ts = self._timestamp(method, path, body)
            payload = f"{ts}{method}{self._prefix}{path}".encode() + body
            headers = {
                API_KEY_HEADER: self._key,  # type: ignore[dict-item]
                TIMESTAMP_HEADER: str(ts),
                SIGNATURE_HEADER: self._signer.hexdigest(payload),
            }
            if body:
                headers["Content-Type"] = _JSON
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= 1024:
                self._urls.clear()
            url = self._urls[path] = httpx.URL(self._origin + path)
        try:
            response = await self._http.request(method, url, content=body or None, headers=headers)
        except httpx.TimeoutException as exc:
            raise RequestTimeout(
                f"{method} {path}: no answer in time ({type(exc).__name__})",
                method=method,
                path=path,
            ) from exc
        except httpx.TransportError as exc:
            raise TransportError(
                f"{method} {path}: {type(exc).__name__}: {exc}", method=method, path=path
            ) from exc
        if limiter is not None:
            limiter.observe(response.headers)
        if not 200 <= response.status_code < 300:
            raise self._error(response, method, path)
        return response

    def _error(self, response: httpx.Response, method: str, path: str) -> PerpbotError:
        try:
            body: Any = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = response.text
        err = error_from_response(
            response.status_code,
            body,
            retry_after=response.headers.get("retry-after"),
            method=method,
            path=path,
        )
        if err.retry_after is not None and isinstance(err, RateLimited):
            if self._limiter is not None:
                self._limiter.on_throttled(err.retry_after)
            if response.status_code == 429:
                until = self._retry.monotonic() + err.retry_after
                self._throttled_until = max(self._throttled_until, until)
        return err

    async def _wait_throttled(self, method: str, path: str) -> None:
        """After a 429, requests wait out its Retry-After instead of earning strikes (with
        retries off they fail at once with :class:`RateLimited`, sending nothing)."""
        policy = self._retry
        remaining = self._throttled_until - policy.monotonic()
        if remaining <= 0:
            self._throttled_until = 0.0
            return
        if policy.max_attempts <= 1 or remaining > policy.max_total:
            raise RateLimited(
                429,
                "RATE_LIMITED",
                f"throttled by the exchange for {remaining:.3f} s more (not sent)",
                retry_after=remaining,
                method=method,
                path=path,
            )
        await policy.sleep(remaining)

    async def _request(
        self,
        method: str,
        path: str,
        route: str,
        body: bytes = b"",
        *,
        signed: bool,
        idempotent: bool = True,
        weight: int = 0,
    ) -> httpx.Response:
        """:meth:`_send` under the retry policy."""
        policy = self._retry
        started = policy.monotonic()
        try:
            return await self._send(method, path, route, body, signed, weight)
        except PerpbotError as exc:
            if policy.max_attempts <= 1 or not is_retryable(exc, idempotent=idempotent):
                raise
            error = exc

        async def again(previous: BaseException) -> httpx.Response:
            return await self._send(method, path, route, body, signed, weight)

        return await policy.retry(again, error, started=started, idempotent=idempotent)

    async def _get(self, path: str, route: str, *, signed: bool, weight: int = 0) -> bytes:
        return (await self._request("GET", path, route, signed=signed, weight=weight)).content

    # -- public market data ----------------------------------------------------------------
    async def server_time(self) -> ServerTime:
        """Exchange (possibly simulated) time and wall time."""
        return ServerTime.model_validate_json(
            await self._get("/v1/time", "GET /v1/time", signed=False)
        )

    async def markets(self) -> list[MarketInfo]:
        """Every instrument with its filters, fees, brackets and funding interval."""
        content = await self._get("/v1/markets", "GET /v1/markets", signed=False)
        markets = _MARKETS.validate_json(content)
        self._markets = {m.symbol: m for m in markets}
        return markets

    async def ticker(self, market: str) -> Ticker:
        """Last, mark and index price, best bid/ask and 24 h statistics of ``market``."""
        path = f"/v1/markets/{_q(market)}/ticker"
        return Ticker.model_validate_json(
            await self._get(path, "GET /v1/markets/{market}/ticker", signed=False)
        )

    async def tickers(self) -> list[Ticker]:
        """Every market's ticker."""
        return _TICKERS.validate_json(
            await self._get("/v1/tickers", "GET /v1/tickers", signed=False)
        )

    async def order_book(self, market: str, depth: int = 20) -> OrderBook:
        """Aggregated depth (1..1000 levels) and its WebSocket ``seq``."""
        path = f"/v1/markets/{_q(market)}/book?depth={int(depth)}"
        content = await self._get(
            path, "GET /v1/markets/{market}/book", signed=False, weight=book_weight(depth)
        )
        return OrderBook.model_validate_json(content)

    async def trades(self, market: str, *, limit: int | None = None) -> list[PublicTrade]:
        """Recent public trades, newest first."""
        path = _query(f"/v1/markets/{_q(market)}/trades", limit=limit)
        return _TRADES.validate_json(
            await self._get(path, "GET /v1/markets/{market}/trades", signed=False)
        )

    async def funding(self, market: str) -> FundingInfo:
        """Premium now, predicted and last funding rate, next funding time."""
        path = f"/v1/markets/{_q(market)}/funding"
        return FundingInfo.model_validate_json(
            await self._get(path, "GET /v1/markets/{market}/funding", signed=False)
        )

    async def funding_history(
        self, market: str, *, limit: int | None = None
    ) -> list[FundingRecord]:
        """Settled funding rates, newest first."""
        path = _query(f"/v1/markets/{_q(market)}/funding/history", limit=limit)
        return _FUNDING_HISTORY.validate_json(
            await self._get(path, "GET /v1/markets/{market}/funding/history", signed=False)
        )

    async def candles(
        self,
        market: str,
        interval: str = "1m",
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 500,
    ) -> list[Candle]:
        """OHLCV candles (1m 5m 15m 1h 4h 1d), oldest first; ``start``/``end`` in exchange ms."""
        path = _query(
            f"/v1/markets/{_q(market)}/candles",
            interval=interval,
            start=start,
            end=end,
            limit=limit,
        )
        return _CANDLES.validate_json(
            await self._get(path, "GET /v1/markets/{market}/candles", signed=False)
        )

    async def rate_limits(self) -> RateLimitRules:
        """The limits in force, the ban rules, and every route's weight."""
        content = await self._get("/v1/rate-limits", "GET /v1/rate-limits", signed=False)
        return RateLimitRules.model_validate_json(content)

    # -- public: early warning (sandbox monitor, docs/monitor.md) -----------------------------
    async def alerts(
        self,
        *,
        detector: str | None = None,
        severity: str | None = None,
        market: str | None = None,
        account: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Alert]:
        """Recent anomaly alerts, newest first; poll with ``after_id`` = the highest id seen
        (or stream them: channel ``alerts:all`` / ``alerts:<MARKET>``)."""
        path = _query(
            "/v1/alerts",
            detector=detector,
            severity=severity,
            market=market,
            account=account,
            after_id=after_id or None,
            limit=limit,
        )
        return _ALERTS.validate_json(await self._get(path, "GET /v1/alerts", signed=False))

    async def liquidation_bands(
        self, market: str, *, buckets: int | None = None, range: Number | None = None
    ) -> LiquidationBands:
        """Every account's liquidation price bucketed around the mark, against cumulative book
        depth: where forced flow would first exceed the book."""
        path = _query(
            f"/v1/markets/{_q(market)}/liquidation-bands",
            buckets=buckets,
            range=None if range is None else _decimal_text(range, "range"),
        )
        content = await self._get(path, "GET /v1/markets/{market}/liquidation-bands", signed=False)
        return LiquidationBands.model_validate_json(content)

    async def cascade(
        self,
        market: str,
        shock: Number,
        *,
        seconds: int | None = None,
        beta: Number | None = None,
    ) -> Cascade:
        """Predict the liquidation cascade a price ``shock`` (e.g. ``"-0.1"``) would set off,
        simulated on a snapshot (the exchange is not changed)."""
        path = _query(
            f"/v1/markets/{_q(market)}/cascade",
            shock=_decimal_text(shock, "shock"),
            seconds=seconds,
            beta=None if beta is None else _decimal_text(beta, "beta"),
        )
        content = await self._get(path, "GET /v1/markets/{market}/cascade", signed=False)
        return Cascade.model_validate_json(content)

    # -- private: account --------------------------------------------------------------------
    async def account(self) -> Account:
        """Collateral, equity, margins, available balance, margin ratio and positions."""
        return Account.model_validate_json(
            await self._get("/v1/account", "GET /v1/account", signed=True)
        )

    async def positions(self, market: str | None = None) -> list[Position]:
        """Open positions (of one market, or all) with PnL and liquidation price."""
        path = _query("/v1/positions", market=market)
        return _POSITIONS.validate_json(await self._get(path, "GET /v1/positions", signed=True))

    async def fills(self, market: str | None = None, *, limit: int | None = None) -> list[Fill]:
        """Your fills, newest first, with fee, liquidity and realized PnL."""
        path = _query("/v1/fills", market=market, limit=limit)
        return _FILLS.validate_json(await self._get(path, "GET /v1/fills", signed=True))

    async def funding_payments(
        self, market: str | None = None, *, limit: int | None = None
    ) -> list[FundingPayment]:
        """Funding you paid (``amount`` > 0) or received (< 0), newest first."""
        path = _query("/v1/funding-payments", market=market, limit=limit)
        content = await self._get(path, "GET /v1/funding-payments", signed=True)
        return _FUNDING_PAYMENTS.validate_json(content)

    async def leverage(self, market: str | None = None) -> list[LeverageInfo]:
        """Leverage per market (of one market, or all)."""
        path = _query("/v1/leverage", market=market)
        return _LEVERAGE.validate_json(await self._get(path, "GET /v1/leverage", signed=True))

    async def set_leverage(self, market: str, leverage: int) -> LeverageInfo:
        """Set the leverage of ``market`` (an absolute value: retried safely)."""
        body = orjson.dumps({"leverage": leverage})
        response = await self._request(
            "POST", f"/v1/leverage/{_q(market)}", "POST /v1/leverage/{market}", body, signed=True
        )
        return LeverageInfo.model_validate_json(response.content)

    async def liquidations(self, limit: int | None = None) -> list[LiquidationRecord]:
        """Margin calls and every liquidation step of your account, with their numbers."""
        path = _query("/v1/liquidations", limit=limit)
        return _LIQUIDATIONS.validate_json(
            await self._get(path, "GET /v1/liquidations", signed=True)
        )

    # -- private: orders -----------------------------------------------------------------------
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
        """Place an order; returns it with the fills it made on arrival.

        ``side`` BUY/SELL; ``type`` LIMIT (default when a price is given) or MARKET; ``tif``
        GTC/IOC/FOK/POST_ONLY; ``stp`` CANCEL_TAKER/CANCEL_MAKER/CANCEL_BOTH. ``qty`` and
        ``price`` are exact decimals (str, Decimal or int; a float raises TypeError).

        A client order id is generated when none is given, so the placement is retried
        safely: after an ambiguous failure (timeout, dropped connection, 5xx) the order is
        looked up by its client order id before anything is resent, and a ``409`` on a retry
        resolves to the existing order. Such a recovered result carries the order as it is now
        and its taker fills read back from ``GET /v1/fills`` (empty if that read fails; the
        order's ``filled_qty`` is authoritative).
        """
        qty_text = _decimal_text(qty, "qty")
        price_text = None if price is None else _decimal_text(price, "price")
        side = side.upper()
        cid = client_order_id or new_client_order_id()
        fields: dict[str, object] = {
            "market": market,
            "side": side,
            "type": (type or ("MARKET" if price is None else "LIMIT")).upper(),
            "qty": qty_text,
            "client_order_id": cid,
        }
        if price_text is not None:
            fields["price"] = price_text
        if tif is not None:
            fields["tif"] = tif.upper()
        if reduce_only:
            fields["reduce_only"] = True
        if stp is not None:
            fields["stp"] = stp.upper()
        if self._size_limits is not None:
            await self._check_size(market, side, qty_text, price_text, reduce_only)
        body = orjson.dumps(fields)

        async def attempt(previous: BaseException | None) -> OrderResult:
            if previous is not None and is_ambiguous(previous) and "/" not in cid:
                # The exchange may have placed it: look before placing again.
                try:
                    existing = await self._fetch_order_by_client_id(cid)
                except UnknownOrder:
                    pass
                else:
                    return await self._recovered(existing)
            try:
                response = await self._send("POST", "/v1/orders", "POST /v1/orders", body, True)
            except DuplicateOrder as exc:
                found = exc.existing_order
                if previous is None or found is None:
                    raise  # the caller's id was taken before this call
                return await self._recovered(Order.model_validate(found))
            return OrderResult.model_validate_json(response.content)

        return await self._attempts(attempt, idempotent=True)

    async def _fetch_order_by_client_id(self, cid: str) -> Order:
        path = f"/v1/orders/by-client-id/{_q(cid)}"
        response = await self._send(
            "GET", path, "GET /v1/orders/by-client-id/{client_order_id}", b"", True
        )
        return Order.model_validate_json(response.content)

    async def _recovered(self, order: Order) -> OrderResult:
        """An OrderResult for an order placed by an earlier attempt (see create_order)."""
        fills: list[Fill] = []
        if Decimal(order.filled_qty) != _ZERO:
            path = _query("/v1/fills", market=order.market, limit=1000)
            try:
                response = await self._send("GET", path, "GET /v1/fills", b"", True)
                recent = _FILLS.validate_json(response.content)
            except PerpbotError:
                recent = []
            fills = [f for f in recent if f.order_id == order.order_id and f.liquidity == "TAKER"]
            fills.reverse()  # oldest first, as a placement reports them
        return OrderResult(order=order, fills=fills)

    async def _check_size(
        self, market: str, side: str, qty: str, price: str | None, reduce_only: bool
    ) -> None:
        limits = self._size_limits
        assert limits is not None
        markets = self._markets
        if markets is None or market not in markets:
            await self.markets()
            markets = self._markets
        assert markets is not None
        info = markets.get(market)
        if info is None:
            return  # unknown market: the exchange refuses it (404 UNKNOWN_MARKET)
        if limits.needs_book:
            ticker, positions, book = await asyncio.gather(
                self.ticker(market), self.positions(market), self.order_book(market, depth=100)
            )
        else:
            ticker, positions = await asyncio.gather(self.ticker(market), self.positions(market))
            book = None
        position = next((Decimal(p.size) for p in positions if p.market == market), _ZERO)
        limits.check_order(
            market=info,
            side=side,
            qty=_to_decimal(qty, "qty"),
            price=None if price is None else _to_decimal(price, "price"),
            mark=Decimal(ticker.mark),
            position=position,
            book=book,
            reduce_only=reduce_only,
        )

    @staticmethod
    def _order_path(order_id: int | None, client_order_id: str | None) -> tuple[str, str]:
        if (order_id is None) == (client_order_id is None):
            raise ValueError("give exactly one of order_id and client_order_id")
        if client_order_id is not None:
            return (
                f"/v1/orders/by-client-id/{_q(client_order_id)}",
                "/v1/orders/by-client-id/{client_order_id}",
            )
        return f"/v1/orders/{int(order_id)}", "/v1/orders/{order_id}"  # type: ignore[arg-type]

    async def get_order(
        self, order_id: int | None = None, *, client_order_id: str | None = None
    ) -> Order:
        """One of your orders, open or recently finished, by id or client order id."""
        path, template = self._order_path(order_id, client_order_id)
        return Order.model_validate_json(await self._get(path, "GET " + template, signed=True))

    async def amend_order(
        self,
        order_id: int | None = None,
        *,
        client_order_id: str | None = None,
        price: Number | None = None,
        qty: Number | None = None,
    ) -> Order:
        """Change the price and/or total quantity of an open order; returns it amended.

        Retried after an ambiguous failure only when addressed by client order id; a retry
        answered ``AMEND_NO_CHANGE`` means the earlier attempt applied, and returns the order.
        """
        path, template = self._order_path(order_id, client_order_id)
        fields: dict[str, str] = {}
        if price is not None:
            fields["price"] = _decimal_text(price, "price")
        if qty is not None:
            fields["qty"] = _decimal_text(qty, "qty")
        body = orjson.dumps(fields)
        route = "PATCH " + template

        async def attempt(previous: BaseException | None) -> Order:
            try:
                response = await self._send("PATCH", path, route, body, True)
            except InvalidOrder as exc:
                if previous is None or exc.code != "AMEND_NO_CHANGE":
                    raise
                response = await self._send("GET", path, "GET " + template, b"", True)
            return Order.model_validate_json(response.content)

        return await self._attempts(attempt, idempotent=client_order_id is not None)

    async def cancel_order(
        self, order_id: int | None = None, *, client_order_id: str | None = None
    ) -> Order:
        """Cancel an open order by id or client order id; returns it canceled.

        A retry answered ``ORDER_NOT_OPEN`` for an order that is now canceled returns it (the
        earlier attempt canceled it).
        """
        path, template = self._order_path(order_id, client_order_id)
        route = "DELETE " + template

        async def attempt(previous: BaseException | None) -> Order:
            try:
                response = await self._send("DELETE", path, route, b"", True)
            except InvalidOrder as exc:
                found = exc.details.get("order")
                if previous is None or exc.code != "ORDER_NOT_OPEN" or not isinstance(found, dict):
                    raise
                order = Order.model_validate(found)
                if order.status != "CANCELED":
                    raise
                return order
            return Order.model_validate_json(response.content)

        return await self._attempts(attempt, idempotent=True)

    async def _attempts(
        self, attempt: Callable[[BaseException | None], Awaitable[T]], *, idempotent: bool
    ) -> T:
        policy = self._retry
        started = policy.monotonic()
        try:
            return await attempt(None)
        except PerpbotError as exc:
            if policy.max_attempts <= 1 or not is_retryable(exc, idempotent=idempotent):
                raise
            error = exc
        return await policy.retry(attempt, error, started=started, idempotent=idempotent)

    async def cancel_all_orders(self, market: str | None = None) -> CancelAllResult:
        """Cancel every open order (of one market, or all); returns the canceled ids (after a
        retried call, only those the last attempt canceled)."""
        path = _query("/v1/orders", market=market)
        response = await self._request("DELETE", path, "DELETE /v1/orders", signed=True)
        return CancelAllResult.model_validate_json(response.content)

    async def open_orders(self, market: str | None = None) -> list[Order]:
        """Your open orders (of one market, or all)."""
        path = _query("/v1/orders", market=market)
        return _ORDERS.validate_json(await self._get(path, "GET /v1/orders", signed=True))

    async def order_history(
        self, market: str | None = None, *, limit: int | None = None
    ) -> list[Order]:
        """Open and recently finished orders (last 1,000, 24 h), newest first."""
        path = _query("/v1/orders/history", market=market, limit=limit)
        return _ORDERS.validate_json(await self._get(path, "GET /v1/orders/history", signed=True))


# -- the blocking client -----------------------------------------------------------------------
def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self._client, *args, **kwargs))

    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = method.__doc__
    call.__wrapped__ = method  # type: ignore[attr-defined]  # inspect.signature follows it
    return call


class Client:
    """The same API, blocking: for scripts and notebooks.

    It runs an :class:`AsyncClient` on a private event loop in a background thread (one per
    client), so the request building, signing, retries and limits are exactly the async
    client's; each call costs one hop between threads. Use it as a context manager or call
    :meth:`close`. Do not call it from its own loop's callbacks (e.g. a limiter's).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        limiter: RequestLimiter | None = None,
        size_limits: OrderSizeLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = AsyncClient(
            base_url,
            api_key,
            api_secret,
            timeout=timeout,
            transport=transport,
            retry=retry,
            limiter=limiter,
            size_limits=size_limits,
            clock=clock,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="perpbot-client", daemon=True
        )
        self._thread.start()
        self._closed = False

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the background thread (idempotent)."""
        if self._closed:
            return
        try:
            self._run(self._client.aclose())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._client.retry_policy

    server_time = _blocking(AsyncClient.server_time)
    markets = _blocking(AsyncClient.markets)
    ticker = _blocking(AsyncClient.ticker)
    tickers = _blocking(AsyncClient.tickers)
    order_book = _blocking(AsyncClient.order_book)
    trades = _blocking(AsyncClient.trades)
    funding = _blocking(AsyncClient.funding)
    funding_history = _blocking(AsyncClient.funding_history)
    candles = _blocking(AsyncClient.candles)
    rate_limits = _blocking(AsyncClient.rate_limits)
    alerts = _blocking(AsyncClient.alerts)
    liquidation_bands = _blocking(AsyncClient.liquidation_bands)
    cascade = _blocking(AsyncClient.cascade)
    account = _blocking(AsyncClient.account)
    positions = _blocking(AsyncClient.positions)
    fills = _blocking(AsyncClient.fills)
    funding_payments = _blocking(AsyncClient.funding_payments)
    leverage = _blocking(AsyncClient.leverage)
    set_leverage = _blocking(AsyncClient.set_leverage)
    liquidations = _blocking(AsyncClient.liquidations)
    create_order = _blocking(AsyncClient.create_order)
    get_order = _blocking(AsyncClient.get_order)
    amend_order = _blocking(AsyncClient.amend_order)
    cancel_order = _blocking(AsyncClient.cancel_order)
    cancel_all_orders = _blocking(AsyncClient.cancel_all_orders)
    open_orders = _blocking(AsyncClient.open_orders)
    order_history = _blocking(AsyncClient.order_history)

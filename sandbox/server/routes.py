"""REST routes: public market data, private trading (signed), admin (token). See docs/api.md."""

from __future__ import annotations

import hmac
from fractions import Fraction
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from perpbot import models as m
from perpbot.signing import API_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Deposit,
    EngineError,
    Instrument,
    SetLeverage,
    money_units,
)
from sandbox.engine.book import Order

from . import wire
from .app import JSON_TYPE, WEIGHTS
from .faults import FaultPlanRequest, spec_from_model
from .orders import place_order as place_order_impl
from .orders import request_path, validation_error
from .records import CANDLE_INTERVALS
from .state import SandboxState
from .wire import ApiError, engine_error

ADMIN_HEADER = "X-PB-ADMIN-TOKEN"
MarketPath = Annotated[str, Path(max_length=32, description="e.g. BTC-PERP")]
OrderIdPath = Annotated[int, Path(ge=1, le=2**62)]
ClientIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:/-]{1,36}$")]
Limit = Annotated[int, Query(ge=1, le=1000)]
MarketQuery = Annotated[str | None, Query(max_length=32)]

_ERR = {"model": m.ErrorBody}
PUBLIC_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _ERR,
    418: _ERR,
    422: _ERR,
    429: _ERR,
    503: _ERR,
    504: _ERR,
}
PRIVATE_ERRORS: dict[int | str, dict[str, Any]] = {400: _ERR, 401: _ERR, 409: _ERR, **PUBLIC_ERRORS}
SIGNED: dict[str, Any] = {"security": [{"ApiKey": [], "Timestamp": [], "Signature": []}]}
ADMIN: dict[str, Any] = {"security": [{"AdminToken": []}]}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON_TYPE)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def install(app: FastAPI, state: SandboxState) -> None:
    core = state.core
    exchange = core.exchange
    instruments = core.instruments
    auth = state.auth

    def instrument(market: str) -> Instrument:
        inst = instruments.get(market)
        if inst is None:
            raise ApiError(
                404, "UNKNOWN_MARKET", f"unknown market {market!r}", {"markets": list(instruments)}
            )
        return inst

    async def signed(request: Request) -> tuple[str, bytes]:
        """The caller's account (verified signature) and the raw body."""
        scope = request.scope
        body = await request.body()
        path = request_path(scope)
        headers = request.headers
        account = auth.verify(
            headers.get(API_KEY_HEADER),
            headers.get(TIMESTAMP_HEADER),
            headers.get(SIGNATURE_HEADER),
            scope["method"],
            path,
            body,
        )
        return account, body

    def admin(request: Request) -> None:
        token = state.settings.admin_token
        if token is None:
            raise ApiError(404, "NOT_FOUND", "the admin API is disabled (start with --admin-token)")
        given = request.headers.get(ADMIN_HEADER, "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(
                401, "INVALID_ADMIN_TOKEN", f"the {ADMIN_HEADER} header is missing or wrong"
            )

    def parse(model: type[BaseModel], body: bytes) -> Any:
        try:
            return model.model_validate_json(body or b"null")
        except ValidationError as exc:
            raise validation_error(exc) from None

    def convert(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except EngineError as exc:
            raise engine_error(exc) from None

    def order_of(account: str, order: Order | None, what: str) -> Order:
        if order is None or order.account != account:
            raise ApiError(404, "UNKNOWN_ORDER", f"no order {what} for this account")
        return order

    # -- private: orders (the hot path first) -----------------------------------------------
    @app.post(
        "/v1/orders",
        response_model=m.OrderResult,
        responses=PRIVATE_ERRORS,
        openapi_extra={**SIGNED, **_body_schema(m.OrderRequest)},
        tags=["orders"],
        summary="Place an order",
    )
    async def place_order(request: Request) -> Response:
        """Place an order. A duplicate ``client_order_id`` (open or recent order) is refused
        with 409 ``DUPLICATE_CLIENT_ORDER_ID`` and the existing order in ``details``, so a
        retry after a lost response never places twice."""
        account, body = await signed(request)
        return _json(place_order_impl(state, account, body))

    @app.get(
        "/v1/orders",
        response_model=list[m.Order],
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["orders"],
        summary="Open orders",
    )
    async def open_orders(request: Request, market: MarketQuery = None) -> Response:
        account, _ = await signed(request)
        if market is not None:
            instrument(market)
        if account not in exchange.accounts:
            return _json([])
        return _json(
            [
                wire.order_json(instruments[o.market], o)
                for o in exchange.open_orders(account, market)
            ]
        )

    @app.delete(
        "/v1/orders",
        response_model=m.CancelAllResult,
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["orders"],
        summary="Cancel all open orders (of one market, or all)",
    )
    async def cancel_all(request: Request, market: MarketQuery = None) -> Response:
        account, _ = await signed(request)
        if market is not None:
            instrument(market)
        if account not in exchange.accounts:
            return _json({"canceled": []})
        events = state.apply(CancelAll(account, market))
        return _json({"canceled": [e.order_id for e in events if hasattr(e, "order_id")]})

    @app.get(
        "/v1/orders/history",
        response_model=list[m.Order],
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["orders"],
        summary="Recent orders, open and finished (newest first)",
    )
    async def order_history(
        request: Request, market: MarketQuery = None, limit: Limit = 100
    ) -> Response:
        """Open orders and the finished orders the exchange remembers (the last 1,000 per
        account, for 24 hours), newest first."""
        account, _ = await signed(request)
        if market is not None:
            instrument(market)
        acct = exchange.accounts.get(account)
        if acct is None:
            return _json([])
        orders = sorted(
            [*acct.open_orders.values(), *acct.recent.values()], key=lambda o: o.id, reverse=True
        )
        out = [
            wire.order_json(instruments[o.market], o) for o in orders if market in (None, o.market)
        ]
        return _json(out[:limit])

    @app.get(
        "/v1/orders/by-client-id/{client_order_id:path}",
        response_model=m.Order,
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["orders"],
        summary="An order by client order id",
    )
    async def get_order_by_client_id(request: Request, client_order_id: ClientIdPath) -> Response:
        account, _ = await signed(request)
        order = _lookup(account, None, client_order_id)
        return _json(wire.order_json(instruments[order.market], order))

    @app.get(
        "/v1/orders/{order_id:int}",
        response_model=m.Order,
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["orders"],
        summary="An order by id",
    )
    async def get_order(request: Request, order_id: OrderIdPath) -> Response:
        account, _ = await signed(request)
        order = _lookup(account, order_id, None)
        return _json(wire.order_json(instruments[order.market], order))

    def _lookup(account: str, order_id: int | None, client_id: str | None) -> Order:
        what = f"id {order_id}" if client_id is None else f"client id {client_id!r}"
        if account not in exchange.accounts:
            raise ApiError(404, "UNKNOWN_ORDER", f"no order {what} for this account")
        return order_of(
            account, exchange.get_order(account, order_id=order_id, client_id=client_id), what
        )

    async def _cancel(request: Request, order_id: int | None, client_id: str | None) -> Response:
        account, _ = await signed(request)
        order = _lookup(account, order_id, client_id)
        if not order.live:
            raise ApiError(
                400,
                "ORDER_NOT_OPEN",
                f"order {order.id} is {order.status}",
                {"order": wire.order_json(instruments[order.market], order)},
            )
        state.apply(CancelOrder(account, order.market, order.id))
        return _json(wire.order_json(instruments[order.market], order))

    async def _amend(request: Request, order_id: int | None, client_id: str | None) -> Response:
        account, body = await signed(request)
        req: m.AmendRequest = parse(m.AmendRequest, body)
        order = _lookup(account, order_id, client_id)
        inst = instruments[order.market]
        if req.price is None and req.qty is None:
            raise ApiError(422, "VALIDATION_ERROR", "give a new price, a new qty, or both")
        price = None if req.price is None else convert(inst.price_to_ticks, req.price)
        qty = None if req.qty is None else convert(inst.qty_to_lots, req.qty)
        if not order.live:
            raise ApiError(400, "ORDER_NOT_OPEN", f"order {order.id} is {order.status}")
        state.apply(AmendOrder(account, order.market, order.id, None, price, qty))
        fresh = exchange.get_order(account, order_id=order.id)
        assert fresh is not None
        return _json(wire.order_json(inst, fresh))

    cancel_doc: dict[str, Any] = dict(
        response_model=m.Order, responses=PRIVATE_ERRORS, openapi_extra=SIGNED, tags=["orders"]
    )
    amend_doc: dict[str, Any] = dict(
        response_model=m.Order,
        responses=PRIVATE_ERRORS,
        openapi_extra={**SIGNED, **_body_schema(m.AmendRequest)},
        tags=["orders"],
    )

    @app.delete(
        "/v1/orders/by-client-id/{client_order_id:path}",
        summary="Cancel by client order id",
        **cancel_doc,
    )
    async def cancel_by_client_id(request: Request, client_order_id: ClientIdPath) -> Response:
        return await _cancel(request, None, client_order_id)

    @app.delete("/v1/orders/{order_id:int}", summary="Cancel an order", **cancel_doc)
    async def cancel_order(request: Request, order_id: OrderIdPath) -> Response:
        return await _cancel(request, order_id, None)

    @app.patch(
        "/v1/orders/by-client-id/{client_order_id:path}",
        summary="Amend by client order id",
        **amend_doc,
    )
    async def amend_by_client_id(request: Request, client_order_id: ClientIdPath) -> Response:
        """Change price and/or total quantity; a price change or size increase loses priority."""
        return await _amend(request, None, client_order_id)

    @app.patch("/v1/orders/{order_id:int}", summary="Amend an order", **amend_doc)
    async def amend_order(request: Request, order_id: OrderIdPath) -> Response:
        """Change price and/or total quantity; a price change or size increase loses priority."""
        return await _amend(request, order_id, None)

    # -- private: account -----------------------------------------------------------------
    def account_data(account: str) -> dict[str, Any]:
        if account not in exchange.accounts:
            return {
                "account": account,
                "collateral": "0",
                "equity": "0",
                "unrealized_pnl": "0",
                "position_margin": "0",
                "order_margin": "0",
                "available": "0",
                "maintenance_margin": "0",
                "margin_ratio": None,
                "in_liquidation": False,
                "positions": [],
            }
        return wire.account_json(instruments, exchange.account_view(account))

    @app.get(
        "/v1/account",
        response_model=m.Account,
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["account"],
        summary="Collateral, equity, margin",
    )
    async def get_account(request: Request) -> Response:
        account, _ = await signed(request)
        return _json(account_data(account))

    @app.get(
        "/v1/positions",
        response_model=list[m.Position],
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["account"],
        summary="Positions with liquidation prices",
    )
    async def get_positions(request: Request, market: MarketQuery = None) -> Response:
        account, _ = await signed(request)
        if market is not None:
            instrument(market)
        positions = account_data(account)["positions"]
        return _json([p for p in positions if market in (None, p["market"])])

    @app.get(
        "/v1/fills",
        response_model=list[m.Fill],
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["account"],
        summary="Your fills, newest first",
    )
    async def get_fills(
        request: Request, market: MarketQuery = None, limit: Limit = 100
    ) -> Response:
        account, _ = await signed(request)
        if market is not None:
            instrument(market)
        return _json(core.records.fills(account, market, limit))

    @app.get(
        "/v1/funding-payments",
        response_model=list[m.FundingPayment],
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["account"],
        summary="Funding you paid (+) or received (-)",
    )
    async def get_funding_payments(
        request: Request, market: MarketQuery = None, limit: Limit = 100
    ) -> Response:
        account, _ = await signed(request)
        if market is not None:
            instrument(market)
        return _json(core.records.funding_payments(account, market, limit))

    @app.get(
        "/v1/liquidations",
        response_model=list[m.LiquidationRecord],
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["account"],
        summary="Margin calls and liquidation steps of your account",
    )
    async def get_liquidations(request: Request, limit: Limit = 100) -> Response:
        account, _ = await signed(request)
        return _json(core.records.liquidations(account, limit))

    def leverage_data(account: str, sym: str) -> dict[str, Any]:
        inst = instruments[sym]
        acct = exchange.accounts.get(account)
        pos = acct.positions.get(sym) if acct is not None else None
        lev = pos.leverage if pos is not None else inst.default_leverage
        return {"market": sym, "leverage": lev, "max_leverage": inst.brackets[0].max_leverage}

    @app.get(
        "/v1/leverage",
        response_model=list[m.LeverageInfo],
        responses=PRIVATE_ERRORS,
        openapi_extra=SIGNED,
        tags=["account"],
        summary="Leverage per market",
    )
    async def get_leverage(request: Request, market: MarketQuery = None) -> Response:
        account, _ = await signed(request)
        if market is not None:
            instrument(market)
        return _json([leverage_data(account, s) for s in instruments if market in (None, s)])

    @app.post(
        "/v1/leverage/{market}",
        response_model=m.LeverageInfo,
        responses=PRIVATE_ERRORS,
        openapi_extra={**SIGNED, **_body_schema(m.LeverageRequest)},
        tags=["account"],
        summary="Set leverage in a market",
    )
    async def set_leverage(request: Request, market: MarketPath) -> Response:
        account, body = await signed(request)
        req: m.LeverageRequest = parse(m.LeverageRequest, body)
        instrument(market)
        state.apply(SetLeverage(account, market, req.leverage))
        return _json(leverage_data(account, market))

    # -- public market data ------------------------------------------------------------------
    @app.get(
        "/v1/time",
        response_model=m.ServerTime,
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Exchange (simulated) and wall time",
    )
    async def server_time() -> Response:
        speed = state.clock.speed
        return _json(
            {
                "server_ts": core.now_ms(),
                "wall_ts": state.wall_ms(),
                "speed": str(speed if speed.denominator != 1 else speed.numerator),
                "paused": speed == 0,
            }
        )

    @app.get(
        "/v1/markets",
        response_model=list[m.MarketInfo],
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Instruments and their filters",
    )
    async def markets() -> Response:
        return _json([market_info(inst) for inst in instruments.values()])

    def ticker(sym: str) -> dict[str, Any]:
        inst = instruments[sym]
        p = exchange.prices(sym)
        book = exchange.markets[sym].book
        bid, ask = book.best_bid(), book.best_ask()
        now = core.now_ms()
        stats = core.records.markets[sym].stats_24h(now)
        open_ticks = stats.pop("open_ticks")
        change = None
        if open_ticks is not None and p.last is not None:
            change = wire.price(inst, p.last - open_ticks)
        return {
            "market": sym,
            "last": None if p.last is None else wire.price(inst, p.last),
            "mark": wire.price(inst, p.mark),
            "index": wire.price(inst, p.index),
            "index_degraded": p.index_degraded,
            "best_bid": None if bid is None else wire.price(inst, bid),
            "best_ask": None if ask is None else wire.price(inst, ask),
            **stats,
            "price_change_24h": change,
            "ts": now,
        }

    @app.get(
        "/v1/tickers",
        response_model=list[m.Ticker],
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Tickers of every market",
    )
    async def tickers() -> Response:
        return _json([ticker(s) for s in instruments])

    @app.get(
        "/v1/markets/{market}/ticker",
        response_model=m.Ticker,
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Last, mark, index and 24 h statistics",
    )
    async def get_ticker(market: MarketPath) -> Response:
        instrument(market)
        return _json(ticker(market))

    @app.get(
        "/v1/markets/{market}/book",
        response_model=m.OrderBook,
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Order book snapshot with its channel sequence number",
    )
    async def get_book(
        market: MarketPath, depth: Annotated[int, Query(ge=1, le=1000)] = 20
    ) -> Response:
        """``seq`` is the position of this snapshot in the ``book:<market>`` WebSocket
        channel: apply only the diffs whose seq is greater."""
        instrument(market)
        data = state.publisher.book_json(market, depth)
        data["seq"] = state.hub.seq(f"book:{market}")
        data["ts"] = core.now_ms()
        return _json(data)

    @app.get(
        "/v1/markets/{market}/trades",
        response_model=list[m.PublicTrade],
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Recent trades, newest first",
    )
    async def get_trades(market: MarketPath, limit: Limit = 100) -> Response:
        instrument(market)
        return _json(core.records.markets[market].recent_trades(limit))

    @app.get(
        "/v1/markets/{market}/funding",
        response_model=m.FundingInfo,
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Premium, predicted rate, next funding time",
    )
    async def get_funding(market: MarketPath) -> Response:
        inst = instrument(market)
        p = exchange.prices(market)
        premium = exchange.premium(market)
        return _json(
            {
                "market": market,
                "mark": wire.price(inst, p.mark),
                "index": wire.price(inst, p.index),
                "premium": None if premium is None else wire.rate(premium),
                "predicted_rate": wire.rate(p.predicted_funding_rate),
                "last_rate": wire.rate(p.last_funding_rate),
                "next_funding_ts": p.next_funding_ts,
                "interval_ms": inst.mechanics.funding.interval_ms,
            }
        )

    @app.get(
        "/v1/markets/{market}/funding/history",
        response_model=list[m.FundingRecord],
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Settled funding rates, newest first",
    )
    async def get_funding_history(market: MarketPath, limit: Limit = 100) -> Response:
        inst = instrument(market)
        rows = list(core.records.markets[market].funding)[-limit:]
        return _json(
            [
                {
                    "market": market,
                    "funding_ts": ts,
                    "rate": wire.rate(r),
                    "mark": wire.price(inst, mk),
                }
                for ts, r, mk in reversed(rows)
            ]
        )

    @app.get(
        "/v1/markets/{market}/candles",
        response_model=list[m.Candle],
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="OHLCV candles from trades, oldest first",
    )
    async def get_candles(
        market: MarketPath,
        interval: Annotated[str, Query(pattern="^(1m|5m|15m|1h|4h|1d)$")] = "1m",
        start: Annotated[int | None, Query(ge=0, le=2**53)] = None,
        end: Annotated[int | None, Query(ge=0, le=2**53)] = None,
        limit: Limit = 500,
    ) -> Response:
        instrument(market)
        return _json(
            core.records.markets[market].candle_rows(CANDLE_INTERVALS[interval], start, end, limit)
        )

    @app.get(
        "/v1/rate-limits",
        response_model=m.RateLimitRules,
        responses=PUBLIC_ERRORS,
        tags=["market"],
        summary="Rate limits in force and endpoint weights",
    )
    async def rate_limits() -> Response:
        snap = state.throttle.snapshot()
        return _json({"rate_limits": snap["rate_limits"], "bans": snap["bans"], "weights": WEIGHTS})

    # -- admin --------------------------------------------------------------------------------
    admin_errors: dict[int | str, dict[str, Any]] = {
        400: _ERR,
        401: _ERR,
        403: _ERR,
        404: _ERR,
        409: _ERR,
        422: _ERR,
    }

    @app.post(
        "/v1/admin/accounts",
        response_model=m.CreatedAccount,
        responses=admin_errors,
        openapi_extra={**ADMIN, **_body_schema(m.CreateAccountRequest)},
        tags=["admin"],
        summary="Create an account with an API key",
    )
    async def create_account(request: Request) -> Response:
        admin(request)
        req: m.CreateAccountRequest = parse(m.CreateAccountRequest, await request.body())
        collateral = state.create_account(req.account, req.api_key, req.api_secret, req.deposit)
        return _json(
            {"account": req.account, "api_key": req.api_key, "collateral": wire.money(collateral)}
        )

    @app.post(
        "/v1/admin/accounts/{account}/deposit",
        response_model=m.OkResponse,
        responses=admin_errors,
        openapi_extra={**ADMIN, **_body_schema(m.DepositRequest)},
        tags=["admin"],
        summary="Deposit collateral",
    )
    async def deposit(
        request: Request, account: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,32}$")]
    ) -> Response:
        admin(request)
        req: m.DepositRequest = parse(m.DepositRequest, await request.body())
        amount = convert(money_units, req.amount)
        state.apply(Deposit(account, amount))
        return _json(
            {
                "ok": True,
                "details": {"collateral": wire.money(exchange.accounts[account].collateral)},
            }
        )

    @app.post(
        "/v1/admin/clock",
        response_model=m.ServerTime,
        responses=admin_errors,
        openapi_extra={**ADMIN, **_body_schema(m.ClockRequest)},
        tags=["admin"],
        summary="Pause, resume, set speed, or advance the clock",
    )
    async def clock(request: Request) -> Response:
        admin(request)
        req: m.ClockRequest = parse(m.ClockRequest, await request.body())
        if req.action == "pause":
            state.pause()
        elif req.action == "resume":
            state.resume()
        elif req.action == "set_speed":
            if req.speed is None or Fraction(req.speed) < 0 or Fraction(req.speed) > 100_000:
                raise ApiError(422, "VALIDATION_ERROR", "set_speed needs speed in [0, 100000]")
            state.set_speed(Fraction(req.speed))
        else:
            if req.ms is None:
                raise ApiError(422, "VALIDATION_ERROR", "advance needs ms")
            state.advance(req.ms)
        return await server_time()

    @app.post(
        "/v1/admin/index-price",
        response_model=m.OkResponse,
        responses=admin_errors,
        openapi_extra={**ADMIN, **_body_schema(m.IndexPriceRequest)},
        tags=["admin"],
        summary="Set one source's index price",
    )
    async def index_price(request: Request) -> Response:
        admin(request)
        req: m.IndexPriceRequest = parse(m.IndexPriceRequest, await request.body())
        if req.price is None:
            instrument(req.market)
            state.release_index_price(req.market, req.source)
        else:
            state.set_index_price(req.market, req.source, req.price)
        p = exchange.prices(req.market)
        inst = instruments[req.market]
        return _json(
            {
                "ok": True,
                "details": {"index": wire.price(inst, p.index), "mark": wire.price(inst, p.mark)},
            }
        )

    @app.post(
        "/v1/admin/faults",
        response_model=m.OkResponse,
        responses=admin_errors,
        openapi_extra={**ADMIN, **_body_schema(m.FaultRequest)},
        tags=["admin"],
        summary="Inject latency, errors, dropped responses",
    )
    async def faults(request: Request) -> Response:
        admin(request)
        req: m.FaultRequest = parse(m.FaultRequest, await request.body())
        error_rate, drop_rate = Fraction(req.error_rate), Fraction(req.drop_rate)
        if not (0 <= error_rate <= 1 and 0 <= drop_rate <= 1 and error_rate + drop_rate <= 1):
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                "error_rate and drop_rate are shares in [0, 1] summing to <= 1",
            )
        state.set_faults(req.latency_ms, error_rate, drop_rate, req.duration_ms)
        return _json({"ok": True, "details": req.model_dump()})

    @app.post(
        "/v1/admin/fault-plan",
        response_model=m.OkResponse,
        responses=admin_errors,
        openapi_extra={**ADMIN, **_body_schema(FaultPlanRequest)},
        tags=["admin"],
        summary="Load a fault plan scheduled in simulated time ([] clears it)",
    )
    async def fault_plan(request: Request) -> Response:
        admin(request)
        req: FaultPlanRequest = parse(FaultPlanRequest, await request.body())
        try:
            specs = [spec_from_model(f) for f in req.faults]
        except ValueError as exc:
            raise ApiError(422, "VALIDATION_ERROR", str(exc)) from None
        for spec in specs:
            if spec.market:
                instrument(spec.market)
        state.fault_plan.load(state, specs, req.seed)
        return _json({"ok": True, "details": state.fault_plan.status()})

    @app.get(
        "/v1/admin/fault-plan",
        response_model=m.OkResponse,
        responses=admin_errors,
        openapi_extra=ADMIN,
        tags=["admin"],
        summary="The loaded fault plan: windows, active, how often each fired",
    )
    async def fault_plan_status(request: Request) -> Response:
        admin(request)
        return _json({"ok": True, "details": state.fault_plan.status()})

    @app.post(
        "/v1/admin/limits",
        response_model=m.RateLimitRules,
        responses=admin_errors,
        openapi_extra={**ADMIN, **_body_schema(m.LimitsRequest)},
        tags=["admin"],
        summary="Tighten or relax the rate limits now",
    )
    async def limits(request: Request) -> Response:
        admin(request)
        req: m.LimitsRequest = parse(m.LimitsRequest, await request.body())
        changes = {k: v for k, v in req.model_dump().items() if v is not None}
        snap = state.set_limits(changes)
        return _json({"rate_limits": snap["rate_limits"], "bans": snap["bans"], "weights": WEIGHTS})

    _install_openapi(app)


def market_info(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": inst.symbol,
        "tick_size": wire._fmt(inst.tick_size),
        "lot_size": wire._fmt(inst.lot_size),
        "min_qty": wire.qty(inst, inst.min_qty),
        "max_qty": wire.qty(inst, inst.max_qty),
        "market_max_qty": wire.qty(inst, inst.market_max_qty),
        "min_notional": wire.money(inst.min_notional),
        "price_band": wire.rate(inst.price_band),
        "market_band": wire.rate(inst.market_band),
        "maker_fee": wire.rate(inst.maker_fee),
        "taker_fee": wire.rate(inst.taker_fee),
        "default_leverage": inst.default_leverage,
        "funding_interval_ms": inst.mechanics.funding.interval_ms,
        "liquidation_mode": str(inst.mechanics.liquidation.mode),
        "brackets": [
            {
                "notional_cap": wire.money(b.notional_cap),
                "max_leverage": b.max_leverage,
                "maintenance_rate": wire.rate(b.mmr),
                "maintenance_amount": wire.money(b.maint_amount),
            }
            for b in inst.brackets
        ],
    }


def _install_openapi(app: FastAPI) -> None:
    """Add the request-body schemas that handlers parse themselves, and the auth schemes."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in (
            m.OrderRequest,
            m.AmendRequest,
            m.LeverageRequest,
            m.CreateAccountRequest,
            m.DepositRequest,
            m.ClockRequest,
            m.IndexPriceRequest,
            m.FaultRequest,
            m.LimitsRequest,
            FaultPlanRequest,
        ):
            defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in defs.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas[model.__name__] = defs
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
            "Timestamp": {
                "type": "apiKey",
                "in": "header",
                "name": TIMESTAMP_HEADER,
                "description": "Wall-clock milliseconds; accepted within ±5 s of the server.",
            },
            "Signature": {
                "type": "apiKey",
                "in": "header",
                "name": SIGNATURE_HEADER,
                "description": "hex HMAC-SHA256(secret, timestamp + METHOD + path?query + body)",
            },
            "AdminToken": {"type": "apiKey", "in": "header", "name": ADMIN_HEADER},
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

"""Binance USDⓈ-M Futures REST routes (``/fapi/...``) over the sandbox's engine.

Every route goes through :meth:`BinanceRest.dispatch`: parameters from the query string and the
form body, Binance's request weights against the compat layer's own throttle
(``X-MBX-USED-WEIGHT-1M``, 429 then 418 with ``Retry-After``), authentication (``X-MBX-APIKEY``;
signed routes: ``timestamp``, ``recvWindow`` and a hex HMAC-SHA256 ``signature`` over the raw
query string and body as received), then the handler. Every failure is ``{"code", "msg"}``.
The handlers are in :mod:`.market_data` and :mod:`.trading`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from sandbox.engine import EngineError

from ..throttle import ThrottleReason
from ..wire import ApiError
from . import errors as E
from .context import INT_PATTERN, Params, Spec, depth_weight, kline_weight, per_symbol
from .errors import BinanceError
from .market_data import MarketData
from .trading import Trading

log = logging.getLogger(__name__)

JSON = "application/json"
MAX_RECV_WINDOW = 60_000
FUTURE_TOLERANCE_MS = 1_000  # a timestamp may be this far ahead of the server


def _strip_signature(raw: bytes) -> bytes:
    if b"signature=" not in raw:
        return raw
    return b"&".join(p for p in raw.split(b"&") if not p.startswith(b"signature="))


class BinanceRest(MarketData, Trading):
    """The ``/fapi`` routes of one sandbox."""

    # -- plumbing ------------------------------------------------------------------------------
    def specs(self) -> list[Spec]:
        s = Spec
        return [
            s("GET", "/fapi/v1/ping", lambda p: {}, 1),
            s("GET", "/fapi/v1/time", self.time, 1),
            s("GET", "/fapi/v1/exchangeInfo", self.exchange_info, 1),
            s("GET", "/fapi/v1/depth", self.depth, depth_weight),
            s("GET", "/fapi/v1/trades", self.trades, 5),
            s("GET", "/fapi/v1/aggTrades", self.agg_trades, 20),
            s("GET", "/fapi/v1/klines", self.klines, kline_weight),
            s("GET", "/fapi/v1/premiumIndex", self.premium_index, per_symbol(1, 10)),
            s("GET", "/fapi/v1/fundingRate", self.funding_rate, 1),
            s("GET", "/fapi/v1/fundingInfo", self.funding_info, 1),
            s("GET", "/fapi/v1/ticker/24hr", self.ticker_24hr, per_symbol(1, 40)),
            s("GET", "/fapi/v1/ticker/price", self.ticker_price, per_symbol(1, 2)),
            s("GET", "/fapi/v2/ticker/price", self.ticker_price, per_symbol(1, 2)),
            s("GET", "/fapi/v1/ticker/bookTicker", self.book_ticker, per_symbol(2, 5)),
            s("GET", "/fapi/v1/openInterest", self.open_interest, 1),
            s("GET", "/fapi/v2/account", lambda p: self.account(p, v2=True), 5, "signed"),
            s("GET", "/fapi/v3/account", lambda p: self.account(p, v2=False), 5, "signed"),
            s("GET", "/fapi/v2/balance", self.balance, 5, "signed"),
            s("GET", "/fapi/v3/balance", self.balance, 5, "signed"),
            s("GET", "/fapi/v1/leverageBracket", self.brackets, 1, "signed"),
            s("GET", "/fapi/v2/positionRisk", lambda p: self.positions(p, v2=True), 5, "signed"),
            s("GET", "/fapi/v3/positionRisk", lambda p: self.positions(p, v2=False), 5, "signed"),
            s("POST", "/fapi/v1/order", self.place_order, 0, "signed", orders=1),
            s("GET", "/fapi/v1/order", self.query_order, 1, "signed"),
            s("DELETE", "/fapi/v1/order", self.cancel_order, 1, "signed"),
            s("PUT", "/fapi/v1/order", self.modify_order, 0, "signed", orders=1),
            s("GET", "/fapi/v1/openOrder", self.query_open_order, 1, "signed"),
            s("GET", "/fapi/v1/openOrders", self.open_orders, per_symbol(1, 40), "signed"),
            s("GET", "/fapi/v1/allOrders", self.all_orders, 5, "signed"),
            s("DELETE", "/fapi/v1/allOpenOrders", self.cancel_all, 1, "signed"),
            s("POST", "/fapi/v1/leverage", self.set_leverage, 1, "signed"),
            s("POST", "/fapi/v1/marginType", self.margin_type, 1, "signed"),
            s("GET", "/fapi/v1/positionSide/dual", self.get_dual, 30, "signed"),
            s("POST", "/fapi/v1/positionSide/dual", self.set_dual, 1, "signed"),
            s("GET", "/fapi/v1/multiAssetsMargin", self.multi_assets, 30, "signed"),
            s("GET", "/fapi/v1/symbolConfig", self.symbol_config, 5, "signed"),
            s("GET", "/fapi/v1/accountConfig", self.account_config, 5, "signed"),
            s("GET", "/fapi/v1/commissionRate", self.commission_rate, 20, "signed"),
            s("GET", "/fapi/v1/userTrades", self.user_trades, 5, "signed"),
            s("GET", "/fapi/v1/income", self.income, 30, "signed"),
            s("POST", "/fapi/v1/listenKey", self.listen_key_create, 1, "key"),
            s("PUT", "/fapi/v1/listenKey", self.listen_key_keepalive, 1, "key"),
            s("DELETE", "/fapi/v1/listenKey", self.listen_key_delete, 1, "key"),
        ]

    def install(self, app: FastAPI) -> None:
        for spec in self.specs():
            app.add_api_route(
                spec.path,
                self._endpoint(spec),
                methods=[spec.method],
                include_in_schema=False,
            )

        async def unknown(request: Request) -> Response:
            path, method = request.url.path, request.method
            err = BinanceError(E.NOT_FOUND, f"Path {path}, Method {method} is invalid", 404)
            return Response(err.body(), status_code=404, media_type=JSON)

        app.add_api_route(
            "/fapi/{rest:path}",
            unknown,
            methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
            include_in_schema=False,
        )

    def _endpoint(self, spec: Spec) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await self.dispatch(request, spec)

        endpoint.__name__ = f"binance_{spec.method.lower()}_{spec.path.replace('/', '_')}"
        return endpoint

    async def dispatch(self, request: Request, spec: Spec) -> Response:
        headers: dict[str, str] = {}
        try:
            query: bytes = request.scope["query_string"]
            body = await request.body()
            try:
                pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
                if body:
                    pairs += parse_qsl(body.decode("latin-1"), keep_blank_values=True)
            except ValueError:
                raise BinanceError(E.ILLEGAL_PARAM, "Malformed request parameters.") from None
            params = Params(pairs, self.symbols)
            weight = spec.weight(params) if callable(spec.weight) else spec.weight
            api_key = request.headers.get("x-mbx-apikey") or None
            client = request.client
            ip = client.host if client is not None else "unknown"
            decision = self.throttle.check(
                ip, api_key if spec.auth != "none" else None, weight, spec.orders
            )
            headers["X-MBX-USED-WEIGHT-1M"] = str(decision.used_weight)
            if decision.order_count_10s is not None:
                headers["X-MBX-ORDER-COUNT-10S"] = str(decision.order_count_10s)
            if decision.status != 200:
                headers["Retry-After"] = str(decision.retry_after_s)
                raise self._throttled(decision.status, decision.reason, ip, decision.retry_after_s)
            plan = self.state.fault_plan
            planned = plan.http(spec.method, request.url.path) if plan.specs else None
            if planned is not None:  # a fault plan aimed at /fapi (route "/fapi/*")
                if planned.delay_ms:
                    await asyncio.sleep(planned.delay_ms / 1000)
                if planned.status:
                    raise _injected(planned.status)
            if spec.auth == "signed":
                params.account = self._verify(api_key, query, body, params)
            elif spec.auth == "key":
                params.account = self._account_of_key(api_key)
            data = spec.handler(params)
            if planned is not None and planned.drop:
                # Applied, but the answer never comes: Binance's "execution status unknown".
                await asyncio.sleep(planned.hold_ms / 1000)
                raise BinanceError(
                    E.TIMEOUT,
                    "Timeout waiting for response from backend server. Send status unknown; "
                    "execution status unknown.",
                    504,
                )
            return Response(orjson.dumps(data), media_type=JSON, headers=headers)
        except BinanceError as exc:
            return self._error(exc, headers)
        except ApiError as exc:
            return self._error(E.from_api_error(exc), headers)
        except EngineError as exc:
            return self._error(E.from_engine_error(exc), headers)
        except Exception:
            log.exception("binance compat: %s %s failed", spec.method, spec.path)
            err = BinanceError(
                -1001, "Internal error; unable to process your request. Please try again.", 500
            )
            return self._error(err, headers)

    @staticmethod
    def _error(exc: BinanceError, headers: dict[str, str]) -> Response:
        return Response(
            exc.body(), status_code=exc.status, media_type=JSON, headers={**headers, **exc.headers}
        )

    def _throttled(
        self, status: int, reason: ThrottleReason | None, ip: str, retry_s: int | None
    ) -> BinanceError:
        cfg = self.throttle.config
        if status == 418:
            until = self.state.wall_ms() + 1000 * (retry_s or 0)
            return BinanceError(
                E.TOO_MANY_REQUESTS,
                f"Way too many requests; IP({ip}) banned until {until}. Please use the "
                "websocket for live updates to avoid bans.",
                418,
            )
        if reason is ThrottleReason.ORDER_COUNT_10S:
            msg = f"Too many new orders; current limit is {cfg.order_limit} orders per TEN_SECONDS."
            return BinanceError(E.TOO_MANY_ORDERS, msg, 429)
        if reason is ThrottleReason.ORDER_COUNT_1M:
            msg = f"Too many new orders; current limit is {cfg.order_limit_long} orders per MINUTE."
            return BinanceError(E.TOO_MANY_ORDERS, msg, 429)
        return BinanceError(
            E.TOO_MANY_REQUESTS,
            f"Too many requests; current limit of IP({ip}) request weight per minute is "
            f"{cfg.weight_limit}. Please use WebSocket Streams for live updates to avoid "
            "polling the API.",
            429,
        )

    def _account_of_key(self, api_key: str | None) -> str:
        if api_key is None:
            raise BinanceError(E.BAD_API_KEY_FMT, "API-key format invalid.", 401)
        entry = self.state.keys.get(api_key)
        if entry is None:
            raise BinanceError(
                E.REJECTED_MBX_KEY, "Invalid API-key, IP, or permissions for action.", 401
            )
        return entry[1]

    def _verify(self, api_key: str | None, query: bytes, body: bytes, params: Params) -> str:
        account = self._account_of_key(api_key)
        assert api_key is not None
        secret = self.state.keys.get(api_key)
        assert secret is not None
        raw_ts = params.req("timestamp")
        if not INT_PATTERN.match(raw_ts):
            raise E.mandatory("timestamp")
        ts = int(raw_ts)
        window = params.integer("recvWindow", 5000, -(10**12), 10**12)
        assert window is not None
        if not 0 < window <= MAX_RECV_WINDOW:
            raise BinanceError(E.BAD_RECV_WINDOW, "recvWindow must be less than 60000")
        now = self.state.wall_ms()
        if ts >= now + FUTURE_TOLERANCE_MS:
            raise BinanceError(
                E.INVALID_TIMESTAMP,
                "Timestamp for this request was 1000ms ahead of the server's time.",
            )
        if now - ts > window:
            raise BinanceError(
                E.INVALID_TIMESTAMP, "Timestamp for this request is outside of the recvWindow."
            )
        signature = params.req("signature")
        payload = _strip_signature(query) + _strip_signature(body)
        expected = hmac.new(secret[0].encode(), payload, hashlib.sha256).hexdigest()
        if not (signature.isascii() and hmac.compare_digest(expected, signature.lower())):
            raise BinanceError(E.INVALID_SIGNATURE, "Signature for this request is not valid.")
        return account


def _injected(status: int) -> BinanceError:
    """An error a fault plan asked for, in Binance's words for that status."""
    if status == 503:
        return BinanceError(
            E.UNKNOWN, "Service Unavailable. (injected fault; the request was not applied)", 503
        )
    return BinanceError(
        E.INTERNAL_ERROR,
        "Internal error; unable to process your request. Please try again. (injected fault)",
        status,
    )

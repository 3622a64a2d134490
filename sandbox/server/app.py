"""The sandbox's HTTP and WebSocket API (FastAPI). A thin shell over :class:`SandboxState`.

Layers, outermost first: the monitor's request metrics, :class:`GuardMiddleware` (body size,
throttling with weights, fault injection, the error envelope for anything that escapes), then
FastAPI's router. ``POST /v1/orders`` enters at the metrics layer (:class:`SandboxApp`) and is
served by Guard as plain ASGI. Handlers
authenticate, convert wire decimals to engine units, call the state, and serialise with orjson.
Response models are declared for the OpenAPI description; handlers return ready bytes (the
schemathesis test checks that what they return matches what is declared).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import fastapi_offline
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from .auth import AuthError
from .orders import serve_place_order
from .state import SandboxState
from .wire import ApiError, error_body

MAX_BODY_BYTES = 64 * 1024
RAW_SEND_KEY = "sandbox.raw_send"
"""Scope key of a WebSocket connection's unwrapped ASGI ``send`` (set by GuardMiddleware)."""
JSON_TYPE = "application/json"

# Endpoint weights (throttling). Keys are "METHOD /template"; GET /v1/markets/{m}/book is
# weighted by its depth parameter in ``request_weight``.
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
_STATIC = {k: k for k in WEIGHTS if "{" not in k}
# A client order id may contain "/" (it arrives decoded), so it matches the rest of the path.
_TEMPLATES = [
    (
        k.split(" ", 1)[0],
        re.compile(
            "^"
            + re.sub(
                r"\{[a-z_]+\}",
                lambda p: ".+" if p.group(0) == "{client_order_id}" else "[^/]+",
                k.split(" ", 1)[1],
            )
            + "$"
        ),
        k,
    )
    for k in WEIGHTS
    if "{" in k
]


def route_key(method: str, path: str) -> str | None:
    """The ``WEIGHTS`` key of a request, or None for routes that are not throttled."""
    key = f"{method} {path}"
    if key in _STATIC:
        return key
    for m, pattern, template in _TEMPLATES:
        if m == method and pattern.match(path):
            return template
    return None


def book_weight(query: bytes) -> int:
    """Order book weight by depth: <=100: 2, <=500: 5, more: 10."""
    match = re.search(rb"(?:^|&)depth=(\d{1,6})", query)
    depth = int(match.group(1)) if match else 20
    return 2 if depth <= 100 else 5 if depth <= 500 else 10


class GuardMiddleware:
    """Pure ASGI middleware: body limit, throttling, fault injection, never a bare 500."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                # The server's own send, before Starlette wraps it: ws.FrameWriter writes
                # pre-built frames through its protocol.
                scope[RAW_SEND_KEY] = send
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        state = self.state
        length = _content_length(scope)
        if length is not None and length > MAX_BODY_BYTES:
            await _send_error(
                send, 413, "PAYLOAD_TOO_LARGE", f"bodies are limited to {MAX_BODY_BYTES} bytes"
            )
            return
        extra: list[tuple[bytes, bytes]] = []
        key = route_key(method, path) if path.startswith("/v1/") else None
        if key is not None:
            weight = book_weight(scope["query_string"]) if key.endswith("/book") else WEIGHTS[key]
            api_key = _header(scope, b"x-pb-apikey")
            client = scope.get("client")
            ip = client[0] if client else "unknown"
            decision = state.throttle.check(ip, api_key, weight, 1 if key in ORDER_ROUTES else 0)
            extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers()]
            if decision.status != 200:
                reason = str(decision.reason)
                if decision.status == 418:
                    msg = "banned for repeatedly exceeding the rate limits"
                    code = "BANNED"
                else:
                    msg = f"rate limit exceeded ({reason}); retry after {decision.retry_after_s} s"
                    code = "RATE_LIMITED"
                await _send_error(send, decision.status, code, msg, {"limit": reason}, extra)
                return
            faults = state.active_faults()
            if faults is not None:
                if faults.latency_ms:
                    await asyncio.sleep(faults.latency_ms / 1000)
                roll = state.rng.random()
                if roll < faults.error_rate:
                    await _send_error(
                        send,
                        503,
                        "FAULT_INJECTED",
                        "injected fault: service unavailable",
                        {},
                        extra,
                    )
                    return
                if roll < faults.error_rate + faults.drop_rate:
                    await self._dropped(scope, receive, faults.drop_hold_ms)
                    await _send_error(
                        send,
                        504,
                        "RESPONSE_DROPPED",
                        "injected fault: the request was applied but its response was held back",
                        {},
                        extra,
                    )
                    return
            planned = state.fault_plan.http(method, path) if state.fault_plan.specs else None
            if planned is not None:  # a fault plan (sandbox/server/faults.py), simulated time
                if planned.delay_ms:
                    await asyncio.sleep(planned.delay_ms / 1000)
                if planned.status:
                    details = {"fault": planned.kind, "status": planned.status}
                    msg = f"injected fault: HTTP {planned.status} on purpose (not a bug)"
                    await _send_error(send, planned.status, "FAULT_INJECTED", msg, details, extra)
                    return
                if planned.drop:
                    await self._dropped(scope, receive, planned.hold_ms)
                    msg = "injected fault: the request was applied but its response was dropped"
                    await _send_error(send, 504, "RESPONSE_DROPPED", msg, {}, extra)
                    return

            if key == "POST /v1/orders":
                # The hot path: plain ASGI, same implementation as the documented route.
                try:
                    await serve_place_order(state, scope, receive, send, extra, MAX_BODY_BYTES)
                except Exception:  # pragma: no cover - a bug; still answer in the envelope
                    await _send_error(send, 500, "INTERNAL_ERROR", "unexpected server error")
                    raise
                return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra:
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                nonlocal_total[0] += len(message.get("body", b""))
                if nonlocal_total[0] > MAX_BODY_BYTES:
                    raise _BodyTooLarge
            return message

        nonlocal_total = [0]
        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not started:
                await _send_error(
                    send, 413, "PAYLOAD_TOO_LARGE", f"bodies are limited to {MAX_BODY_BYTES} bytes"
                )
        except Exception:  # pragma: no cover - a bug; still answer in the envelope
            if not started:
                await _send_error(send, 500, "INTERNAL_ERROR", "unexpected server error")
            raise

    async def _dropped(self, scope: Scope, receive: Receive, hold_ms: int) -> None:
        """Apply the request, discard its response, then wait (the client should time out)."""

        async def discard(message: Message) -> None:
            return None

        await self.app(scope, receive, discard)
        await asyncio.sleep(hold_ms / 1000)


class _BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = error_body(code, message, details)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# No OpenTelemetry: the sandbox exports Prometheus metrics (sandbox.monitor), and FastAPI's
# native telemetry (0.16x+) would look up the global providers on every request (~7% of the
# order path's instructions). Older FastAPI versions have no such option.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


ORDER_ENTRY_PATH = "/v1/orders"


class SandboxApp(FastAPI):
    """FastAPI, except that ``POST /v1/orders`` goes straight to the sandbox's own middleware
    (metrics, then :class:`GuardMiddleware`, which serves it as plain ASGI).

    Order entry is the route every bot hammers. Starlette's and FastAPI's generic layers in
    front of ours (the server-error page, telemetry, the framework's body limit) do nothing on it
    that ours do not: :class:`GuardMiddleware` limits the body and answers any failure in the
    error envelope. Every other request takes the usual way."""

    _order_entry: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == ORDER_ENTRY_PATH
            and scope["method"] == "POST"
        ):
            entry = self._order_entry
            if entry is None:
                entry = self._order_entry = self._own_layers()
            scope["app"] = self
            await entry(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _own_layers(self) -> ASGIApp:
        """The outermost sandbox middleware in the built stack (built now if not yet)."""
        from sandbox.monitor.metrics import MetricsMiddleware

        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        layer: Any = self.middleware_stack
        while layer is not None:
            if isinstance(layer, MetricsMiddleware | GuardMiddleware):
                return cast(ASGIApp, layer)
            layer = getattr(layer, "app", None)
        return self.middleware_stack  # pragma: no cover - create_app always installs Guard


def create_app(state: SandboxState, *, background: bool = True) -> FastAPI:
    """The ASGI app for ``state``. ``background``: run the market loop and hub heartbeats."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            await state.start()
        try:
            yield
        finally:
            if background:
                await state.stop()

    app = SandboxApp(
        title="perpbot sandbox exchange",
        version="1",
        description=(
            "A local perpetual-futures exchange. Money, prices and quantities are decimal "
            "strings. Private routes need an API key and an HMAC-SHA256 signature over "
            "`timestamp + METHOD + path(with query) + body` (headers X-PB-APIKEY, "
            "X-PB-TIMESTAMP, X-PB-SIGNATURE). Errors: `{code, message, details}` "
            "(docs/api.md lists the codes)."
        ),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        **_NO_TELEMETRY,
    )
    app.state.sandbox = state
    _install_error_handlers(app)
    _install_docs(app)
    from . import routes

    routes.install(app, state)
    from .binance import install as install_binance

    install_binance(app, state)  # Binance USDⓈ-M compatible /fapi and /fstream (compat layer)

    @app.websocket("/v1/ws")
    async def websocket(ws: WebSocket) -> None:
        from .ws import serve_websocket

        await serve_websocket(ws, state.hub, state.auth.verify_ws_login)

    app.add_middleware(GuardMiddleware, state=state)
    from sandbox import monitor

    monitor.install(app, state)  # alerts, bands, cascade, /metrics (+ its outermost middleware)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return Response(orjson.dumps(exc.body()), status_code=exc.status, media_type=JSON_TYPE)

    async def auth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        return Response(
            error_body(str(exc.code), exc.message),
            status_code=401,
            media_type=JSON_TYPE,
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "message": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "message": "invalid request"}
        where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
        return Response(
            error_body("VALIDATION_ERROR", f"{where}: {first['message']}", {"errors": errors}),
            status_code=422,
            media_type=JSON_TYPE,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the first route matching the path; list every method.
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
        return Response(
            error_body(code, message, {"path": request.url.path}),
            status_code=exc.status_code,
            media_type=JSON_TYPE,
            headers=headers or None,
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(AuthError, auth_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _allowed_methods(request: Request) -> list[str]:
    path = request.url.path
    methods: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods - {"HEAD"}) if methods - {"HEAD"} else sorted(methods)


def _install_docs(app: FastAPI) -> None:
    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="perpbot sandbox - API",
            swagger_js_url="/static/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui.css",
            swagger_favicon_url="/static/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="perpbot sandbox - API",
            redoc_js_url="/static/redoc.standalone.js",
            redoc_favicon_url="/static/favicon.png",
            with_google_fonts=False,
        )


Handler = Callable[..., Awaitable[Response]]

"""Order placement: the one implementation behind ``POST /v1/orders``, and its lean ASGI path.

FastAPI's per-request machinery (dependency solving, request objects, middleware layers) costs
more than the engine's whole order path (measured: ~180 µs of ~350 µs). Order placement is the
hot path of every bot, so ``SandboxApp`` sends ``POST /v1/orders`` past the framework's layers
to the sandbox's own (metrics, then :class:`GuardMiddleware`), and Guard hands it straight to
:func:`serve_place_order` after throttling; the FastAPI route stays for the OpenAPI description
(and for fault injection's replays) and calls the same :func:`place_order`. The schemathesis
tests run against the lean path and check it answers exactly as the description says.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from perpbot import models as m
from sandbox.engine import EngineError, Instrument, PlaceOrder
from sandbox.engine.commands import OrderType, SelfTradePrevention, Side, TimeInForce
from sandbox.engine.events import Event, OrderAccepted, Trade

from . import wire
from .auth import AuthError
from .records import fill_json, fill_row
from .state import SandboxState
from .wire import ApiError, engine_error, error_body

_SIDES = {m.Side.BUY: Side.BUY, m.Side.SELL: Side.SELL}
_TYPES = {t: OrderType(t.value) for t in m.OrderType}
_TIFS = {t: TimeInForce(t.value) for t in m.TimeInForce}
_STPS = {s: SelfTradePrevention(s.value) for s in m.SelfTradePrevention}
_JSON_HEADERS = [(b"content-type", b"application/json")]


def validation_error(exc: ValidationError) -> ApiError:
    """422 with every problem listed (the shape FastAPI's own validation errors get too)."""
    errors = [
        {"loc": ["body", *map(str, e["loc"])], "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]
    first = errors[0]
    where = ".".join(first["loc"][1:]) or "body"
    return ApiError(422, "VALIDATION_ERROR", f"{where}: {first['message']}", {"errors": errors})


def place_order(state: SandboxState, account: str, body: bytes) -> dict[str, Any]:
    """Validate, convert, submit; the order after the command and its taker fills."""
    try:
        req = m.OrderRequest.model_validate_json(body or b"null")
    except ValidationError as exc:
        raise validation_error(exc) from None
    inst = state.core.instruments.get(req.market)
    if inst is None:
        raise ApiError(
            404,
            "UNKNOWN_MARKET",
            f"unknown market {req.market!r}",
            {"markets": list(state.core.instruments)},
        )
    if (req.type is m.OrderType.LIMIT) != (req.price is not None):
        raise ApiError(
            400, "INVALID_ORDER", "a LIMIT order needs a price; a MARKET order takes none"
        )
    try:
        qty = inst.qty_to_lots(req.qty)
        price = None if req.price is None else inst.price_to_ticks(req.price)
    except EngineError as exc:
        raise engine_error(exc) from None
    events = state.apply(
        PlaceOrder(
            account,
            req.market,
            _SIDES[req.side],
            qty,
            price,
            _TYPES[req.type],
            None if req.tif is None else _TIFS[req.tif],
            req.reduce_only,
            req.client_order_id,
            None if req.stp is None else _STPS[req.stp],
        )
    )
    return order_result(state, account, inst, events)


def order_result(
    state: SandboxState, account: str, inst: Instrument, events: list[Event]
) -> dict[str, Any]:
    accepted = next(e for e in events if type(e) is OrderAccepted)
    assert isinstance(accepted, OrderAccepted)
    order_id = accepted.order_id
    order = state.core.exchange.get_order(account, order_id=order_id)
    assert order is not None
    fills = [
        fill_json(inst, fill_row(ev, False, order.client_id))
        for ev in events
        if type(ev) is Trade and ev.taker_order_id == order_id
    ]
    return {"order": wire.order_json(inst, order), "fills": fills}


def request_path(scope: Scope) -> str:
    """The path exactly as the client sent (and signed) it, with the query string."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    qs = scope["query_string"]
    return f"{path}?{qs.decode('latin-1')}" if qs else path


async def serve_place_order(
    state: SandboxState,
    scope: Scope,
    receive: Receive,
    send: Send,
    extra_headers: list[tuple[bytes, bytes]],
    max_body: int,
) -> None:
    """``POST /v1/orders`` as plain ASGI: read, authenticate, place, answer."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            await _send(
                send,
                413,
                error_body("PAYLOAD_TOO_LARGE", f"bodies are limited to {max_body} bytes"),
                extra_headers,
            )
            return
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    key = ts = sig = None
    for name, value in scope["headers"]:
        if name[:5] == b"x-pb-":
            if name == b"x-pb-apikey":
                key = value.decode("latin-1")
            elif name == b"x-pb-timestamp":
                ts = value.decode("latin-1")
            elif name == b"x-pb-signature":
                sig = value.decode("latin-1")
    try:
        account = state.auth.verify(key, ts, sig, "POST", request_path(scope), body)
        payload = orjson.dumps(place_order(state, account, body))
        status = 200
    except AuthError as exc:
        status, payload = 401, error_body(str(exc.code), exc.message)
    except ApiError as exc:
        status, payload = exc.status, orjson.dumps(exc.body())
    await _send(send, status, payload, extra_headers)


async def _send(
    send: Send, status: int, payload: bytes, extra_headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *_JSON_HEADERS,
                (b"content-length", str(len(payload)).encode()),
                *extra_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})

"""The WebSocket endpoint: reads client ops and hands them to the :class:`~.hub.Hub`.

Client -> server (one JSON object per frame)::

    {"op": "subscribe", "channels": ["book:BTC-PERP", "orders"]}
    {"op": "unsubscribe", "channels": ["book:BTC-PERP"]}
    {"op": "login", "key": "...", "timestamp": "...", "signature": "..."}
    {"op": "ping"}

Server -> client replies: ``{"op": "subscribed", "channels": [...]}`` (snapshots follow),
``{"op": "unsubscribed", "channels": [...]}``, ``{"op": "login", "account": "..."}``,
``{"op": "pong", "ts": ...}`` and ``{"op": "error", "code": ..., "message": ...}``. A bad request
gets an error reply and the connection stays open. Replies go through the client's queue, so they
stay in order with the channel messages around them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

import orjson
from starlette.websockets import WebSocket

from .hub import CLOSE_GOING_AWAY, ChannelError, Client, ErrorCode, Hub

__all__ = ["MAX_FRAME_CHARS", "serve_websocket"]

log = logging.getLogger(__name__)

MAX_FRAME_CHARS = 64 * 1024
"""Larger client frames are refused with ``BAD_REQUEST`` (the connection stays open)."""

Login = Callable[[str, str, str], str]
"""``login(key, timestamp, signature) -> account id``; raises with ``.code`` and ``.message``."""


async def serve_websocket(
    websocket: WebSocket,
    hub: Hub,
    login: Login,
    *,
    max_frame_chars: int = MAX_FRAME_CHARS,
) -> None:
    """Serve one WebSocket connection until the peer leaves or the hub closes it."""
    await websocket.accept()
    if hub.stopped:
        await websocket.close(CLOSE_GOING_AWAY, "server shutting down")
        return
    client = hub.add_client(websocket)
    reader = asyncio.create_task(_read_ops(websocket, hub, client, login, max_frame_chars))
    closed = asyncio.create_task(client.wait_closed())
    try:
        # The hub may close the client (slow consumer, shutdown) while the peer stays silent.
        await asyncio.wait((reader, closed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        reader.cancel()
        closed.cancel()
        await hub.remove_client(client)
        await asyncio.wait((reader, closed))
    if not reader.cancelled() and (exc := reader.exception()) is not None:
        raise exc


async def _read_ops(
    websocket: WebSocket, hub: Hub, client: Client, login: Login, max_frame_chars: int
) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        frame: str | bytes | None = message.get("text")
        if frame is None:
            frame = message.get("bytes")
        if frame is not None:
            _handle(frame, hub, client, login, max_frame_chars)


def _handle(frame: str | bytes, hub: Hub, client: Client, login: Login, max_chars: int) -> None:
    try:
        reply = _dispatch(frame, hub, client, login, max_chars)
    except ChannelError as exc:
        reply = _error(exc.code, exc.message)
    except Exception:  # a server bug (e.g. a snapshot provider): report it, keep the connection
        log.exception("websocket request failed")
        reply = _error(ErrorCode.INTERNAL_ERROR, "internal error")
    if reply is not None:
        hub.send_control(client, reply)


def _dispatch(
    frame: str | bytes, hub: Hub, client: Client, login: Login, max_chars: int
) -> dict[str, Any] | None:
    if len(frame) > max_chars:
        return _error(ErrorCode.BAD_REQUEST, f"frame of {len(frame)} exceeds {max_chars}")
    try:
        request = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return _error(ErrorCode.BAD_REQUEST, "malformed JSON")
    if not isinstance(request, dict):
        return _error(ErrorCode.BAD_REQUEST, "a request is a JSON object with an 'op'")
    op = request.get("op")
    if not isinstance(op, str):
        return _error(ErrorCode.BAD_REQUEST, "missing 'op' (a string)")
    if op == "ping":
        return {"op": "pong", "ts": hub.clock()}
    if op == "subscribe":
        hub.subscribe(client, _channels(request))  # queues its own reply, then snapshots
        return None
    if op == "unsubscribe":
        return {"op": "unsubscribed", "channels": hub.unsubscribe(client, _channels(request))}
    if op == "login":
        return _login(request, hub, client, login)
    return _error(ErrorCode.UNKNOWN_OP, f"unknown op {op[:64]!r}")


def _channels(request: dict[str, Any]) -> list[str]:
    channels = request.get("channels")
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(name, str) for name in channels)
    ):
        raise ChannelError(ErrorCode.BAD_REQUEST, "'channels' must be a non-empty list of strings")
    return channels


def _login(request: dict[str, Any], hub: Hub, client: Client, login: Login) -> dict[str, Any]:
    key, timestamp, signature = (request.get(k) for k in ("key", "timestamp", "signature"))
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not (isinstance(key, str) and isinstance(timestamp, str) and isinstance(signature, str)):
        return _error(
            ErrorCode.BAD_REQUEST, "login needs 'key', 'timestamp' and 'signature' strings"
        )
    try:
        account = login(key, timestamp, signature)
    except Exception as exc:
        code = getattr(exc, "code", None)
        if code is None:
            raise  # not a refusal but a bug: INTERNAL_ERROR
        return _error(code, str(getattr(exc, "message", exc)))
    hub.login(client, account)
    return {"op": "login", "account": account}


def _error(code: object, message: str) -> dict[str, Any]:
    return {
        "op": "error",
        "code": code.value if isinstance(code, Enum) else str(code),
        "message": message,
    }

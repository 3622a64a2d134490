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

__all__ = ["MAX_FRAME_CHARS", "FrameWriter", "serve_websocket"]

log = logging.getLogger(__name__)

MAX_FRAME_CHARS = 64 * 1024
"""Larger client frames are refused with ``BAD_REQUEST`` (the connection stays open)."""

Login = Callable[[str, str, str], str]
"""``login(key, timestamp, signature) -> account id``; raises with ``.code`` and ``.message``."""


class _FrameCache:
    """Encoded server frames by payload identity: a message published to many clients is
    framed once. Entries hold their payload, so an id is never reused while cached."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 4096) -> None:
        self._entries: dict[int, tuple[str | bytes, bytes]] = {}
        self._limit = limit

    def frame(self, payload: str | bytes) -> bytes:
        entry = self._entries.get(id(payload))
        if entry is not None and entry[0] is payload:
            return entry[1]
        if isinstance(payload, str):
            data, first = payload.encode(), 0x81  # FIN + text
        else:
            data, first = payload, 0x82  # FIN + binary
        n = len(data)
        if n < 126:
            header = bytes((first, n))
        elif n < 65536:
            header = bytes((first, 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, 127)) + n.to_bytes(8, "big")
        frame = header + data  # server frames are not masked (RFC 6455 5.1)
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[id(payload)] = (payload, frame)
        return frame


_FRAMES = _FrameCache()


class FrameWriter:
    """The hub's view of a connection served by uvicorn's ``websockets-sansio`` protocol: data
    frames are built once per published message and written straight to the transport,
    honouring the protocol's flow control (``writable``) and close state. Everything else
    (accept, receive, close, pings) stays with uvicorn. :meth:`wrap` returns the plain
    Starlette socket when the server is not that protocol, so behaviour never depends on it.
    """

    __slots__ = ("_proto", "_ws")

    def __init__(self, websocket: WebSocket, proto: Any) -> None:
        self._ws = websocket
        self._proto = proto

    @staticmethod
    def wrap(websocket: WebSocket) -> Any:
        from .app import RAW_SEND_KEY

        proto = getattr(websocket.scope.get(RAW_SEND_KEY), "__self__", None)
        needed = ("transport", "writable", "disconnected", "close_sent", "conn")
        if proto is None or type(proto).__name__ != "WebSocketsSansIOProtocol":
            return websocket
        if not all(hasattr(proto, name) for name in needed):
            return websocket
        return FrameWriter(websocket, proto)

    def write_now(self, payload: str | bytes) -> bool:
        """Write at once if the transport is open and below its high-water mark."""
        proto = self._proto
        if (
            not proto.writable.is_set()
            or proto.disconnected
            or proto.close_sent
            or proto.transport.is_closing()
        ):
            return False
        proto.transport.write(_FRAMES.frame(payload))
        return True

    async def _write(self, payload: str | bytes) -> None:
        proto = self._proto
        while not self.write_now(payload):
            if proto.disconnected or proto.close_sent or proto.transport.is_closing():
                raise ConnectionError("the WebSocket is closed")
            await proto.writable.wait()  # the buffer is above its high-water mark

    async def send_text(self, data: str) -> None:
        await self._write(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._write(data)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


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
    client = hub.add_client(FrameWriter.wrap(websocket))
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

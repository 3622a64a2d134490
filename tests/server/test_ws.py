"""The WebSocket endpoint end to end: uvicorn + Starlette + the hub, driven by a real client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sandbox.server.app import RAW_SEND_KEY
from sandbox.server.hub import Hub
from sandbox.server.ws import MAX_FRAME_CHARS, serve_websocket

TIMEOUT = 5.0
TS = 1_700_000_000_000
KEYS = {"key-A": "acct-A", "key-B": "acct-B"}


class LoginError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fake_login(key: str, timestamp: str, signature: str) -> str:
    if key == "crash":
        raise RuntimeError("a bug in the login callback")
    if key not in KEYS:
        raise LoginError("UNKNOWN_KEY", f"no API key {key!r}")
    if signature != f"sig:{key}:{timestamp}":
        raise LoginError("INVALID_SIGNATURE", "signature does not match")
    return KEYS[key]


def login_request(key: str, signature: str | None = None) -> dict[str, Any]:
    return {
        "op": "login",
        "key": key,
        "timestamp": TS,
        "signature": signature or f"sig:{key}:{TS}",
    }


@dataclass
class Server:
    url: str
    hub: Hub
    server: uvicorn.Server
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def serving(
    hub: Hub, ws: str = "websockets-sansio", *, frames: bool = False
) -> AsyncIterator[Server]:
    """Uvicorn on a free 127.0.0.1 port; always stopped (hub first, then the server).
    ``frames``: pass the server's own send along as the sandbox app does, so the hub writes
    pre-built frames (ws.FrameWriter) instead of going through Starlette's send."""

    async def endpoint(websocket: WebSocket) -> None:
        await serve_websocket(websocket, hub, fake_login)

    starlette_app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if frames and scope["type"] == "websocket":
            scope[RAW_SEND_KEY] = send
        await starlette_app(scope, receive, send)

    config = uvicorn.Config(
        app,
        ws=ws,
        lifespan="off",
        log_config=None,
        log_level="warning",
        ws_ping_interval=None,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done())
        assert server.started, task
        yield Server(f"ws://127.0.0.1:{port}/ws", hub, server, task)
    finally:
        try:
            await hub.stop()
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, TIMEOUT)
            sock.close()


@pytest.fixture
async def srv() -> AsyncIterator[Server]:
    hub = Hub(heartbeat_s=None, clock=lambda: TS)
    hub.register_snapshot("book", lambda name: {"bids": [1 / 0 if name == "book:BROKEN" else 1]})
    async with serving(hub) as server:
        yield server


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait for a condition (checked every few ms) or fail after TIMEOUT."""
    async with asyncio.timeout(TIMEOUT):
        while not predicate():
            await asyncio.sleep(0.002)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return message


async def call(ws: ClientConnection, request: Any) -> dict[str, Any]:
    await ws.send(request if isinstance(request, str | bytes) else orjson.dumps(request).decode())
    return await recv(ws)


def updates(hub: Hub, channel: str, n: int, **kw: Any) -> list[int]:
    return [hub.publish(channel, {"n": i}, TS + i, **kw) for i in range(n)]


@pytest.mark.parametrize("ws_impl", ["websockets-sansio", "websockets"])
@pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # websockets.legacy, used by uvicorn
async def test_subscribe_snapshot_and_updates(ws_impl: str) -> None:
    hub = Hub(heartbeat_s=None, clock=lambda: TS)
    hub.register_snapshot("book", lambda name: {"book": name, "bids": [["100", "1"]]})
    updates(hub, "book:BTC-PERP", 2)
    async with serving(hub, ws_impl) as srv, connect(srv.url) as ws:
        assert await call(ws, {"op": "ping"}) == {"op": "pong", "ts": TS}
        channels = ["book:BTC-PERP", "trades:BTC-PERP"]
        assert await call(ws, {"op": "subscribe", "channels": channels}) == {
            "op": "subscribed",
            "channels": channels,
        }
        assert await recv(ws) == {
            "channel": "book:BTC-PERP",
            "seq": 2,
            "ts": TS,
            "type": "snapshot",
            "data": {"book": "book:BTC-PERP", "bids": [["100", "1"]]},
        }
        hub.publish("trades:BTC-PERP", [{"px": "1"}], TS + 5)
        updates(hub, "book:BTC-PERP", 3)
        got = [await recv(ws) for _ in range(4)]
        assert got[0] == {
            "channel": "trades:BTC-PERP",
            "seq": 1,
            "ts": TS + 5,
            "type": "update",
            "data": [{"px": "1"}],
        }
        assert [(m["channel"], m["seq"]) for m in got[1:]] == [
            ("book:BTC-PERP", s) for s in (3, 4, 5)
        ]
        assert await call(ws, {"op": "unsubscribe", "channels": ["book:BTC-PERP"]}) == {
            "op": "unsubscribed",
            "channels": ["book:BTC-PERP"],
        }
        hub.publish("book:BTC-PERP", {}, TS)
        hub.publish("trades:BTC-PERP", {}, TS)
        assert (await recv(ws))["channel"] == "trades:BTC-PERP"
        assert hub.stats.clients == 1
    await eventually(lambda: hub.stats.clients == 0)


async def test_login_and_private_isolation(srv: Server) -> None:
    hub = srv.hub
    async with connect(srv.url) as a, connect(srv.url) as b:
        assert await call(a, login_request("key-A")) == {"op": "login", "account": "acct-A"}
        assert await call(b, login_request("key-B")) == {"op": "login", "account": "acct-B"}
        for ws in (a, b):
            assert (await call(ws, {"op": "subscribe", "channels": ["orders"]}))["op"] == (
                "subscribed"
            )
        updates(hub, "orders", 3, account="acct-A")
        updates(hub, "orders", 2, account="acct-B")
        got_a = [await recv(a) for _ in range(3)]
        got_b = [await recv(b) for _ in range(2)]
        assert [(m["seq"], m["data"]["n"]) for m in got_a] == [(1, 0), (2, 1), (3, 2)]
        assert [(m["seq"], m["data"]["n"]) for m in got_b] == [(1, 0), (2, 1)]
        assert {m["channel"] for m in got_a + got_b} == {"orders"}
        # Nothing else is waiting for either of them.
        assert await call(a, {"op": "ping"}) == {"op": "pong", "ts": TS}
        assert await call(b, {"op": "ping"}) == {"op": "pong", "ts": TS}
        assert (await call(a, login_request("key-B")))["code"] == "BAD_REQUEST"  # one account


async def test_login_failures_keep_the_connection(srv: Server) -> None:
    async with connect(srv.url) as ws:
        assert await call(ws, login_request("key-A", "forged")) == {
            "op": "error",
            "code": "INVALID_SIGNATURE",
            "message": "signature does not match",
        }
        assert (await call(ws, login_request("nobody")))["code"] == "UNKNOWN_KEY"
        assert (await call(ws, {"op": "subscribe", "channels": ["fills"]}))["code"] == (
            "LOGIN_REQUIRED"
        )
        assert await call(ws, login_request("key-A")) == {"op": "login", "account": "acct-A"}
        assert await call(ws, {"op": "subscribe", "channels": ["fills"]}) == {
            "op": "subscribed",
            "channels": ["fills"],
        }


ERROR_CASES: list[tuple[Any, str]] = [
    ("{not json", "BAD_REQUEST"),
    ("[1, 2]", "BAD_REQUEST"),
    ('"ping"', "BAD_REQUEST"),
    ({}, "BAD_REQUEST"),
    ({"op": 7}, "BAD_REQUEST"),
    ({"op": "dance"}, "UNKNOWN_OP"),
    ({"op": "subscribe"}, "BAD_REQUEST"),
    ({"op": "subscribe", "channels": "book:BTC-PERP"}, "BAD_REQUEST"),
    ({"op": "subscribe", "channels": []}, "BAD_REQUEST"),
    ({"op": "subscribe", "channels": [1]}, "BAD_REQUEST"),
    ({"op": "unsubscribe", "channels": None}, "BAD_REQUEST"),
    ({"op": "subscribe", "channels": ["candles:BTC-PERP"]}, "UNKNOWN_CHANNEL"),
    ({"op": "subscribe", "channels": ["book:BTC-PERP", "book"]}, "UNKNOWN_CHANNEL"),
    ({"op": "subscribe", "channels": ["orders"]}, "LOGIN_REQUIRED"),
    ({"op": "subscribe", "channels": [f"book:M{i}" for i in range(101)]}, "TOO_MANY_SUBSCRIPTIONS"),
    ({"op": "login", "key": "key-A"}, "BAD_REQUEST"),
    ({"op": "login", "key": "key-A", "timestamp": True, "signature": "x"}, "BAD_REQUEST"),
    ('{"op": "ping", "pad": "' + "x" * MAX_FRAME_CHARS + '"}', "BAD_REQUEST"),
]


async def test_every_error_code_and_the_connection_stays_open(srv: Server) -> None:
    async with connect(srv.url) as ws:
        for request, code in ERROR_CASES:
            reply = await call(ws, request)
            assert reply["op"] == "error", request
            assert reply["code"] == code, (request, reply)
            assert isinstance(reply["message"], str) and reply["message"]
        assert await call(ws, b'{"op": "ping"}') == {"op": "pong", "ts": TS}  # binary frames too
        # Server bugs are reported as INTERNAL_ERROR, and the connection survives them too.
        assert (await call(ws, login_request("crash")))["code"] == "INTERNAL_ERROR"
        assert (await call(ws, {"op": "subscribe", "channels": ["book:BROKEN"]}))["code"] == (
            "INTERNAL_ERROR"
        )
        # Failed subscribes changed nothing; the limit counts what is held.
        assert srv.hub.stats.clients == 1
        held = [f"trades:M{i}" for i in range(100)]
        assert (await call(ws, {"op": "subscribe", "channels": held}))["op"] == "subscribed"
        assert (await call(ws, {"op": "subscribe", "channels": ["ticker:X"]}))["code"] == (
            "TOO_MANY_SUBSCRIPTIONS"
        )


@pytest.mark.parametrize("frames", [False, True], ids=["starlette-send", "frame-writer"])
async def test_slow_real_client_is_dropped_and_others_keep_receiving(frames: bool) -> None:
    hub = Hub(heartbeat_s=None, max_queue=8, close_timeout_s=TIMEOUT)
    async with serving(hub, frames=frames) as srv:
        host, port = "127.0.0.1", int(srv.url.split(":")[2].split("/")[0])
        # The slow client: a tiny receive buffer, and the client library stops reading the socket
        # once one frame is buffered (max_queue=1) -- and we never call recv().
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, (host, port))
        # No permessage-deflate: the payload must really take up buffer space.
        async with (
            connect(srv.url, compression=None) as fast,
            connect(srv.url, sock=raw, max_queue=1, compression=None) as slow,
        ):
            for ws in (fast, slow):
                assert (await call(ws, {"op": "subscribe", "channels": ["trades:X"]}))["op"] == (
                    "subscribed"
                )
            writers = {type(c.conn).__name__ for c in hub._clients}
            assert writers == ({"FrameWriter"} if frames else {"WebSocket"})
            payload = "x" * 16_000
            published = 0
            while hub.stats.dropped_slow == 0:
                assert published < 4_000, "the slow client was never dropped"
                published = hub.publish("trades:X", payload, TS)
                assert (await recv(fast))["seq"] == published  # the fast client is never behind
            for _ in range(5):  # the survivors keep getting everything
                published = hub.publish("trades:X", payload, TS)
                assert (await recv(fast))["seq"] == published
            assert hub.stats.clients == 1
            # Now the slow client reads: what reached it is a gapless prefix, then a 4008 close.
            seqs = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    seqs.append((await recv(slow))["seq"])
            assert seqs == list(range(1, len(seqs) + 1))
            assert len(seqs) < published
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4008
            assert closed.value.rcvd.reason == "slow consumer: queue of 8 messages full"


async def test_disconnect_unregisters(srv: Server) -> None:
    async with connect(srv.url) as ws:
        await call(ws, {"op": "subscribe", "channels": ["ticker:X"]})
        assert srv.hub.has_subscribers("ticker:X")
    await eventually(lambda: srv.hub.stats.clients == 0)
    assert not srv.hub.has_subscribers("ticker:X")


async def test_heartbeats_reach_clients() -> None:
    hub = Hub(heartbeat_s=0.001, clock=lambda: TS)
    async with serving(hub) as srv, connect(srv.url) as ws:
        await hub.start()
        assert await recv(ws) == {"op": "heartbeat", "ts": TS}


async def test_stop_closes_clients_and_the_server_exits() -> None:
    hub = Hub(heartbeat_s=None)
    await hub.start()
    async with serving(hub) as srv:
        async with connect(srv.url) as ws:
            await call(ws, {"op": "subscribe", "channels": ["book:X"]})
            await hub.stop()
            with pytest.raises(ConnectionClosed) as closed:
                await recv(ws)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1001,
                "server shutting down",
            )
        async with connect(srv.url) as late:  # after stop: accepted, then told to go away
            with pytest.raises(ConnectionClosed) as closed:
                await recv(late)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
        task = srv.task
    assert task.done() and task.exception() is None
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("hub-")]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_prebuilt_frames_match_the_websockets_library(size: int) -> None:
    """ws.FrameWriter's frames are byte-identical to what the websockets protocol would send
    (unmasked server frames, RFC 6455 length encodings), for text and binary, and each
    payload object is framed once."""
    from websockets.frames import Frame, Opcode

    from sandbox.server.ws import _FrameCache

    cache = _FrameCache(limit=4)
    text = "x" * size
    data = b"\x01" * size
    assert cache.frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert cache.frame(data) == Frame(Opcode.BINARY, data).serialize(mask=False)
    assert cache.frame(text) is cache.frame(text)  # cached by identity

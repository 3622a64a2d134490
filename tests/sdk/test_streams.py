"""perpbot.streams against a real sandbox on 127.0.0.1: books equal to REST after kills, gaps
and slow-consumer drops; login, refusals, heartbeats, backoff and close. No timing is asserted:
each test waits for a condition (with a timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import websockets.asyncio.client

from perpbot.errors import AuthError, InvalidRequest, TransportError
from perpbot.signing import signed_headers
from perpbot.streams import (
    Backoff,
    LocalOrderBook,
    SequenceGap,
    Stream,
    StreamMessage,
    WsConnection,
    watch_book,
)
from sandbox.engine.commands import OrderType, PlaceOrder, Side
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState, wall_ms
from tests.server.conftest import FakeWall, make_state

TIMEOUT = 5.0
BOOK = "book:BTC-PERP"
TRADES = "trades:BTC-PERP"
ALICE = ("alice-key", "alice-secret-0123456789")


class Wall(FakeWall):
    """Real wall time, so signatures made by the SDK fall inside the auth window."""

    def __call__(self) -> int:
        return wall_ms()


@contextlib.asynccontextmanager
async def sandbox() -> AsyncIterator[tuple[SandboxState, str, httpx.AsyncClient]]:
    """A sandbox (no simulated market: the book only moves when a test moves it) and its URLs."""
    state = make_state(Wall())
    async with serve(state) as url, httpx.AsyncClient(base_url=url) as http:
        yield state, url.replace("http", "ws", 1) + "/v1/ws", http


def place(state: SandboxState, account: str, side: Side, qty: str, price: str | None) -> None:
    """Submit an order straight to the server's engine (same event loop as the server)."""
    inst = state.core.instruments["BTC-PERP"]
    state.apply(
        PlaceOrder(
            account,
            "BTC-PERP",
            side,
            inst.qty_to_lots(qty),
            None if price is None else inst.price_to_ticks(price),
            OrderType.LIMIT if price is not None else OrderType.MARKET,
        )
    )


def ladder(state: SandboxState, start: int, n: int = 3) -> None:
    """``n`` bids below and ``n`` asks above 60000, offset by ``start`` dollars."""
    for i in range(n):
        place(state, "alice", Side.BUY, "0.01", str(59_900 - start - i))
        place(state, "bob", Side.SELL, "0.02", str(60_100 + start + i))


async def rest_book(http: httpx.AsyncClient) -> tuple[int, list[Any], list[Any]]:
    body = (await http.get("/v1/markets/BTC-PERP/book", params={"depth": 1000})).json()

    def levels(rows: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(p), Decimal(q)) for p, q in rows]

    return body["seq"], levels(body["bids"]), levels(body["asks"])


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)
    assert cond(), what


class Watcher:
    """Drains a stream in a task: records messages and keeps the BTC-PERP book."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.messages: list[StreamMessage] = []
        self.book = LocalOrderBook("BTC-PERP")
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for msg in self.stream:
            self.messages.append(msg)
            if msg.channel == BOOK:
                self.book.apply(msg)  # raises SequenceGap if the stream let a gap through

    def of(self, channel: str) -> list[StreamMessage]:
        return [m for m in self.messages if m.channel == channel]

    async def synced_to(self, state: SandboxState) -> None:
        await wait_until(
            lambda: self.task.done() or self.book.seq == state.hub.seq(BOOK), "book caught up"
        )
        if self.task.done():
            self.task.result()

    async def stop(self) -> None:
        await self.stream.close()
        async with asyncio.timeout(TIMEOUT):
            await self.task  # ends by itself once closed (and re-raises its errors)


async def assert_book_matches(book: LocalOrderBook, http: httpx.AsyncClient) -> None:
    seq, bids, asks = await rest_book(http)
    assert book.synced
    assert (book.seq, book.bids(), book.asks()) == (seq, bids, asks)


class Gate:
    """An injected backoff ``sleep`` that holds reconnects until ``open()``."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._open = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


# -- against a real sandbox ----------------------------------------------------------------------


async def test_local_book_equals_rest_snapshot() -> None:
    async with sandbox() as (state, ws_url, http):
        ladder(state, 0)
        watcher = Watcher(Stream(ws_url, [BOOK]))
        await watcher.synced_to(state)
        snapshot = watcher.messages[0]
        assert snapshot.type == "snapshot" and snapshot.seq == state.hub.seq(BOOK)
        await assert_book_matches(watcher.book, http)

        ladder(state, 10)  # new levels on both sides
        place(state, "bob", Side.SELL, "0.015", "59899")  # eats 59900 and part of 59899
        body = orjson.dumps({"market": "BTC-PERP", "side": "BUY", "qty": "0.5", "type": "MARKET"})
        headers = signed_headers(*ALICE, "POST", "/v1/orders", body, int(time.time() * 1000))
        r = await http.post("/v1/orders", content=body, headers=headers)
        assert r.status_code == 200, r.text  # sweeps the asks up to the market band
        await watcher.synced_to(state)
        await assert_book_matches(watcher.book, http)
        assert watcher.book.best_bid == (Decimal("59899"), Decimal("0.005"))
        bids, asks = watcher.book.depth(2)
        assert bids == watcher.book.bids()[:2] and asks == watcher.book.asks()[:2]
        assert [m.type for m in watcher.messages[1:]] == ["update"] * (len(watcher.messages) - 1)
        assert (watcher.stream.stats.gaps, watcher.stream.stats.reconnects) == (0, 0)
        await watcher.stop()


async def test_killed_connection_reconnects_and_resyncs() -> None:
    async with sandbox() as (state, ws_url, http):
        gate = Gate()
        stream = Stream(ws_url, [BOOK, TRADES], sleep=gate, rng=random.Random(1))
        watcher = Watcher(stream)
        ladder(state, 0)
        await watcher.synced_to(state)
        place(state, "bob", Side.SELL, "0.01", "59900")  # one trade before the kill
        await wait_until(lambda: len(watcher.of(TRADES)) == 1, "first trade")
        for client in list(state.hub._clients):
            state.hub._close(client, 1011, "test")
        await wait_until(lambda: len(gate.delays) == 1, "waiting to reconnect")
        assert not stream.connected and stream.stats.disconnects == 1

        # While the stream is away the book and the trades move on.
        ladder(state, 20)
        place(state, "bob", Side.SELL, "0.02", "59899")
        assert state.hub.stats.clients == 0
        gate.open()
        await watcher.synced_to(state)
        await assert_book_matches(watcher.book, http)
        assert (stream.stats.connects, stream.stats.reconnects) == (2, 1)
        assert 0 <= gate.delays[0] <= Backoff().base

        # Trades have no snapshot: a reset says some may be lost, then the next trade is the
        # new baseline whatever its seq.
        reset = next(m for m in watcher.of(TRADES) if m.type == "reset")
        assert reset.seq == watcher.of(TRADES)[0].seq and reset.data is None
        place(state, "bob", Side.SELL, "0.01", "59897")
        await wait_until(lambda: watcher.of(TRADES)[-1].type == "update", "trade after reset")
        assert [m.type for m in watcher.of(TRADES)] == ["update", "reset", "update"]
        assert watcher.of(TRADES)[-1].seq == state.hub.seq(TRADES)
        await watcher.synced_to(state)
        await assert_book_matches(watcher.book, http)
        await watcher.stop()


async def test_gap_resubscribes_and_resyncs_from_a_snapshot() -> None:
    async with sandbox() as (state, ws_url, http):
        stream = Stream(ws_url, [BOOK, TRADES])
        books: list[tuple[int | None, str]] = []
        latest: list[LocalOrderBook] = []

        async def run() -> None:
            async for book in watch_book(stream):
                books.append((book.seq, str(book.best_ask)))
                latest[:] = [book]

        task = asyncio.create_task(run())
        ladder(state, 0)
        await wait_until(lambda: bool(books) and books[-1][0] == state.hub.seq(BOOK), "synced")
        # The hub skips a seq: the stream must not apply the next diff, but resync.
        state.hub._seqs[BOOK] += 1
        skipped = state.hub.seq(BOOK)
        place(state, "bob", Side.SELL, "0.03", "60050")
        ladder(state, 30)
        await wait_until(lambda: books[-1][0] == state.hub.seq(BOOK), "resynced")
        # Everything after the gap was published before the client saw it: the book goes from
        # the last seq before the gap straight to the resubscribe snapshot.
        assert [seq for seq, _ in books][-2:] == [skipped - 1, state.hub.seq(BOOK)]
        assert (stream.stats.gaps, stream.stats.reconnects) == (1, 0)
        assert stream.stats.dropped >= 1
        await assert_book_matches(latest[0], http)
        await stream.close()
        async with asyncio.timeout(TIMEOUT):
            await task


async def test_gap_on_a_channel_without_snapshots_yields_a_reset() -> None:
    async with sandbox() as (state, ws_url, _):
        ladder(state, 0)
        watcher = Watcher(Stream(ws_url, [TRADES]))
        await wait_until(lambda: state.hub.has_subscribers(TRADES), "subscribed")
        place(state, "bob", Side.SELL, "0.01", "59900")
        await wait_until(lambda: len(watcher.messages) == 1, "first trade")
        state.hub._seqs[TRADES] += 3
        place(state, "bob", Side.SELL, "0.01", "59899")
        await wait_until(lambda: len(watcher.messages) == 3, "reset and trade")
        first, reset, trade = watcher.messages
        assert (reset.type, reset.seq) == ("reset", first.seq)
        assert (trade.type, trade.seq) == ("update", first.seq + 4)
        assert trade.data["price"] == "59899"
        assert (watcher.stream.stats.gaps, watcher.stream.stats.resets) == (1, 1)
        await watcher.stop()


async def test_slow_consumer_close_reconnects_and_resyncs() -> None:
    async with sandbox() as (state, ws_url, http):
        watcher = Watcher(Stream(ws_url, [BOOK]))
        await watcher.synced_to(state)
        # The hub gives up on the client as on a slow consumer (a full queue: close 4008; the
        # detection itself is tested over real sockets in tests/server/test_ws.py), and the
        # book moves on meanwhile.
        [client] = state.hub._clients
        state.hub._drop_slow(client)
        ladder(state, 0, n=5)
        await wait_until(lambda: watcher.stream.stats.reconnects == 1, "reconnected")
        await watcher.synced_to(state)
        await assert_book_matches(watcher.book, http)
        assert watcher.stream.stats.slow_consumer_closes == 1
        assert state.hub.stats.dropped_slow == 1
        await watcher.stop()


async def test_private_channels_log_in_and_see_own_orders_and_fills() -> None:
    async with sandbox() as (state, ws_url, http):
        watcher = Watcher(
            Stream(ws_url, ["orders", "fills"], api_key=ALICE[0], api_secret=ALICE[1])
        )
        await wait_until(lambda: bool(watcher.of("orders")), "orders snapshot")
        assert watcher.stream.account == "alice"
        assert (watcher.messages[0].type, watcher.messages[0].data) == ("snapshot", [])

        body = orjson.dumps({"market": "BTC-PERP", "side": "SELL", "qty": "0.5", "price": "60000"})
        headers = signed_headers(*ALICE, "POST", "/v1/orders", body, int(time.time() * 1000))
        assert (await http.post("/v1/orders", content=body, headers=headers)).status_code == 200
        place(state, "bob", Side.BUY, "0.2", None)
        await wait_until(lambda: bool(watcher.of("fills")), "fill")
        fill = watcher.of("fills")[0]
        assert (fill.type, fill.data["liquidity"], fill.data["qty"]) == ("update", "MAKER", "0.2")
        await wait_until(lambda: len(watcher.of("orders")) == 3, "accepted and trade")
        updates = [(m.type, m.data["update"]) for m in watcher.of("orders")[1:]]
        assert updates == [("update", "accepted"), ("update", "trade")]

        # After a reconnect it logs in again: orders resync from a snapshot, fills get a reset.
        for client in list(state.hub._clients):
            state.hub._close(client, 1011, "test")
        await wait_until(lambda: len(watcher.of("orders")) == 4, "orders snapshot again")
        again = watcher.of("orders")[-1]
        assert again.type == "snapshot" and again.data[0]["filled_qty"] == "0.2"
        assert watcher.of("fills")[-1].type == "reset"
        assert watcher.stream.stats.reconnects == 1
        await watcher.stop()


async def test_refused_login_and_unknown_channel_raise_without_retrying() -> None:
    async with sandbox() as (_, ws_url, _):
        attempts = 0

        async def connect(url: str) -> WsConnection:
            nonlocal attempts
            attempts += 1
            return await websockets.asyncio.client.connect(url)

        stream = Stream(ws_url, ["orders"], api_key=ALICE[0], api_secret="wrong", connect=connect)
        with pytest.raises(AuthError) as refused:
            await anext(stream)
        assert refused.value.code == "INVALID_SIGNATURE" and refused.value.status == 401
        assert attempts == 1 and stream.closed
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

        stream = Stream(ws_url, ["orders"], api_key="nobody", api_secret="x" * 20)
        with pytest.raises(AuthError, match="UNKNOWN_API_KEY"):
            await anext(stream)

        stream = Stream(ws_url, [BOOK, "book:NOPE-PERP"], connect=connect)
        with pytest.raises(InvalidRequest) as unknown:
            await anext(stream)
        assert unknown.value.code == "UNKNOWN_CHANNEL" and attempts == 2


async def test_silence_beyond_heartbeat_timeout_reconnects() -> None:
    async with sandbox() as (state, ws_url, http):
        ladder(state, 0)
        # The hub's heartbeat is every 5 s and nothing trades: the stream hears nothing.
        watcher = Watcher(Stream(ws_url, [BOOK], heartbeat_timeout=0.2))
        await wait_until(lambda: watcher.stream.stats.reconnects >= 1, "reconnected")
        assert watcher.stream.stats.heartbeat_timeouts >= 1
        assert [m.type for m in watcher.messages[:2]] == ["snapshot", "snapshot"]
        ladder(state, 10)
        await watcher.synced_to(state)
        await assert_book_matches(watcher.book, http)
        await watcher.stop()


async def test_heartbeats_keep_a_quiet_connection_alive() -> None:
    state = make_state(Wall())
    state.hub.heartbeat_s = 0.01  # read by the hub when the server starts it
    async with serve(state) as url:
        stream = Stream(url.replace("http", "ws", 1) + "/v1/ws", [BOOK], heartbeat_timeout=0.5)
        watcher = Watcher(stream)
        await wait_until(lambda: stream.stats.heartbeats >= 60, "heartbeats")
        assert (stream.stats.heartbeat_timeouts, stream.stats.connects) == (0, 1)
        assert [m.type for m in watcher.messages] == ["snapshot"]  # heartbeats are not yielded
        await watcher.stop()


async def test_close_ends_iteration_in_another_task_and_frees_the_server() -> None:
    async with sandbox() as (state, ws_url, _):
        watcher = Watcher(Stream(ws_url, [BOOK]))
        await wait_until(lambda: bool(watcher.messages), "snapshot")
        assert state.hub.stats.clients == 1
        await watcher.stop()  # the iterating task returns normally
        await wait_until(lambda: state.hub.stats.clients == 0, "server side closed")
        assert watcher.stream.stats.disconnects == 0
        await watcher.stream.close()  # idempotent
        with pytest.raises(StopAsyncIteration):
            await anext(watcher.stream)

        async with Stream(ws_url, [BOOK]) as stream:
            assert (await anext(stream)).type == "snapshot"
        assert stream.closed
        await wait_until(lambda: state.hub.stats.clients == 0, "closed on exit")


# -- without a server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_close_interrupts_the_backoff_pause() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(3600)

    stream = Stream(
        f"ws://127.0.0.1:{free_port()}/v1/ws",
        [BOOK],
        reconnect=Backoff(base=1000, max=1000),
        sleep=sleep,
    )
    task = asyncio.create_task(anext(stream))
    await wait_until(lambda: bool(pauses), "pausing")
    await stream.close()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(TIMEOUT):
            await task


async def test_backoff_is_capped_full_jitter_and_max_attempts_raise() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    backoff = Backoff(base=0.1, max=0.5, max_attempts=6)
    stream = Stream(
        f"ws://127.0.0.1:{free_port()}/v1/ws",
        [BOOK],
        reconnect=backoff,
        sleep=sleep,
        rng=random.Random(7),
    )
    with pytest.raises(TransportError, match="after 6 attempts"):
        await anext(stream)
    assert len(pauses) == 5
    caps = [min(0.5, 0.1 * 2**n) for n in range(1, 6)]
    assert all(0 <= pause <= cap for pause, cap in zip(pauses, caps, strict=True))
    rng = random.Random(3)
    assert all(0 <= backoff.delay(n, rng) <= 0.5 for n in range(200))


def test_stream_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Stream("ws://x/v1/ws", ["fills"])
    with pytest.raises(ValueError, match="at least one"):
        Stream("ws://x/v1/ws", [])
    with pytest.raises(TypeError):
        Stream("ws://x/v1/ws", BOOK)
    assert Stream("ws://x/v1/ws", [BOOK, BOOK, TRADES]).channels == (BOOK, TRADES)


# -- LocalOrderBook ------------------------------------------------------------------------------


def msg(kind: Any, seq: int, bids: Any = (), asks: Any = ()) -> StreamMessage:
    return StreamMessage(BOOK, seq, 0, kind, {"bids": list(bids), "asks": list(asks)})


def test_local_book_applies_snapshots_and_diffs_exactly() -> None:
    book = LocalOrderBook("BTC-PERP")
    assert (book.synced, book.best_bid, book.best_ask, book.bids()) == (False, None, None, [])
    book.apply(
        msg(
            "snapshot",
            10,
            [["100.1", "0.3"], ["100.2", "0.1"]],
            [["100.5", "1"], ["100.3", "0.2"]],
        )
    )
    assert book.synced and book.seq == 10
    assert book.best_bid == (Decimal("100.2"), Decimal("0.1"))
    assert book.asks() == [(Decimal("100.3"), Decimal("0.2")), (Decimal("100.5"), Decimal("1"))]
    book.apply(msg("update", 11, [["100.2", "0"], ["99.9", "0.7"]], [["100.4", "0.05"]]))
    assert book.bids() == [(Decimal("100.1"), Decimal("0.3")), (Decimal("99.9"), Decimal("0.7"))]
    assert book.depth(2) == (book.bids(), book.asks()[:2])
    assert book.depth(0) == ([], [])
    book.apply(msg("update", 12, [["100.1", "0.1"], ["100.0", "0"]]))  # removing nothing is fine
    assert book.best_bid == (Decimal("100.1"), Decimal("0.1"))
    assert sum(q for _, q in book.bids()) == Decimal("0.8")  # exact, no float dust

    with pytest.raises(SequenceGap) as gap:
        book.apply(msg("update", 14, [["1", "1"]]))
    assert (gap.value.expected, gap.value.got) == (13, 14)
    assert not book.synced and Decimal(1) not in [p for p, _ in book.bids()]
    with pytest.raises(SequenceGap):
        book.apply(msg("update", 15))  # unsynced until the next snapshot
    book.apply(msg("snapshot", 20, [["5", "1"]]))
    assert (book.seq, book.bids(), book.asks()) == (20, [(Decimal(5), Decimal(1))], [])
    book.apply(StreamMessage(BOOK, 20, 0, "reset"))
    assert not book.synced

    with pytest.raises(ValueError):
        book.apply(StreamMessage(TRADES, 1, 0, "update", {}))
    for bad in (["1", 2], ["x", "1"], ["1", "-1"], ["NaN", "1"], ["1"]):
        with pytest.raises(ValueError):
            LocalOrderBook("BTC-PERP").apply(msg("snapshot", 1, [bad]))


async def test_watch_book_needs_one_book_channel() -> None:
    stream = Stream("ws://x/v1/ws", [BOOK, "book:ETH-PERP"])
    with pytest.raises(ValueError, match="market"):
        await anext(watch_book(stream))
    with pytest.raises(ValueError, match="not subscribed"):
        await anext(watch_book(stream, "SOL-PERP"))

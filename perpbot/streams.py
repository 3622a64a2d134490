"""WebSocket streams that recover by themselves, and a local order book kept from them.

:class:`Stream` connects to the exchange's ``/v1/ws``, logs in when private channels are asked
for, subscribes and yields :class:`StreamMessage` objects (channel messages only, never control
replies). It watches each channel's ``seq``:

- an update that is not ``last + 1`` is a gap: it is not yielded; a channel with snapshots
  (``book:<M>``, ``orders``, ``account``, ``positions``) is resubscribed and its updates are
  dropped until the fresh snapshot arrives;
- a dropped connection (including a 4008 slow-consumer close, and a heartbeat timeout: nothing
  received for ``heartbeat_timeout`` seconds) is reopened with exponential backoff and full jitter,
  then logged in and resubscribed. Channels with snapshots resync from the new snapshot; channels
  without (trades, ticker, funding, fills, margin, liquidations) cannot be replayed, so a
  ``type="reset"`` message tells the consumer it may have missed some, and the new connection's
  first update is the new baseline.

Refused credentials raise :class:`~perpbot.errors.AuthError` and refused channels
:class:`~perpbot.errors.InvalidRequest` from the iterator (they are not retried).

:class:`LocalOrderBook` applies ``book:<M>`` messages with exact decimals; :func:`watch_book`
yields it after every applied message of a stream::

    async with Stream(url, ["book:BTC-PERP"]) as stream:
        async for book in watch_book(stream):
            print(book.seq, book.best_bid, book.best_ask)
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Literal, Protocol

import orjson
import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from .errors import AuthError, InvalidRequest, PerpbotError, TransportError
from .signing import WS_LOGIN_PATH, sign_ws_login

__all__ = [
    "PRIVATE_CHANNELS",
    "Backoff",
    "LocalOrderBook",
    "SequenceGap",
    "Stream",
    "StreamMessage",
    "StreamStats",
    "WsConnection",
    "has_snapshot",
    "watch_book",
]

log = logging.getLogger(__name__)

PRIVATE_CHANNELS = frozenset({"orders", "fills", "positions", "account", "margin", "liquidations"})
"""Channels that need a login (each account has its own stream and ``seq``)."""
_PRIVATE_SNAPSHOTS = frozenset({"orders", "account", "positions"})
CLOSE_SLOW_CONSUMER = 4008
MAX_FRAME_BYTES = 16 * 1024 * 1024

MessageType = Literal["snapshot", "update", "reset"]
Level = tuple[Decimal, Decimal]


def has_snapshot(channel: str) -> bool:
    """Whether the server sends a snapshot on subscribing to ``channel``."""
    return channel in _PRIVATE_SNAPSHOTS or channel.partition(":")[0] == "book"


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One channel message. ``data`` is the decoded JSON (decimals stay strings).

    ``ts`` is the exchange's ms. A ``reset`` (no ``data``) says messages may have been missed on
    a channel without snapshots; its ``seq`` is the last one seen before, its ``ts`` local wall ms.
    """

    channel: str
    seq: int
    ts: int
    type: MessageType
    data: Any = None


@dataclass(slots=True)
class StreamStats:
    """Counters since the stream was created."""

    connects: int = 0
    """Sessions established (connected, logged in, subscribed)."""
    reconnects: int = 0
    """Sessions established after the first one."""
    disconnects: int = 0
    """Sessions lost, whatever the cause."""
    heartbeat_timeouts: int = 0
    slow_consumer_closes: int = 0
    """Closes with code 4008: this consumer fell too far behind."""
    gaps: int = 0
    resets: int = 0
    dropped: int = 0
    """Updates discarded while their channel waited for a snapshot."""
    heartbeats: int = 0
    messages: int = 0
    """Messages yielded (resets included)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``uniform(0, min(max, base * 2**attempt))`` (full jitter).

    ``max_attempts`` bounds consecutive failed connection attempts (None: keep trying).
    """

    base: float = 0.1
    max: float = 5.0
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The pause before retry number ``attempt`` (0 for the first)."""
        return rng.uniform(0.0, min(self.max, self.base * 2.0 ** min(attempt, 64)))


class WsConnection(Protocol):
    """What a stream needs from a WebSocket (a ``websockets`` client connection fits)."""

    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self) -> None: ...


Connect = Callable[[str], Awaitable[WsConnection]]


class SequenceGap(PerpbotError):
    """An update that does not follow the last applied ``seq`` (``expected`` None: no snapshot)."""

    def __init__(self, channel: str, expected: int | None, got: int) -> None:
        super().__init__(f"{channel}: expected seq {expected}, got {got}")
        self.channel = channel
        self.expected = expected
        self.got = got


class _HeartbeatTimeout(Exception):
    pass


class _ServerFault(Exception):
    """An INTERNAL_ERROR reply or a dropped socket during the handshake: worth a retry."""


class _SessionError(Exception):
    """The session can no longer be trusted: reconnect."""


class _Closed(Exception):
    pass


@dataclass(slots=True)
class _Channel:
    snapshots: bool
    last: int | None = None
    syncing: bool = False
    """Waiting for a snapshot: updates are dropped."""
    fresh: bool = True
    """No snapshots: the next update is accepted whatever its seq."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _decode(frame: str | bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(frame)
    except orjson.JSONDecodeError:
        log.warning("ignoring a frame that is not JSON: %.80r", frame)
        return None
    return value if isinstance(value, dict) else None


class Stream:
    """Channel messages of one WebSocket connection, reconnected and resynced as needed.

    An async context manager and async iterator; see the module docstring. ``clock`` (wall ms,
    for the login timestamp), ``sleep`` (backoff pauses), ``connect`` and ``rng`` are injectable.
    ``max_queue`` is how many frames the socket buffers before TCP pushes back on the server.
    """

    def __init__(
        self,
        ws_url: str,
        channels: Sequence[str],
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        heartbeat_timeout: float = 15.0,
        reconnect: Backoff = Backoff(),
        max_queue: int = 1024,
        clock: Callable[[], int] = _wall_ms,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        connect: Connect | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(channels, str):
            raise TypeError("channels is a sequence of channel names, not one string")
        names = list(dict.fromkeys(channels))
        if not names:
            raise ValueError("subscribe to at least one channel")
        self._private = any(name in PRIVATE_CHANNELS for name in names)
        if self._private and not (api_key and api_secret):
            raise ValueError("private channels need api_key and api_secret")
        if heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be > 0")
        self.ws_url = ws_url
        self.heartbeat_timeout = heartbeat_timeout
        self.reconnect = reconnect
        self.stats = StreamStats()
        self._channels = tuple(names)
        self._state = {name: _Channel(has_snapshot(name)) for name in names}
        self._key = api_key
        self._secret = api_secret
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        if connect is None:

            async def connect(url: str) -> WsConnection:
                return await websockets.asyncio.client.connect(
                    url,
                    compression=None,
                    max_size=MAX_FRAME_BYTES,
                    max_queue=max_queue,
                    close_timeout=1.0,
                )

        self._connect_ws = connect
        self._ws: WsConnection | None = None
        """The socket of the established session."""
        self._opening: WsConnection | None = None
        """A socket still in its login/subscribe handshake."""
        self._backlog: deque[dict[str, Any]] = deque()
        self._out: deque[StreamMessage] = deque()
        self._account: str | None = None
        self._last_login_ts = 0
        self._closed = False
        self._closed_event = asyncio.Event()

    # -- public --------------------------------------------------------------------------------

    @property
    def channels(self) -> tuple[str, ...]:
        """The subscribed channel names (deduplicated, in order)."""
        return self._channels

    @property
    def account(self) -> str | None:
        """The account logged in as (None for public-only streams or before the first login)."""
        return self._account

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def closed(self) -> bool:
        return self._closed

    async def resync(self, channel: str) -> None:
        """Ask for a fresh snapshot of ``channel``; its updates are dropped until it arrives."""
        state = self._state.get(channel)
        if state is None or not state.snapshots:
            raise ValueError(f"{channel!r} is not a subscribed channel with snapshots")
        state.syncing = True
        ws = self._ws
        if ws is not None:  # otherwise the next connection subscribes anyway
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._subscribe_again(ws, channel)

    async def close(self) -> None:
        """Stop: close the socket; iteration ends (also in another task waiting on it)."""
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        for ws in (self._ws, self._opening):
            if ws is not None:
                await _close_quietly(ws)
        self._ws = None

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> StreamMessage:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._out:
                self.stats.messages += 1
                return self._out.popleft()
            ws = self._ws
            if ws is None:
                try:
                    await self._open()
                except _Closed:
                    raise StopAsyncIteration from None
                except (PerpbotError, ValueError):  # refused or gave up: the stream is over
                    await self.close()
                    raise
                continue
            try:
                raw = self._backlog.popleft() if self._backlog else await self._receive(ws)
                message = None if raw is None else await self._handle(ws, raw)
            except (ConnectionClosed, OSError, _HeartbeatTimeout, _SessionError) as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                await self._drop(ws, exc)
                continue
            if message is not None:
                self.stats.messages += 1
                return message

    # -- connection ----------------------------------------------------------------------------

    async def _open(self) -> None:
        """Connect, log in and subscribe, retrying with backoff; raises refusals and _Closed."""
        attempt = 0
        if self.stats.connects:  # a reconnect: pause first, so a flapping server is not hammered
            await self._pause(self.reconnect.delay(0, self._rng))
        while True:
            error = await self._try_session()
            if error is None:
                self._started()
                return
            if self._closed:
                raise _Closed
            attempt += 1
            limit = self.reconnect.max_attempts
            if limit is not None and attempt >= limit:
                raise TransportError(
                    f"no session with {self.ws_url} after {attempt} attempts: {error!r}",
                    method="GET",
                    path=WS_LOGIN_PATH,
                ) from error
            log.info("stream %s: attempt %d failed: %r", self.ws_url, attempt, error)
            await self._pause(self.reconnect.delay(attempt, self._rng))

    async def _try_session(self) -> Exception | None:
        """One attempt: None once the session is up, else the (retryable) failure."""
        try:
            ws = await self._connect()
        except InvalidURI as exc:
            raise ValueError(str(exc)) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            return exc
        self._opening = ws
        try:
            await self._handshake(ws)
        except (ConnectionClosed, OSError, _HeartbeatTimeout, _ServerFault) as exc:
            await _close_quietly(ws)
            return exc
        except BaseException:
            await _close_quietly(ws)
            raise
        finally:
            self._opening = None
        if self._closed:
            await _close_quietly(ws)
            raise _Closed
        self._ws = ws
        return None

    async def _connect(self) -> WsConnection:
        """The connect call, abandoned (and its socket closed) if the stream is closed meanwhile."""
        task = asyncio.ensure_future(self._connect_ws(self.ws_url))
        try:
            await self._race(task)
        except _Closed:
            if task.done() and not task.cancelled() and task.exception() is None:
                await _close_quietly(task.result())
            raise
        return task.result()

    async def _pause(self, seconds: float) -> None:
        await self._race(asyncio.ensure_future(self._sleep(seconds)))

    async def _race(self, task: asyncio.Future[Any]) -> None:
        """Wait for ``task`` unless :meth:`close` comes first (then cancel it, raise _Closed)."""
        closed = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait((task, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
        if self._closed:
            raise _Closed

    async def _handshake(self, ws: WsConnection) -> None:
        self._backlog.clear()
        if self._private:
            assert self._key is not None and self._secret is not None
            ts = max(self._clock(), self._last_login_ts + 1)  # never two logins signing alike
            self._last_login_ts = ts
            login = {
                "op": "login",
                "key": self._key,
                "timestamp": str(ts),
                "signature": sign_ws_login(self._secret, ts),
            }
            await ws.send(orjson.dumps(login).decode())
            reply = await self._reply(ws)
            if reply.get("op") == "error":
                raise self._refusal(reply, AuthError, 401)
            account = reply.get("account")
            self._account = account if isinstance(account, str) else None
        subscribe = {"op": "subscribe", "channels": list(self._channels)}
        await ws.send(orjson.dumps(subscribe).decode())
        reply = await self._reply(ws)
        if reply.get("op") == "error":
            raise self._refusal(reply, InvalidRequest, 400)

    def _refusal(
        self, reply: dict[str, Any], cls: type[AuthError | InvalidRequest], status: int
    ) -> Exception:
        code = str(reply.get("code", "UNKNOWN"))
        message = str(reply.get("message", ""))
        if code == "INTERNAL_ERROR":
            return _ServerFault(f"{code}: {message}")
        return cls(status, code, message, method="GET", path=WS_LOGIN_PATH)

    async def _reply(self, ws: WsConnection) -> dict[str, Any]:
        """The next control reply (login, subscribed or error); channel messages are kept."""
        while True:
            message = await self._receive(ws)
            if message is None:
                continue
            op = message.get("op")
            if op in ("login", "subscribed", "error"):
                return message
            if op == "heartbeat":
                self.stats.heartbeats += 1
            elif op is None:
                self._backlog.append(message)

    def _started(self) -> None:
        """A session is up: expect snapshots, and tell of possible losses on the others."""
        stats = self.stats
        reconnect = stats.connects > 0
        stats.connects += 1
        if reconnect:
            stats.reconnects += 1
        now = self._clock()
        for name, state in self._state.items():
            if state.snapshots:
                state.syncing = True
            else:
                state.fresh = True
                if reconnect:
                    stats.resets += 1
                    self._out.append(StreamMessage(name, state.last or 0, now, "reset"))

    async def _drop(self, ws: WsConnection, exc: BaseException) -> None:
        stats = self.stats
        stats.disconnects += 1
        if isinstance(exc, _HeartbeatTimeout):
            stats.heartbeat_timeouts += 1
        elif isinstance(exc, ConnectionClosed) and _close_code(exc) == CLOSE_SLOW_CONSUMER:
            stats.slow_consumer_closes += 1
        log.info("stream %s: connection lost (%r); reconnecting", self.ws_url, exc)
        self._ws = None
        self._backlog.clear()
        await _close_quietly(ws)

    async def _receive(self, ws: WsConnection) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(self.heartbeat_timeout):
                frame = await ws.recv()
        except TimeoutError:
            raise _HeartbeatTimeout(f"nothing received for {self.heartbeat_timeout}s") from None
        return _decode(frame)

    async def _subscribe_again(self, ws: WsConnection, channel: str) -> None:
        await ws.send(orjson.dumps({"op": "subscribe", "channels": [channel]}).decode())

    # -- messages ------------------------------------------------------------------------------

    async def _handle(self, ws: WsConnection, message: dict[str, Any]) -> StreamMessage | None:
        op = message.get("op")
        if op is not None:
            if op == "heartbeat":
                self.stats.heartbeats += 1
            elif op == "error":
                # Only a resubscription can be refused mid-session; a new session retries it
                # (and raises if the refusal is for good).
                log.warning("stream %s: server error %r", self.ws_url, message)
                raise _SessionError(f"server error {message.get('code')}")
            return None
        channel = message.get("channel")
        state = self._state.get(channel) if isinstance(channel, str) else None
        seq, ts, kind = message.get("seq"), message.get("ts"), message.get("type")
        if state is None or not isinstance(seq, int) or not isinstance(ts, int):
            return None
        assert isinstance(channel, str)
        data = message.get("data")
        if kind == "snapshot":
            state.last, state.syncing, state.fresh = seq, False, False
            return StreamMessage(channel, seq, ts, "snapshot", data)
        if kind != "update":
            return None
        if state.syncing:
            self.stats.dropped += 1
            return None
        update = StreamMessage(channel, seq, ts, "update", data)
        if state.fresh or state.last is None or seq == state.last + 1:
            state.last, state.fresh = seq, False
            return update
        self.stats.gaps += 1
        log.info("stream %s: gap on %s (%s -> %d)", self.ws_url, channel, state.last, seq)
        if state.snapshots:
            state.syncing = True
            self.stats.dropped += 1
            await self._subscribe_again(ws, channel)
            return None
        self.stats.resets += 1
        reset = StreamMessage(channel, state.last, self._clock(), "reset")
        state.last = seq
        self._out.append(update)
        return reset


def _close_code(exc: ConnectionClosed) -> int | None:
    return None if exc.rcvd is None else exc.rcvd.code


async def _close_quietly(ws: WsConnection) -> None:
    with contextlib.suppress(Exception):
        await ws.close()


# -- local order book --------------------------------------------------------------------------


class _Side:
    """Price -> quantity with prices kept sorted ascending."""

    __slots__ = ("prices", "qty")

    def __init__(self) -> None:
        self.qty: dict[Decimal, Decimal] = {}
        self.prices: list[Decimal] = []

    def replace(self, levels: Any) -> None:
        self.qty = {p: q for p, q in _parse_levels(levels) if q}
        self.prices = sorted(self.qty)

    def update(self, levels: Any) -> None:
        for price, qty in _parse_levels(levels):
            if qty:
                if price not in self.qty:
                    bisect.insort(self.prices, price)
                self.qty[price] = qty
            elif self.qty.pop(price, None) is not None:
                del self.prices[bisect.bisect_left(self.prices, price)]


def _parse_levels(levels: Any) -> list[Level]:
    if not isinstance(levels, list):
        raise ValueError(f"book levels must be a list, got {levels!r}")
    out: list[Level] = []
    for level in levels:
        if not (isinstance(level, list) and len(level) == 2 and all(type(x) is str for x in level)):
            raise ValueError(f"bad book level {level!r}")
        try:
            price, qty = Decimal(level[0]), Decimal(level[1])
        except InvalidOperation:
            raise ValueError(f"bad book level {level!r}") from None
        if not (price.is_finite() and qty.is_finite()) or qty < 0:
            raise ValueError(f"bad book level {level!r}")
        out.append((price, qty))
    return out


class LocalOrderBook:
    """A market's book kept from ``book:<market>`` messages, with exact decimals.

    A snapshot replaces the book; an update applies ``[price, qty]`` levels (qty 0 removes) and
    must carry ``seq == self.seq + 1``, otherwise :class:`SequenceGap` is raised, nothing is
    applied and the book stays unsynced until the next snapshot.
    """

    __slots__ = ("_asks", "_bids", "_seq", "channel", "market")

    def __init__(self, market: str) -> None:
        self.market = market
        self.channel = f"book:{market}"
        self._bids = _Side()
        self._asks = _Side()
        self._seq: int | None = None

    @property
    def seq(self) -> int | None:
        """The ``seq`` of the last applied message (None until a snapshot)."""
        return self._seq

    @property
    def synced(self) -> bool:
        """True once a snapshot is applied and no gap has been seen since."""
        return self._seq is not None

    def apply(self, message: StreamMessage) -> None:
        """Apply a snapshot or update; a reset unsyncs the book (wait for a snapshot)."""
        if message.channel != self.channel:
            raise ValueError(f"{message.channel!r} is not {self.channel!r}")
        data = message.data
        if message.type == "reset":
            self._seq = None
            return
        if not isinstance(data, dict):
            raise ValueError(f"book data must be an object, got {data!r}")
        if message.type == "snapshot":
            self._bids.replace(data.get("bids", []))
            self._asks.replace(data.get("asks", []))
            self._seq = message.seq
            return
        if self._seq is None or message.seq != self._seq + 1:
            expected = None if self._seq is None else self._seq + 1
            self._seq = None
            raise SequenceGap(self.channel, expected, message.seq)
        self._bids.update(data.get("bids", []))
        self._asks.update(data.get("asks", []))
        self._seq = message.seq

    def bids(self) -> list[Level]:
        """(price, qty) from the best (highest) bid down."""
        qty = self._bids.qty
        return [(p, qty[p]) for p in reversed(self._bids.prices)]

    def asks(self) -> list[Level]:
        """(price, qty) from the best (lowest) ask up."""
        qty = self._asks.qty
        return [(p, qty[p]) for p in self._asks.prices]

    def depth(self, n: int) -> tuple[list[Level], list[Level]]:
        """The best ``n`` levels of each side: (bids, asks)."""
        bid_prices, ask_prices = self._bids.prices, self._asks.prices
        bids = [(p, self._bids.qty[p]) for p in reversed(bid_prices[max(0, len(bid_prices) - n) :])]
        asks = [(p, self._asks.qty[p]) for p in ask_prices[: max(0, n)]]
        return bids, asks

    @property
    def best_bid(self) -> Level | None:
        prices = self._bids.prices
        return (prices[-1], self._bids.qty[prices[-1]]) if prices else None

    @property
    def best_ask(self) -> Level | None:
        prices = self._asks.prices
        return (prices[0], self._asks.qty[prices[0]]) if prices else None

    def __repr__(self) -> str:
        return (
            f"LocalOrderBook({self.market!r}, seq={self._seq}, bid={self.best_bid}, "
            f"ask={self.best_ask})"
        )


async def watch_book(stream: Stream, market: str | None = None) -> AsyncIterator[LocalOrderBook]:
    """Yield ``stream``'s book of ``market`` after each applied message, once synced.

    ``market`` may be left out when the stream has exactly one ``book:`` channel. The same
    :class:`LocalOrderBook` object is yielded each time; other channels' messages are skipped.
    """
    if market is None:
        books = [name for name in stream.channels if name.startswith("book:")]
        if len(books) != 1:
            raise ValueError(f"pass market=: the stream has book channels {books}")
        market = books[0].partition(":")[2]
    book = LocalOrderBook(market)
    if book.channel not in stream.channels:
        raise ValueError(f"the stream is not subscribed to {book.channel!r}")
    async for message in stream:
        if message.channel != book.channel:
            continue
        try:
            book.apply(message)
        except SequenceGap:
            await stream.resync(book.channel)
            continue
        if book.synced:
            yield book

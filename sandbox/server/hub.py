"""WebSocket fan-out: channels, per-channel sequence numbers, snapshots and slow-consumer drops.

The hub is transport-agnostic: it talks to a :class:`Connection` (Starlette's ``WebSocket`` in
production, an in-memory fake in tests). Everything the engine calls is synchronous and never
blocks: :meth:`Hub.publish` encodes a message once and appends the same payload to each
subscriber's bounded queue; one writer task per client drains its queue to the socket. A client
whose queue is full when a message arrives is disconnected with close code 4008 and its pending
messages are discarded (it resyncs from a snapshot), so a stalled reader never holds up the
publisher or the other clients.

Wire format (JSON objects, one per frame)::

    {"channel": "book:BTC-PERP", "seq": 7, "ts": 1700000000000, "type": "update", "data": ...}
    {"channel": "book:BTC-PERP", "seq": 6, "ts": 1700000000000, "type": "snapshot", "data": ...}
    {"op": "heartbeat", "ts": 1700000000000}

``seq`` is gapless per public channel and per (private channel, account); a snapshot carries the
channel's current seq, so the updates that follow it continue at seq + 1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import orjson

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_SLOW_CONSUMER",
    "PRIVATE_CHANNELS",
    "PUBLIC_PREFIXES",
    "ChannelError",
    "Client",
    "Connection",
    "ErrorCode",
    "Hub",
    "HubStats",
]

log = logging.getLogger(__name__)

PUBLIC_PREFIXES = frozenset({"book", "trades", "ticker", "funding", "alerts"})
"""Public channels are named ``<prefix>:<MARKET>``."""
PRIVATE_CHANNELS = frozenset({"orders", "fills", "positions", "account", "margin", "liquidations"})
"""Private channels need a login; each account has its own stream (and seq) on each."""

CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1001

Payload = str | bytes
Key = str | tuple[str, str]
"""A stream: a public channel name, or (private channel, account id)."""


class ErrorCode(StrEnum):
    """Stable codes of ``{"op": "error"}`` replies. Part of the public API."""

    BAD_REQUEST = "BAD_REQUEST"
    UNKNOWN_OP = "UNKNOWN_OP"
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    LOGIN_REQUIRED = "LOGIN_REQUIRED"
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ChannelError(Exception):
    """A subscription request the hub refuses; nothing was changed."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Connection(Protocol):
    """What the hub needs from a socket (Starlette's ``WebSocket`` satisfies it)."""

    async def send_text(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


WriteNow = Callable[[str | bytes], bool]
"""Optional on a connection (``write_now``): send a message synchronously if the socket can
take it at once, else return False (the hub then queues it for the writer task)."""


@dataclass(frozen=True, slots=True)
class HubStats:
    """Counters since the hub was created (``clients`` is the current number)."""

    published: int
    delivered: int
    dropped_slow: int
    clients: int


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Client:
    """One connection's state in the hub. Created by :meth:`Hub.add_client`."""

    __slots__ = (
        "_closing",
        "_done",
        "_keys",
        "_queue",
        "_wakeup",
        "_writer",
        "account",
        "conn",
        "id",
        "write_now",
    )

    def __init__(self, client_id: int, conn: Connection) -> None:
        self.id = client_id
        self.conn = conn
        self.write_now: WriteNow | None = getattr(conn, "write_now", None)
        self.account: str | None = None
        self._keys: dict[str, Key] = {}
        """Subscribed channel name -> stream key."""
        self._queue: deque[Payload] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._done = asyncio.Event()

    @property
    def channels(self) -> frozenset[str]:
        """The channel names this client is subscribed to."""
        return frozenset(self._keys)

    @property
    def closed(self) -> bool:
        """True once the hub has let go of the client (dropped, stopped or removed)."""
        return self._closing

    @property
    def pending(self) -> int:
        """Messages queued and not yet handed to the socket."""
        return len(self._queue)

    async def wait_closed(self) -> None:
        """Return once the hub is done with this client (its close frame sent or timed out)."""
        await self._done.wait()

    def __repr__(self) -> str:
        return f"Client(id={self.id}, account={self.account!r}, channels={len(self._keys)})"


class Hub:
    """Channels, sequence numbers and bounded per-client queues. See the module docstring.

    ``clock`` gives the exchange's simulated ms for heartbeats, pongs and snapshots;
    ``is_valid_channel`` vets public channel names (e.g. known markets) after the prefix check.
    ``binary=True`` sends binary frames (text frames by default); both carry the same JSON.
    """

    def __init__(
        self,
        *,
        max_queue: int = 1024,
        heartbeat_s: float | None = 5.0,
        max_subscriptions: int = 100,
        close_timeout_s: float = 5.0,
        clock: Callable[[], int] = _wall_ms,
        is_valid_channel: Callable[[str], bool] | None = None,
        binary: bool = False,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.max_queue = max_queue
        self.heartbeat_s = heartbeat_s
        self.max_subscriptions = max_subscriptions
        self.close_timeout_s = close_timeout_s
        self.clock = clock
        self._is_valid = is_valid_channel
        self._binary = binary
        self._slow_reason = f"slow consumer: queue of {max_queue} messages full"
        self._seqs: dict[Key, int] = {}
        self._subs: dict[Key, set[Client]] = {}
        self._snapshots: dict[str, Callable[[str], object]] = {}
        self._private_snapshots: dict[str, Callable[[str], object]] = {}
        self._clients: set[Client] = set()
        self._closers: set[asyncio.Task[None]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._next_id = 0
        self._stopped = False
        self._published = 0
        self._delivered = 0
        self._dropped_slow = 0
        self.fault: Callable[[int, Payload], list[Payload] | None] | None = None
        """Fault injection (sandbox.server.faults): per client, what to deliver instead of a
        data message (None: disconnect it). Unset in normal operation."""

    # -- observability -------------------------------------------------------------------------

    @property
    def stats(self) -> HubStats:
        return HubStats(self._published, self._delivered, self._dropped_slow, len(self._clients))

    @property
    def stopped(self) -> bool:
        return self._stopped

    def seq(self, channel: str, account: str | None = None) -> int:
        """The last seq published on ``channel`` (for ``account`` if private); 0 if none yet."""
        return self._seqs.get(channel if account is None else (channel, account), 0)

    def has_subscribers(self, channel: str, account: str | None = None) -> bool:
        """Whether anyone listens to ``channel`` (for a private one: to ``account``'s stream).

        Lets a publisher skip building messages nobody reads (the seq then does not advance).
        """
        return bool(self._subs.get(channel if account is None else (channel, account)))

    # -- configuration -------------------------------------------------------------------------

    def register_snapshot(self, prefix: str, provider: Callable[[str], object]) -> None:
        """Send ``provider(channel_name)`` as a snapshot on subscribing to ``<prefix>:...``."""
        if prefix not in PUBLIC_PREFIXES:
            raise ValueError(f"unknown public channel prefix {prefix!r}")
        self._snapshots[prefix] = provider

    def register_private_snapshot(self, channel: str, provider: Callable[[str], object]) -> None:
        """Send ``provider(account_id)`` as a snapshot on subscribing to private ``channel``."""
        if channel not in PRIVATE_CHANNELS:
            raise ValueError(f"unknown private channel {channel!r}")
        self._private_snapshots[channel] = provider

    # -- publishing (synchronous, never blocks) ------------------------------------------------

    def publish(self, channel: str, data: object, ts: int, *, account: str | None = None) -> int:
        """Sequence ``data`` on ``channel`` (per ``account`` if private), fan it out, return seq.

        Encodes once and only if someone is subscribed; queues that are full get their client
        dropped (4008). Raises ``ValueError`` if ``account`` is given for a public channel or
        missing for a private one.
        """
        key: Key
        if account is None:
            if channel in PRIVATE_CHANNELS:
                raise ValueError(f"private channel {channel!r} needs an account")
            key = channel
        else:
            if channel not in PRIVATE_CHANNELS:
                raise ValueError(f"{channel!r} is not a private channel")
            key = (channel, account)
        seq = self._seqs.get(key, 0) + 1
        subs = self._subs.get(key)
        payload: Payload | None = None
        if subs:  # encode before committing the seq, so a bad ``data`` leaves no gap
            raw = orjson.dumps(
                {"channel": channel, "seq": seq, "ts": ts, "type": "update", "data": data}
            )
            payload = raw if self._binary else raw.decode()
        self._seqs[key] = seq
        self._published += 1
        if subs and payload is not None:
            self._fan_out(subs, payload, count=True)
        return seq

    def heartbeat(self) -> None:
        """Queue ``{"op": "heartbeat", "ts": ...}`` to every client (the heartbeat loop's tick)."""
        if self._clients:
            self._fan_out(self._clients, self._encode({"op": "heartbeat", "ts": self.clock()}))

    def send_control(self, client: Client, message: dict[str, Any]) -> bool:
        """Queue a control reply (``{"op": ...}``) to one client, behind what is already queued.

        Returns False if the client is closed or was just dropped because its queue is full.
        """
        if client._closing:
            return False
        return self._offer(client, self._encode(message))

    def _encode(self, message: dict[str, Any]) -> Payload:
        raw = orjson.dumps(message)
        return raw if self._binary else raw.decode()

    def _fan_out(self, clients: Iterable[Client], payload: Payload, *, count: bool = False) -> None:
        if count and self.fault is not None:
            self._fan_out_faulty(clients, payload, self.fault)
            return
        max_queue = self.max_queue
        full: list[Client] | None = None
        sent = 0
        for client in clients:
            queue = client._queue
            # Nothing queued and the writer parked: hand it to the socket now (same order, no
            # task switch). A socket that cannot take it at once gets it queued below.
            write_now = client.write_now
            if (
                write_now is not None
                and not queue
                and client._wakeup is not None
                and write_now(payload)
            ):
                sent += 1
                continue
            if len(queue) >= max_queue:
                if full is None:
                    full = []
                full.append(client)
                continue
            queue.append(payload)
            sent += 1
            wakeup = client._wakeup
            if wakeup is not None:
                client._wakeup = None
                if not wakeup.done():
                    wakeup.set_result(None)
        if count:
            self._delivered += sent
        if full is not None:
            for client in full:
                self._drop_slow(client)

    def _fan_out_faulty(
        self,
        clients: Iterable[Client],
        payload: Payload,
        fault: Callable[[int, Payload], list[Payload] | None],
    ) -> None:
        for client in list(clients):
            out = fault(client.id, payload)
            if out is None:
                self._close(client, 4009, "injected fault: disconnect")
                continue
            for item in out:
                if self._offer(client, item):
                    self._delivered += 1

    def disconnect(self, choose: Callable[[Client], bool], code: int, reason: str) -> int:
        """Close every client ``choose`` picks (fault injection); returns how many."""
        picked = [c for c in sorted(self._clients, key=lambda c: c.id) if choose(c)]
        for client in picked:
            self._close(client, code, reason)
        return len(picked)

    def _offer(self, client: Client, payload: Payload) -> bool:
        if len(client._queue) >= self.max_queue:
            self._drop_slow(client)
            return False
        client._queue.append(payload)
        wakeup = client._wakeup
        if wakeup is not None:
            client._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        return True

    def _drop_slow(self, client: Client) -> None:
        if client._closing:
            return
        self._dropped_slow += 1
        log.info("dropping %r: %s", client, self._slow_reason)
        self._close(client, CLOSE_SLOW_CONSUMER, self._slow_reason)

    # -- clients -------------------------------------------------------------------------------

    def add_client(self, conn: Connection) -> Client:
        """Register a connection and start its writer task (needs a running event loop)."""
        if self._stopped:
            raise RuntimeError("the hub is stopped")
        self._next_id += 1
        client = Client(self._next_id, conn)
        client._writer = asyncio.get_running_loop().create_task(
            self._write_loop(client), name=f"hub-writer-{client.id}"
        )
        self._clients.add(client)
        return client

    async def remove_client(self, client: Client) -> None:
        """Forget a client whose socket is gone (no close frame); wait for its writer to end."""
        self._close(client, None, "")
        await client.wait_closed()

    def login(self, client: Client, account: str) -> None:
        """Bind ``client`` to ``account``; a connection serves one account for its lifetime."""
        if client.account is not None and client.account != account:
            raise ChannelError(
                ErrorCode.BAD_REQUEST,
                f"already logged in as {client.account}; open a new connection for another",
            )
        client.account = account

    def subscribe(self, client: Client, channels: Iterable[str]) -> list[str]:
        """Subscribe to every channel or none; queue the ``subscribed`` reply, then snapshots.

        Raises :class:`ChannelError` (``UNKNOWN_CHANNEL``, ``LOGIN_REQUIRED``,
        ``TOO_MANY_SUBSCRIPTIONS``) without changing anything. Subscribing again to a channel
        only sends a fresh snapshot (a way to resync). Returns the channels, deduplicated.
        """
        if client._closing:
            raise ChannelError(ErrorCode.BAD_REQUEST, "connection is closing")
        names = list(dict.fromkeys(channels))
        keys = [self._key(client, name) for name in names]
        new = sum(1 for name in names if name not in client._keys)
        if len(client._keys) + new > self.max_subscriptions:
            raise ChannelError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.max_subscriptions} subscriptions per connection "
                f"({len(client._keys)} held, {new} requested)",
            )
        # Snapshots are taken and encoded before anything changes: a provider that raises leaves
        # the client as it was. No await in between, so no publish can slip past a snapshot.
        snapshots: list[Payload] = []
        ts = self.clock()
        for name, key in zip(names, keys, strict=True):
            snapshot = self._snapshot(client, name)
            if snapshot is not None:
                message = {
                    "channel": name,
                    "seq": self._seqs.get(key, 0),
                    "ts": ts,
                    "type": "snapshot",
                    "data": snapshot(),
                }
                snapshots.append(self._encode(message))
        if not self.send_control(client, {"op": "subscribed", "channels": names}):
            return names
        for name, key in zip(names, keys, strict=True):
            client._keys[name] = key
            self._subs.setdefault(key, set()).add(client)
        for payload in snapshots:
            if not self._offer(client, payload):
                break
            self._delivered += 1
        return names

    def unsubscribe(self, client: Client, channels: Iterable[str]) -> list[str]:
        """Stop the given channels (names not subscribed are ignored); returns the names."""
        names = list(dict.fromkeys(channels))
        for name in names:
            key = client._keys.pop(name, None)
            if key is not None:
                self._unlink(client, key)
        return names

    def _key(self, client: Client, name: str) -> Key:
        if name in PRIVATE_CHANNELS:
            if client.account is None:
                raise ChannelError(ErrorCode.LOGIN_REQUIRED, f"log in to subscribe to {name!r}")
            return (name, client.account)
        prefix, sep, rest = name.partition(":")
        if (
            not sep
            or not rest
            or prefix not in PUBLIC_PREFIXES
            or (self._is_valid is not None and not self._is_valid(name))
        ):
            raise ChannelError(ErrorCode.UNKNOWN_CHANNEL, f"unknown channel {name!r}")
        return name

    def _snapshot(self, client: Client, name: str) -> Callable[[], object] | None:
        if name in PRIVATE_CHANNELS:
            private = self._private_snapshots.get(name)
            account = client.account
            if private is None or account is None:
                return None
            return lambda: private(account)
        public = self._snapshots.get(name.partition(":")[0])
        if public is None:
            return None
        return lambda: public(name)

    def _unlink(self, client: Client, key: Key) -> None:
        subs = self._subs.get(key)
        if subs is not None:
            subs.discard(client)
            if not subs:
                del self._subs[key]

    def _close(self, client: Client, code: int | None, reason: str) -> None:
        """Detach now (synchronously), then close the socket in a task unless ``code`` is None."""
        if client._closing:
            return
        client._closing = True
        self._clients.discard(client)
        for key in client._keys.values():
            self._unlink(client, key)
        client._keys.clear()
        client._queue.clear()
        writer = client._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
        task = asyncio.get_running_loop().create_task(self._finish(client, code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _finish(self, client: Client, code: int | None, reason: str) -> None:
        try:
            writer = client._writer
            if writer is not None and writer is not asyncio.current_task():
                await asyncio.wait((writer,))
            if code is not None:
                try:
                    async with asyncio.timeout(self.close_timeout_s):
                        await client.conn.close(code, reason)
                except TimeoutError:
                    log.info("%r: close frame not sent within %ss", client, self.close_timeout_s)
                except Exception as exc:  # the peer may already be gone
                    log.debug("%r: close failed: %r", client, exc)
        finally:
            client._done.set()

    async def _write_loop(self, client: Client) -> None:
        queue = client._queue
        conn = client.conn
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Drain everything queued; a send only suspends when the socket pushes back.
                while queue:
                    payload = queue.popleft()
                    if isinstance(payload, str):
                        await conn.send_text(payload)
                    else:
                        await conn.send_bytes(payload)
                wakeup: asyncio.Future[None] = loop.create_future()
                client._wakeup = wakeup
                await wakeup
        except Exception as exc:  # the socket failed: the client is gone
            log.debug("%r: send failed: %r", client, exc)
            self._close(client, None, "")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the heartbeat loop (if ``heartbeat_s``); idempotent."""
        if self._stopped:
            raise RuntimeError("the hub is stopped")
        if self._heartbeat_task is None and self.heartbeat_s:
            self._heartbeat_task = asyncio.get_running_loop().create_task(
                self._heartbeat_loop(self.heartbeat_s), name="hub-heartbeat"
            )

    async def stop(self) -> None:
        """Close every client with 1001, stop the heartbeat, and wait for all hub tasks."""
        self._stopped = True
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait((task,))
        for client in list(self._clients):
            self._close(client, CLOSE_GOING_AWAY, "server shutting down")
        while self._closers:
            await asyncio.wait(list(self._closers))

    async def _heartbeat_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.heartbeat()

"""The fan-out hub over in-memory connections: seqs, isolation, snapshots, slow consumers."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from sandbox.server.hub import (
    CLOSE_GOING_AWAY,
    CLOSE_SLOW_CONSUMER,
    ChannelError,
    Client,
    ErrorCode,
    Hub,
)

TIMEOUT = 2.0
TS = 1_700_000_000_000


class FakeConn:
    """An in-memory connection; clearing ``gate`` stalls every send (a reader that stopped)."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.raw: list[str | bytes] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.close_gate = asyncio.Event()
        self.close_gate.set()
        self.closed: tuple[int, str] | None = None
        self.fail_sends = False
        self._changed = asyncio.Condition()

    async def send_text(self, data: str) -> None:
        await self._deliver(data)

    async def send_bytes(self, data: bytes) -> None:
        await self._deliver(data)

    async def _deliver(self, data: str | bytes) -> None:
        await self.gate.wait()
        if self.fail_sends:
            raise ConnectionResetError("peer went away")
        async with self._changed:
            self.raw.append(data)
            self.frames.append(orjson.loads(data))
            self._changed.notify_all()

    async def close(self, code: int, reason: str) -> None:
        await self.close_gate.wait()
        async with self._changed:
            self.closed = (code, reason)
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[FakeConn], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), TIMEOUT)

    async def wait_frames(self, n: int) -> list[dict[str, Any]]:
        await self.wait_until(lambda c: len(c.frames) >= n)
        return self.frames

    def updates(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.frames
            if f.get("type") == "update" and (channel is None or f["channel"] == channel)
        ]


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    h = Hub(heartbeat_s=None, clock=lambda: TS)
    try:
        yield h
    finally:
        await h.stop()


def connect(hub: Hub, account: str | None = None) -> tuple[Client, FakeConn]:
    conn = FakeConn()
    client = hub.add_client(conn)
    if account is not None:
        hub.login(client, account)
    return client, conn


async def test_seq_is_gapless_per_channel(hub: Hub) -> None:
    client, conn = connect(hub)
    hub.subscribe(client, ["book:BTC-PERP", "trades:BTC-PERP", "ticker:ETH-PERP"])
    expected = {"book:BTC-PERP": 0, "trades:BTC-PERP": 0, "ticker:ETH-PERP": 0}
    for i in range(30):
        channel = list(expected)[i % 3 if i % 4 else 0]
        expected[channel] += 1
        assert hub.publish(channel, {"i": i}, TS + i) == expected[channel]
    await conn.wait_frames(1 + 30)
    assert conn.frames[0] == {"op": "subscribed", "channels": list(expected)}
    for channel, last in expected.items():
        got = conn.updates(channel)
        assert [f["seq"] for f in got] == list(range(1, last + 1))
        assert hub.seq(channel) == last
    first = conn.updates()[0]
    assert first == {
        "channel": "book:BTC-PERP",
        "seq": 1,
        "ts": TS,
        "type": "update",
        "data": {"i": 0},
    }
    assert [f["data"]["i"] for f in conn.updates()] == list(range(30))  # publish order kept


async def test_seq_advances_without_subscribers(hub: Hub) -> None:
    assert hub.seq("trades:BTC-PERP") == 0
    assert not hub.has_subscribers("trades:BTC-PERP")
    for _ in range(3):
        hub.publish("trades:BTC-PERP", [], TS)
    client, conn = connect(hub)
    hub.subscribe(client, ["trades:BTC-PERP"])
    assert hub.has_subscribers("trades:BTC-PERP")
    assert hub.publish("trades:BTC-PERP", ["x"], TS) == 4
    frames = await conn.wait_frames(2)
    assert frames[1]["seq"] == 4
    assert hub.stats.published == 4
    assert hub.stats.delivered == 1


async def test_private_streams_are_per_account_and_isolated(hub: Hub) -> None:
    a, conn_a = connect(hub, "acct-A")
    b, conn_b = connect(hub, "acct-B")
    hub.subscribe(a, ["orders", "fills"])
    hub.subscribe(b, ["orders"])
    assert hub.has_subscribers("orders", "acct-A")
    assert not hub.has_subscribers("fills", "acct-B")
    for i in range(10):
        hub.publish("orders", {"owner": "A", "i": i}, TS, account="acct-A")
        if i % 2:
            hub.publish("orders", {"owner": "B", "i": i}, TS, account="acct-B")
            hub.publish("fills", {"owner": "B", "i": i}, TS, account="acct-B")
    hub.publish("fills", {"owner": "A"}, TS, account="acct-A")
    await conn_a.wait_frames(1 + 11)
    await conn_b.wait_frames(1 + 5)
    assert {f["data"]["owner"] for f in conn_a.updates()} == {"A"}
    assert {f["data"]["owner"] for f in conn_b.updates()} == {"B"}
    assert [f["seq"] for f in conn_a.updates("orders")] == list(range(1, 11))
    assert [f["seq"] for f in conn_a.updates("fills")] == [1]
    assert [f["seq"] for f in conn_b.updates("orders")] == list(range(1, 6))
    assert hub.seq("orders", "acct-A") == 10
    assert hub.seq("orders", "acct-B") == 5
    assert hub.seq("fills", "acct-B") == 5  # published with nobody listening: seq still moves
    assert hub.seq("orders") == 0


async def test_private_channel_needs_login(hub: Hub) -> None:
    client, _ = connect(hub)
    with pytest.raises(ChannelError) as err:
        hub.subscribe(client, ["book:BTC-PERP", "orders"])
    assert err.value.code == ErrorCode.LOGIN_REQUIRED
    assert client.channels == frozenset()  # all or nothing
    hub.login(client, "acct-A")
    hub.login(client, "acct-A")  # idempotent
    with pytest.raises(ChannelError) as err:
        hub.login(client, "acct-B")
    assert err.value.code == ErrorCode.BAD_REQUEST
    hub.subscribe(client, ["orders"])
    assert client.channels == {"orders"}


@pytest.mark.parametrize(
    "name", ["book", "book:", "nope:BTC-PERP", "BOOK:BTC-PERP", "", "orders:acct-A", "book:DOGE"]
)
async def test_unknown_channels_are_refused(name: str) -> None:
    hub = Hub(heartbeat_s=None, is_valid_channel=lambda n: not n.endswith(":DOGE"))
    try:
        client, conn = connect(hub)
        with pytest.raises(ChannelError) as err:
            hub.subscribe(client, ["ticker:BTC-PERP", name])
        assert err.value.code == ErrorCode.UNKNOWN_CHANNEL
        assert client.channels == frozenset()
        assert conn.frames == []
    finally:
        await hub.stop()


async def test_subscription_limit_per_connection() -> None:
    hub = Hub(heartbeat_s=None, max_subscriptions=3)
    try:
        client, _ = connect(hub)
        hub.subscribe(client, ["book:A", "book:B"])
        with pytest.raises(ChannelError) as err:
            hub.subscribe(client, ["book:C", "book:D"])
        assert err.value.code == ErrorCode.TOO_MANY_SUBSCRIPTIONS
        assert client.channels == {"book:A", "book:B"}
        hub.subscribe(client, ["book:A", "book:C", "book:C"])  # re-subscribing costs nothing
        assert client.channels == {"book:A", "book:B", "book:C"}
    finally:
        await hub.stop()


async def test_snapshot_then_updates_with_consistent_seq(hub: Hub) -> None:
    book: dict[str, list[int]] = {"bids": [100]}
    hub.register_snapshot("book", lambda channel: {"channel": channel, **book})
    hub.register_private_snapshot("positions", lambda account: {"account": account})
    for price in (101, 102):
        book["bids"].append(price)
        hub.publish("book:BTC-PERP", {"add": price}, TS)
    client, conn = connect(hub, "acct-A")
    hub.subscribe(client, ["book:BTC-PERP", "positions", "trades:BTC-PERP"])
    book["bids"].append(103)
    hub.publish("book:BTC-PERP", {"add": 103}, TS + 1)
    frames = await conn.wait_frames(4)
    assert frames == [
        {"op": "subscribed", "channels": ["book:BTC-PERP", "positions", "trades:BTC-PERP"]},
        {
            "channel": "book:BTC-PERP",
            "seq": 2,
            "ts": TS,
            "type": "snapshot",
            "data": {"channel": "book:BTC-PERP", "bids": [100, 101, 102]},
        },
        {
            "channel": "positions",
            "seq": 0,
            "ts": TS,
            "type": "snapshot",
            "data": {"account": "acct-A"},
        },
        {
            "channel": "book:BTC-PERP",
            "seq": 3,
            "ts": TS + 1,
            "type": "update",
            "data": {"add": 103},
        },
    ]
    hub.subscribe(client, ["book:BTC-PERP"])  # again: a fresh snapshot to resync from
    frames = await conn.wait_frames(6)
    assert frames[5]["type"] == "snapshot"
    assert frames[5]["seq"] == 3
    assert frames[5]["data"]["bids"] == [100, 101, 102, 103]


async def test_failing_snapshot_changes_nothing(hub: Hub) -> None:
    def broken(channel: str) -> object:
        raise KeyError(channel)

    hub.register_snapshot("book", broken)
    client, conn = connect(hub)
    with pytest.raises(KeyError):
        hub.subscribe(client, ["trades:X", "book:X"])
    assert client.channels == frozenset()
    assert not hub.has_subscribers("trades:X")
    hub.heartbeat()
    assert await conn.wait_frames(1) == [{"op": "heartbeat", "ts": TS}]  # no "subscribed"


async def test_slow_consumer_is_dropped_and_others_get_everything() -> None:
    assert not inspect.iscoroutinefunction(Hub.publish)
    hub = Hub(heartbeat_s=None, max_queue=4)
    try:
        fast = [connect(hub) for _ in range(3)]
        slow_client, slow = connect(hub)
        slow.gate.clear()  # stops reading: its writer blocks on the first send
        for client, _ in [*fast, (slow_client, slow)]:
            hub.subscribe(client, ["trades:BTC-PERP"])
        for _, conn in fast:
            await conn.wait_frames(1)
        dropped_at = None
        for i in range(1, 21):
            assert hub.publish("trades:BTC-PERP", {"i": i}, TS) == i  # returns; never awaits
            if dropped_at is None and slow_client.closed:
                dropped_at = i
            for _, conn in fast:  # let the healthy readers keep up (no timing assumptions)
                await conn.wait_frames(1 + i)
        # One "subscribed" in flight + 4 queued; the publish that finds the queue full drops it.
        assert dropped_at == 5
        await asyncio.wait_for(slow_client.wait_closed(), TIMEOUT)
        assert slow.closed == (CLOSE_SLOW_CONSUMER, "slow consumer: queue of 4 messages full")
        assert slow_client.pending == 0  # pending messages discarded
        assert not slow_client.channels
        slow.gate.set()
        await asyncio.sleep(0)
        assert slow.frames == []  # nothing more is written to a dropped client
        for _, conn in fast:
            assert [f["seq"] for f in conn.updates()] == list(range(1, 21))
        stats = hub.stats
        assert stats.dropped_slow == 1
        assert stats.clients == 3
        assert stats.published == 20
        assert stats.delivered == 3 * 20 + 4
    finally:
        await hub.stop()


async def test_close_of_a_stalled_peer_times_out() -> None:
    hub = Hub(heartbeat_s=None, max_queue=1, close_timeout_s=0.01)
    try:
        client, conn = connect(hub)
        conn.gate.clear()
        conn.close_gate.clear()  # the close frame cannot be written either
        hub.subscribe(client, ["book:X"])
        hub.publish("book:X", 1, TS)  # queued behind the stalled "subscribed" reply
        hub.publish("book:X", 2, TS)  # full
        assert client.closed
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert conn.closed is None
        assert hub.stats.clients == 0
    finally:
        await hub.stop()


async def test_unsubscribe(hub: Hub) -> None:
    client, conn = connect(hub)
    hub.subscribe(client, ["ticker:BTC-PERP", "ticker:ETH-PERP"])
    hub.publish("ticker:BTC-PERP", 1, TS)
    assert hub.unsubscribe(client, ["ticker:BTC-PERP", "book:NOT-SUBSCRIBED"]) == [
        "ticker:BTC-PERP",
        "book:NOT-SUBSCRIBED",
    ]
    assert not hub.has_subscribers("ticker:BTC-PERP")
    hub.publish("ticker:BTC-PERP", 2, TS)
    hub.publish("ticker:ETH-PERP", 3, TS)
    await conn.wait_frames(3)
    assert [(f["channel"], f["seq"], f["data"]) for f in conn.updates()] == [
        ("ticker:BTC-PERP", 1, 1),
        ("ticker:ETH-PERP", 1, 3),
    ]
    assert client.channels == {"ticker:ETH-PERP"}


async def test_heartbeat_loop() -> None:
    hub = Hub(heartbeat_s=0.001, clock=lambda: 42)
    try:
        _, conn = connect(hub)
        await hub.start()
        await hub.start()  # idempotent
        await conn.wait_until(lambda c: len(c.frames) >= 2)
        assert conn.frames[:2] == [{"op": "heartbeat", "ts": 42}] * 2
    finally:
        await hub.stop()


async def test_heartbeat_tick_and_control_replies(hub: Hub) -> None:
    client, conn = connect(hub)
    hub.heartbeat()
    assert hub.send_control(client, {"op": "pong", "ts": 7})
    frames = await conn.wait_frames(2)
    assert frames == [{"op": "heartbeat", "ts": TS}, {"op": "pong", "ts": 7}]
    assert isinstance(conn.raw[0], str)  # text frames by default


async def test_binary_frames() -> None:
    hub = Hub(heartbeat_s=None, binary=True)
    try:
        client, conn = connect(hub)
        hub.subscribe(client, ["book:X"])
        hub.publish("book:X", {"a": 1}, TS)
        await conn.wait_frames(2)
        assert all(isinstance(raw, bytes) for raw in conn.raw)
        assert conn.frames[1]["data"] == {"a": 1}
    finally:
        await hub.stop()


async def test_stop_closes_everyone_and_ends_tasks() -> None:
    hub = Hub(heartbeat_s=10.0, close_timeout_s=TIMEOUT)
    await hub.start()
    clients = [connect(hub) for _ in range(3)]
    clients[0][1].gate.clear()
    for client, _ in clients:
        hub.subscribe(client, ["funding:BTC-PERP"])
    hub.publish("funding:BTC-PERP", {}, TS)
    tasks_before = asyncio.all_tasks()
    await hub.stop()
    for client, conn in clients:
        assert conn.closed == (CLOSE_GOING_AWAY, "server shutting down")
        assert client.closed
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    assert hub.stats.clients == 0
    assert not hub.has_subscribers("funding:BTC-PERP")
    leftover = {t for t in tasks_before if t.get_name().startswith("hub-") and not t.done()}
    assert leftover == set()
    with pytest.raises(RuntimeError):
        hub.add_client(FakeConn())
    with pytest.raises(RuntimeError):
        await hub.start()
    assert hub.publish("funding:BTC-PERP", {}, TS) == 2  # still sequences; nobody to send to
    await hub.stop()  # idempotent


async def test_remove_client_sends_no_close(hub: Hub) -> None:
    client, conn = connect(hub, "acct-A")
    hub.subscribe(client, ["orders", "book:X"])
    await hub.remove_client(client)
    assert conn.closed is None
    assert hub.stats.clients == 0
    assert not hub.has_subscribers("orders", "acct-A")
    assert not hub.send_control(client, {"op": "pong"})
    with pytest.raises(ChannelError):
        hub.subscribe(client, ["book:X"])


async def test_failed_send_detaches_client(hub: Hub) -> None:
    client, conn = connect(hub)
    conn.fail_sends = True
    hub.subscribe(client, ["book:X"])
    await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    assert hub.stats.clients == 0
    assert not hub.has_subscribers("book:X")


async def test_publish_checks_channel_kind_and_leaves_no_gap_on_bad_data(hub: Hub) -> None:
    with pytest.raises(ValueError):
        hub.publish("orders", {}, TS)
    with pytest.raises(ValueError):
        hub.publish("book:X", {}, TS, account="acct-A")
    client, _ = connect(hub)
    hub.subscribe(client, ["book:X"])
    with pytest.raises(TypeError):
        hub.publish("book:X", object(), TS)
    assert hub.seq("book:X") == 0
    assert hub.publish("book:X", {}, TS) == 1


async def test_registering_snapshots_checks_names(hub: Hub) -> None:
    with pytest.raises(ValueError):
        hub.register_snapshot("orders", lambda name: None)
    with pytest.raises(ValueError):
        hub.register_private_snapshot("book", lambda account: None)
    with pytest.raises(ValueError):
        Hub(max_queue=0)


class DirectConn(FakeConn):
    """A connection with the synchronous ``write_now`` path; ``accepting`` is its socket's room."""

    def __init__(self) -> None:
        super().__init__()
        self.accepting = True
        self.direct = 0

    def write_now(self, data: str | bytes) -> bool:
        if not self.accepting:
            return False
        self.direct += 1
        self.raw.append(data)
        self.frames.append(orjson.loads(data))
        return True


async def test_direct_writes_keep_order_with_queued_ones(hub: Hub) -> None:
    """A message goes straight to the socket only when nothing is queued and the writer is
    idle; once the socket pushes back, later messages queue behind the earlier ones."""
    conn = DirectConn()
    client = hub.add_client(conn)
    hub.subscribe(client, ["trades:BTC-PERP"])
    await conn.wait_frames(1)  # the reply, through the writer task
    for _ in range(100):  # let the writer park (bounded, no wall clock)
        if client._wakeup is not None:
            break
        await asyncio.sleep(0)
    hub.publish("trades:BTC-PERP", {"n": 1}, TS)
    assert conn.direct == 1  # written during publish, no task switch
    conn.accepting = False
    conn.gate.clear()  # the writer task stalls too
    for n in (2, 3):
        hub.publish("trades:BTC-PERP", {"n": n}, TS)
    conn.accepting = True
    hub.publish("trades:BTC-PERP", {"n": 4}, TS)  # must not overtake 2 and 3
    assert conn.direct == 1 and client.pending >= 2
    conn.gate.set()
    await conn.wait_until(lambda c: len(c.updates()) == 4)
    assert [f["data"]["n"] for f in conn.updates()] == [1, 2, 3, 4]
    assert [f["seq"] for f in conn.updates()] == [1, 2, 3, 4]

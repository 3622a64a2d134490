"""Binance-style WebSocket streams: market data, the user-data stream, and listen keys.

:class:`BinanceStreams` is an engine event sink (appended to ``state.core.sinks``). After every
command it works out what changed and pushes Binance-shaped events to the connections that
subscribed: ``<symbol>@depth`` diffs stamped with a per-market update id (``U``/``u``/``pu``; the
same counter ``GET /fapi/v1/depth`` reports as ``lastUpdateId``), partial books
``<symbol>@depth<N>``, ``@aggTrade``/``@trade``, ``@markPrice`` (and ``!markPrice@arr``),
``@bookTicker``; and, per account, ``ORDER_TRADE_UPDATE``, ``ACCOUNT_UPDATE``,
``ACCOUNT_CONFIG_UPDATE`` and ``MARGIN_CALL``. Nothing is built for streams nobody listens to;
the update id advances on every command that touched a market's book either way.

Connections live under ``/fstream``: ``/ws``, ``/ws/<streams or listenKey>``,
``/stream?streams=a/b`` (wrapped as ``{"stream", "data"}``) and the same under ``/public``,
``/market`` and ``/private`` (``?listenKey=``), as ccxt and python-binance build them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from sandbox.engine import Instrument
from sandbox.engine.book import Order
from sandbox.engine.events import (
    Deposited,
    Event,
    FundingPaid,
    LeverageChanged,
    LiquidationFill,
    MarginCall,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    PositionTransferred,
    PricesUpdated,
    Trade,
    Withdrawn,
)

from .. import wire
from ..core import SandboxCore
from ..faults import FAULT_CLOSE_CODE, WsFault
from .codec import (
    ASSET,
    OrderQuotes,
    Symbols,
    avg_price,
    client_id_of,
    entry_price,
    tif_name,
    to_binance,
)
from .listen_keys import ListenKeys

MAX_STREAMS = 200  # per connection, as Binance's USDⓈ-M limit
QUEUE_LIMIT = 10_000  # messages waiting for one connection before it is dropped as too slow
EXPIRY_CHECK_S = 1.0  # how often an idle private connection checks its listen key

_DEPTH = re.compile(r"^([a-z0-9]+)@depth(5|10|20)?(?:@(?:0|100|250|500)ms)?$")
_SIMPLE = re.compile(r"^([a-z0-9]+)@(aggtrade|trade|bookticker|markprice)(?:@1s)?$")
_MARK_ARR = re.compile(r"^!markprice@arr(?:@1s)?$")

StreamKey = tuple[str, str, int]  # (kind, market, depth levels)
_BOOK_EVENTS = frozenset({Trade, OrderAccepted, OrderCanceled, OrderAmended})


# Connection ids start here, clear of the hub's client ids (fault plans key state by id).
CONN_ID_BASE = 1 << 40


class Conn:
    """One WebSocket connection: its subscriptions and its outbound queue."""

    def __init__(self, ws: WebSocket, combined: bool, private_only: bool, conn_id: int = 0) -> None:
        self.id = conn_id
        self.ws = ws
        self.combined = combined
        self.private_only = private_only
        self.subs: dict[str, StreamKey] = {}  # name as subscribed -> key
        self.account: str | None = None
        self.listen_key: str | None = None
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_LIMIT)
        self.dropped = False
        self.close_with: tuple[int, str] | None = None  # set by close(): the sender closes

    def close(self, code: int, reason: str) -> None:
        """Have the sender close the socket with ``code`` once what is queued has gone out."""
        if self.close_with is None:
            self.close_with = (code, reason)
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:
                self.dropped = True

    def push(self, data: bytes) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped = True  # the sender closes the socket

    def encode(self, stream: str, payload: Any) -> bytes:
        if self.combined:
            return orjson.dumps({"stream": stream, "data": payload})
        return orjson.dumps(payload)

    def send_event(self, stream: str, payload: Any) -> None:
        self.push(self.encode(stream, payload))


def parse_stream(name: str, symbols: Symbols) -> StreamKey | None:
    """The key of a stream name (case-insensitive), or None if the sandbox does not serve it."""
    low = name.lower()
    if _MARK_ARR.match(low):
        return ("markprice_arr", "", 0)
    m = _DEPTH.match(low)
    if m:
        sym = symbols.ours(m.group(1))
        if sym is None:
            return None
        return ("partial", sym, int(m.group(2))) if m.group(2) else ("depth", sym, 0)
    m = _SIMPLE.match(low)
    if m:
        sym = symbols.ours(m.group(1))
        return None if sym is None else (m.group(2), sym, 0)
    return None


class BinanceStreams:
    """The engine sink and connection registry behind the Binance-style WebSocket API."""

    def __init__(
        self, core: SandboxCore, quotes: OrderQuotes, keys: ListenKeys, symbols: Symbols
    ) -> None:
        self.core = core
        self.quotes = quotes
        self.listen_keys = keys
        self.symbols = symbols
        self.update_id: dict[str, int] = {s: 0 for s in core.instruments}
        # The top of book last sent on ``@bookTicker`` (kept only while someone listens).
        self._top: dict[str, tuple[int | None, int, int | None, int]] = {}
        self.subs: dict[StreamKey, dict[Conn, str]] = {}
        self.private: dict[str, set[Conn]] = {}
        self.conns: set[Conn] = set()
        self.gap_next: set[str] = set()  # markets whose next depth event skips an id (faults)
        self.fault: WsFault | None = None  # set by the fault plan while it plans WS faults
        self._next_id = CONN_ID_BASE

    # -- subscriptions ---------------------------------------------------------------------
    def subscribe(self, conn: Conn, names: list[str]) -> str | None:
        """Subscribe ``conn`` to stream names; an error message if one is invalid."""
        keys: list[tuple[str, StreamKey]] = []
        for name in names:
            if not isinstance(name, str):
                return "Invalid request: stream names are strings"
            key = parse_stream(name, self.symbols)
            if key is None:
                return f"Invalid request: unknown stream {name[:64]!r}"
            keys.append((name, key))
        if len(conn.subs) + len(keys) > MAX_STREAMS:
            return f"Invalid request: at most {MAX_STREAMS} streams per connection"
        for name, key in keys:
            conn.subs[name] = key
            self.subs.setdefault(key, {})[conn] = name
        return None

    def unsubscribe(self, conn: Conn, names: list[str]) -> None:
        for name in names:
            key = conn.subs.pop(name, None) if isinstance(name, str) else None
            if key is not None:
                listeners = self.subs.get(key)
                if listeners is not None:
                    listeners.pop(conn, None)
                    if not listeners:
                        del self.subs[key]

    def attach(self, conn: Conn, account: str, key: str) -> None:
        conn.account = account
        conn.listen_key = key
        self.private.setdefault(account, set()).add(conn)

    def detach(self, conn: Conn) -> None:
        if conn.account is not None:
            listeners = self.private.get(conn.account)
            if listeners is not None:
                listeners.discard(conn)
                if not listeners:
                    del self.private[conn.account]
        conn.account = None

    def remove(self, conn: Conn) -> None:
        self.unsubscribe(conn, list(conn.subs))
        self.detach(conn)
        self.conns.discard(conn)

    def check_expiry(self, conn: Conn) -> bool:
        """False (after telling the client) once the connection's listen key has expired."""
        key = conn.listen_key
        if key is None or conn.account is None:
            return True
        if self.listen_keys.account_of(key) == conn.account:
            return True
        now = self.listen_keys.now_ms()
        conn.send_event(key, {"e": "listenKeyExpired", "E": now, "listenKey": key})
        self.detach(conn)
        return False

    # -- the sink ----------------------------------------------------------------------------
    def __call__(self, events: list[Event]) -> None:
        subs = self.subs
        private = self.private
        if not subs and not private:  # nobody listens: only keep the update ids exact
            seen: dict[str, None] = {}
            for ev in events:
                if type(ev) in _BOOK_EVENTS:
                    seen[ev.stream] = None  # type: ignore[attr-defined]
            for sym in seen:
                self._next_update_id(sym)
            return
        touched: dict[str, tuple[set[int], set[int]]] = {}
        changed: dict[str, dict[str, None]] = {}  # account -> markets whose position moved
        reasons: dict[str, str] = {}
        deposits: dict[str, int] = {}
        progress: dict[int, list[int]] = {}  # order id -> [filled lots, quote] before this fill
        ts = events[-1].ts
        if private:
            self._seed_progress(events, progress)
        for ev in events:
            kind = type(ev)
            if kind is Trade:
                assert isinstance(ev, Trade)
                sym = ev.stream
                t = touched.setdefault(sym, (set(), set()))
                (t[0] if ev.taker_side < 0 else t[1]).add(ev.price)
                if ("aggtrade", sym, 0) in subs or ("trade", sym, 0) in subs:
                    self._public_trade(ev)
                if private:
                    for maker in (True, False):
                        acct = ev.maker_account if maker else ev.taker_account
                        if acct in private:
                            self._trade_update(acct, ev, maker, progress)
                            changed.setdefault(acct, {})[sym] = None
            elif kind is OrderAccepted or kind is OrderCanceled:
                assert isinstance(ev, (OrderAccepted, OrderCanceled))
                t = touched.setdefault(ev.stream, (set(), set()))
                (t[0] if ev.side > 0 else t[1]).add(ev.price)
                if ev.account in private:
                    self._order_update(ev.account, ev.order_id, ev, ev.ts)
            elif kind is OrderAmended:
                assert isinstance(ev, OrderAmended)
                t = touched.setdefault(ev.stream, (set(), set()))
                s = t[0] if ev.side > 0 else t[1]
                s.add(ev.price)
                s.add(ev.old_price)
                if ev.account in private:
                    self._order_update(ev.account, ev.order_id, ev, ev.ts)
            elif kind is PricesUpdated:
                assert isinstance(ev, PricesUpdated)
                self._mark_price(ev)
            elif private:
                self._account_event(ev, changed, reasons, deposits)
        for sym, (bids, asks) in touched.items():
            self._book_changed(sym, bids, asks, ts)
        for acct, markets in changed.items():
            self._account_update(acct, markets, reasons.get(acct, "ORDER"), deposits, ts)

    def _seed_progress(self, events: list[Event], progress: dict[int, list[int]]) -> None:
        """Each tracked order's filled lots and quote before this command's trades."""
        private = self.private
        for ev in events:
            if type(ev) is Trade:
                assert isinstance(ev, Trade)
                for acct, oid in (
                    (ev.maker_account, ev.maker_order_id),
                    (ev.taker_account, ev.taker_order_id),
                ):
                    if acct in private:
                        p = progress.get(oid)
                        if p is None:
                            order = self.core.exchange.get_order(acct, order_id=oid)
                            inst = self.core.instruments[ev.stream]
                            filled = order.filled if order is not None else 0
                            quote = self.quotes.get(inst, oid)
                            p = progress[oid] = [filled, quote]
                        p[0] -= ev.qty
                        p[1] -= ev.price * ev.qty * self.core.instruments[ev.stream].notional_factor

    def _account_event(
        self,
        ev: Event,
        changed: dict[str, dict[str, None]],
        reasons: dict[str, str],
        deposits: dict[str, int],
    ) -> None:
        private = self.private
        kind = type(ev)
        if kind is FundingPaid:
            assert isinstance(ev, FundingPaid)
            if ev.account in private:
                changed.setdefault(ev.account, {})[ev.stream] = None
                reasons[ev.account] = "FUNDING_FEE"
        elif kind is Deposited or kind is Withdrawn:
            assert isinstance(ev, (Deposited, Withdrawn))
            if ev.account in private:
                changed.setdefault(ev.account, {})
                reasons[ev.account] = "DEPOSIT" if kind is Deposited else "WITHDRAW"
                sign = 1 if kind is Deposited else -1
                deposits[ev.account] = deposits.get(ev.account, 0) + sign * ev.amount
        elif kind is PositionTransferred:
            assert isinstance(ev, PositionTransferred)
            for acct in (ev.from_account, ev.to_account):
                if acct in private:
                    changed.setdefault(acct, {})[ev.stream] = None
                    if ev.reason == "adl":
                        reasons[acct] = "ADL"
        elif kind is LiquidationFill:
            assert isinstance(ev, LiquidationFill)
            if ev.account in private:
                changed.setdefault(ev.account, {})[ev.stream] = None
        elif kind is LeverageChanged:
            assert isinstance(ev, LeverageChanged)
            if ev.account in private:
                data = {
                    "e": "ACCOUNT_CONFIG_UPDATE",
                    "E": ev.ts,
                    "T": ev.ts,
                    "ac": {"s": to_binance(ev.stream), "l": ev.leverage},
                }
                self._to_account(ev.account, data)
        elif kind is MarginCall:
            assert isinstance(ev, MarginCall)
            if ev.account in private:
                self._margin_call(ev)

    # -- market data -------------------------------------------------------------------------
    def _public_trade(self, ev: Trade) -> None:
        inst = self.core.instruments[ev.stream]
        bsym = to_binance(ev.stream)
        px, q = wire.price(inst, ev.price), wire.qty(inst, ev.qty)
        buyer_maker = ev.taker_side < 0
        agg = {
            "e": "aggTrade",
            "E": ev.ts,
            "s": bsym,
            "a": ev.trade_id,
            "p": px,
            "q": q,
            "f": ev.trade_id,
            "l": ev.trade_id,
            "T": ev.ts,
            "m": buyer_maker,
        }
        self._publish(("aggtrade", ev.stream, 0), agg)
        trade = {
            "e": "trade",
            "E": ev.ts,
            "T": ev.ts,
            "s": bsym,
            "t": ev.trade_id,
            "p": px,
            "q": q,
            "X": "MARKET",
            "m": buyer_maker,
        }
        self._publish(("trade", ev.stream, 0), trade)

    def mark_price_json(self, sym: str, ts: int) -> dict[str, Any]:
        inst = self.core.instruments[sym]
        p = self.core.exchange.prices(sym)
        return {
            "e": "markPriceUpdate",
            "E": ts,
            "s": to_binance(sym),
            "p": wire.price(inst, p.mark),
            "i": wire.price(inst, p.index),
            "P": wire.price(inst, p.mark),
            "r": wire.rate(p.predicted_funding_rate),
            "T": p.next_funding_ts,
        }

    def _mark_price(self, ev: PricesUpdated) -> None:
        key: StreamKey = ("markprice", ev.stream, 0)
        arr: StreamKey = ("markprice_arr", "", 0)
        if key in self.subs:
            self._publish(key, self.mark_price_json(ev.stream, ev.ts))
        if arr in self.subs:
            self._publish(arr, [self.mark_price_json(s, ev.ts) for s in self.core.instruments])

    def _top_of_book(self, sym: str) -> tuple[int | None, int, int | None, int]:
        book = self.core.exchange.markets[sym].book
        bid, ask = book.bids.best(), book.asks.best()
        return (
            None if bid is None else bid.price,
            0 if bid is None else bid.qty,
            None if ask is None else ask.price,
            0 if ask is None else ask.qty,
        )

    def _next_update_id(self, sym: str) -> tuple[int, int]:
        """Advance the market's depth update id: ``(previous, new)``."""
        prev = self.update_id[sym]
        last = prev + 1
        if self.gap_next and sym in self.gap_next:  # injected gap: an id nobody is sent
            self.gap_next.discard(sym)
            prev += 1
            last += 1
        self.update_id[sym] = last
        return prev, last

    def _book_changed(self, sym: str, bids: set[int], asks: set[int], ts: int) -> None:
        """One depth update for a command that touched the book: every touched level with its
        quantity now ("0": gone). Setting a level to its current quantity is idempotent, so a
        touched level that did not change costs a client nothing, and no mirror is kept."""
        prev, last = self._next_update_id(sym)
        subs = self.subs
        depth_key: StreamKey = ("depth", sym, 0)
        partial = [n for n in (5, 10, 20) if ("partial", sym, n) in subs]
        ticker_key: StreamKey = ("bookticker", sym, 0)
        if not (depth_key in subs or partial or ticker_key in subs):
            return
        book = self.core.exchange.markets[sym].book
        inst = self.core.instruments[sym]
        bsym = to_binance(sym)
        if depth_key in subs:
            self._publish(
                depth_key,
                {
                    "e": "depthUpdate",
                    "E": ts,
                    "T": ts,
                    "s": bsym,
                    "U": last,
                    "u": last,
                    "pu": prev,
                    "b": _touched(bids, book.bids.levels, -1, inst),
                    "a": _touched(asks, book.asks.levels, 1, inst),
                },
            )
        for levels in partial:
            self._publish(
                ("partial", sym, levels),
                {
                    "e": "depthUpdate",
                    "E": ts,
                    "T": ts,
                    "s": bsym,
                    "U": last,
                    "u": last,
                    "pu": prev,
                    "b": _levels(inst, book.bids.depth(levels)),
                    "a": _levels(inst, book.asks.depth(levels)),
                },
            )
        if ticker_key in subs:
            top = self._top_of_book(sym)
            if top != self._top.get(sym):
                self._top[sym] = top
                self._publish(ticker_key, self.book_ticker_json(sym, ts, event=True))

    def book_ticker_json(self, sym: str, ts: int, *, event: bool) -> dict[str, Any]:
        inst = self.core.instruments[sym]
        bid, bq, ask, aq = self._top_of_book(sym)
        data: dict[str, Any] = {
            "u": self.update_id[sym],
            "E": ts,
            "T": ts,
            "s": to_binance(sym),
            "b": "0" if bid is None else wire.price(inst, bid),
            "B": wire.qty(inst, bq),
            "a": "0" if ask is None else wire.price(inst, ask),
            "A": wire.qty(inst, aq),
        }
        return {"e": "bookTicker", **data} if event else data

    def _publish(self, key: StreamKey, payload: Any) -> None:
        listeners = self.subs.get(key)
        if not listeners:
            return
        raw: bytes | None = None
        fault = self.fault
        for conn, name in listeners.items():
            if conn.combined:
                data = orjson.dumps({"stream": name, "data": payload})
            else:
                if raw is None:
                    raw = orjson.dumps(payload)
                data = raw
            if fault is None:
                conn.push(data)
            else:
                self._deliver_faulty(conn, data, fault)

    def _deliver_faulty(self, conn: Conn, data: bytes, fault: WsFault) -> None:
        """Push what the fault plan lets through instead of ``data`` (or close the socket)."""
        out = fault(conn.id, data)
        if out is None:
            conn.close(FAULT_CLOSE_CODE, "injected fault: disconnect")
            return
        for item in out:
            conn.push(item if isinstance(item, bytes) else item.encode())

    def disconnect(self, choose: Callable[[Any], bool], code: int, reason: str) -> int:
        """Close every connection ``choose`` picks (fault injection); returns how many."""
        picked = [c for c in sorted(self.conns, key=lambda c: c.id) if choose(c)]
        for conn in picked:
            conn.close(code, reason)
        return len(picked)

    # -- user data -----------------------------------------------------------------------------
    def _to_account(self, account: str, payload: dict[str, Any]) -> None:
        for conn in list(self.private.get(account, ())):
            if self.check_expiry(conn) and conn.listen_key is not None:
                data = conn.encode(conn.listen_key, payload)
                fault = self.fault
                if fault is None:
                    conn.push(data)
                else:
                    self._deliver_faulty(conn, data, fault)

    def _order_fields(self, inst: Instrument, order: Order) -> dict[str, Any]:
        otype = str(order.order_type)
        return {
            "s": to_binance(order.market),
            "c": client_id_of(order),
            "S": wire.SIDE_NAME[order.side],
            "o": otype,
            "f": tif_name(order),
            "q": wire.qty(inst, order.qty),
            "p": "0" if otype == "MARKET" else wire.price(inst, order.price),
            "sp": "0",
            "i": order.id,
            "b": "0",
            "a": "0",
            "R": order.reduce_only,
            "wt": "CONTRACT_PRICE",
            "ot": otype,
            "ps": "BOTH",
            "cp": False,
            "pP": False,
            "si": 0,
            "ss": 0,
            "V": "NONE",
            "pm": "NONE",
            "gtd": 0,
        }

    def _order_update(
        self,
        account: str,
        order_id: int,
        ev: OrderAccepted | OrderCanceled | OrderAmended,
        ts: int,
    ) -> None:
        order = self.core.exchange.get_order(account, order_id=order_id)
        if order is None:
            return
        inst = self.core.instruments[order.market]
        fields = self._order_fields(inst, order)
        quote = self.quotes.get(inst, order.id)
        if type(ev) is OrderAccepted:
            x = status = "NEW"
            filled, quote = 0, 0
        elif type(ev) is OrderCanceled:
            assert isinstance(ev, OrderCanceled)
            x = "CANCELED" if ev.reason == "canceled" else "EXPIRED"
            status = x
            filled = order.filled
        else:
            x, status, filled = "AMENDMENT", order.status, order.filled
        fields.update(
            {
                "x": x,
                "X": status,
                "ap": avg_price(inst, quote, filled),
                "l": "0",
                "z": wire.qty(inst, filled),
                "L": "0",
                "N": ASSET,
                "n": "0",
                "T": ts,
                "t": 0,
                "m": False,
                "rp": "0",
            }
        )
        self._to_account(account, {"e": "ORDER_TRADE_UPDATE", "E": ts, "T": ts, "o": fields})

    def _trade_update(
        self, account: str, ev: Trade, maker: bool, progress: dict[int, list[int]]
    ) -> None:
        oid = ev.maker_order_id if maker else ev.taker_order_id
        order = self.core.exchange.get_order(account, order_id=oid)
        if order is None:
            return
        inst = self.core.instruments[ev.stream]
        p = progress.setdefault(oid, [order.filled - ev.qty, 0])
        p[0] += ev.qty
        p[1] += ev.price * ev.qty * inst.notional_factor
        filled, quote = p
        status = "FILLED" if filled >= order.qty else "PARTIALLY_FILLED"
        fields = self._order_fields(inst, order)
        fields.update(
            {
                "x": "TRADE",
                "X": status,
                "ap": avg_price(inst, quote, filled),
                "l": wire.qty(inst, ev.qty),
                "z": wire.qty(inst, filled),
                "L": wire.price(inst, ev.price),
                "N": ASSET,
                "n": wire.money(ev.maker_fee if maker else ev.taker_fee),
                "T": ev.ts,
                "t": ev.trade_id,
                "m": maker,
                "rp": wire.money(ev.maker_realized if maker else ev.taker_realized),
            }
        )
        self._to_account(account, {"e": "ORDER_TRADE_UPDATE", "E": ev.ts, "T": ev.ts, "o": fields})

    def _account_update(
        self, account: str, markets: dict[str, None], reason: str, deposits: dict[str, int], ts: int
    ) -> None:
        exchange = self.core.exchange
        if account not in exchange.accounts:
            return
        view = exchange.account_view(account)
        views = {p.market: p for p in view.positions}
        rows = []
        for sym in markets:
            inst = self.core.instruments[sym]
            pos = views.get(sym)
            if pos is None:
                rows.append(
                    {
                        "s": to_binance(sym),
                        "pa": "0",
                        "ep": "0",
                        "bep": "0",
                        "cr": "0",
                        "up": "0",
                        "mt": "cross",
                        "iw": "0",
                        "ps": "BOTH",
                    }
                )
                continue
            rows.append(
                {
                    "s": to_binance(sym),
                    "pa": wire.qty(inst, pos.size),
                    "ep": entry_price(inst, pos),
                    "bep": entry_price(inst, pos),
                    "cr": wire.money(pos.realized_pnl),
                    "up": wire.money(pos.unrealized_pnl),
                    "mt": "cross",
                    "iw": "0",
                    "ps": "BOTH",
                }
            )
        balance = wire.money(view.collateral)
        data = {
            "e": "ACCOUNT_UPDATE",
            "E": ts,
            "T": ts,
            "a": {
                "m": reason,
                "B": [
                    {
                        "a": ASSET,
                        "wb": balance,
                        "cw": balance,
                        "bc": wire.money(deposits.get(account, 0)),
                    }
                ],
                "P": rows,
            },
        }
        self._to_account(account, data)

    def _margin_call(self, ev: MarginCall) -> None:
        exchange = self.core.exchange
        view = exchange.account_view(ev.account)
        rows = []
        for pos in view.positions:
            if not pos.size:
                continue
            inst = self.core.instruments[pos.market]
            rows.append(
                {
                    "s": to_binance(pos.market),
                    "ps": "BOTH",
                    "pa": wire.qty(inst, pos.size),
                    "mt": "CROSSED",
                    "iw": "0",
                    "mp": wire.price(inst, pos.mark),
                    "up": wire.money(pos.unrealized_pnl),
                    "mm": wire.money(pos.maintenance_margin),
                }
            )
        data = {
            "e": "MARGIN_CALL",
            "E": ev.ts,
            "cw": wire.money(view.collateral),
            "p": rows,
        }
        self._to_account(ev.account, data)

    # -- connections ---------------------------------------------------------------------------
    async def serve(self, ws: WebSocket, tail: str) -> None:
        """Serve one connection on ``/fstream/<tail>``."""
        parts = [p for p in tail.split("/") if p]
        if parts and parts[0] in ("public", "market", "private"):
            parts = parts[1:]
        if not parts or parts[0] not in ("ws", "stream"):
            await ws.close(code=1008)
            return
        combined = parts[0] == "stream"
        names: list[str] = []
        listen_key = ws.query_params.get("listenKey")
        if combined:
            raw = ws.query_params.get("streams", "")
            names = [n for n in raw.split("/") if n]
        else:
            for p in parts[1:]:
                if "@" in p:
                    names.append(p)
                elif not p.isdigit() and listen_key is None:
                    listen_key = p
        if combined:  # a listen key may appear among the streams of a combined connection
            keys = [n for n in names if "@" not in n]
            names = [n for n in names if "@" in n]
            if keys and listen_key is None:
                listen_key = keys[0]
        account = None
        if listen_key is not None:
            account = self.listen_keys.account_of(listen_key)
            if account is None:
                await ws.close(code=1008)  # refused during the handshake (HTTP 403)
                return
        self._next_id += 1
        conn = Conn(ws, combined, listen_key is not None and not names, self._next_id)
        error = self.subscribe(conn, names)
        if error is not None:
            await ws.close(code=1008)
            return
        await ws.accept()
        self.conns.add(conn)
        if account is not None and listen_key is not None:
            self.attach(conn, account, listen_key)
        sender = asyncio.create_task(self._sender(conn), name="binance-ws-sender")
        try:
            while True:
                text = await ws.receive_text()
                self._handle_message(conn, text)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.remove(conn)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    def _handle_message(self, conn: Conn, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            conn.push(orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
            return
        if not isinstance(msg, dict):
            conn.push(orjson.dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": None}))
            return
        req_id = msg.get("id")
        method = msg.get("method")
        params = msg.get("params", [])
        if not isinstance(params, list):
            params = []
        if method == "SUBSCRIBE":
            error = self.subscribe(conn, params)
            if error is not None:
                conn.push(orjson.dumps({"error": {"code": 2, "msg": error}, "id": req_id}))
                return
            conn.push(orjson.dumps({"result": None, "id": req_id}))
        elif method == "UNSUBSCRIBE":
            self.unsubscribe(conn, params)
            conn.push(orjson.dumps({"result": None, "id": req_id}))
        elif method == "LIST_SUBSCRIPTIONS":
            conn.push(orjson.dumps({"result": sorted(conn.subs), "id": req_id}))
        elif method == "SET_PROPERTY":
            conn.push(orjson.dumps({"result": None, "id": req_id}))
        elif method == "GET_PROPERTY":
            conn.push(orjson.dumps({"result": conn.combined, "id": req_id}))
        else:
            conn.push(
                orjson.dumps(
                    {"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": req_id}
                )
            )

    async def _sender(self, conn: Conn) -> None:
        ws = conn.ws
        queue = conn.queue
        while True:
            if conn.dropped:
                await ws.close(code=1008, reason="too slow: messages were piling up")
                return
            try:
                data = await asyncio.wait_for(queue.get(), EXPIRY_CHECK_S)
            except TimeoutError:
                if not self.check_expiry(conn) and conn.private_only:
                    await self._flush_and_close(conn)
                    return
                continue
            connected = ws.application_state is WebSocketState.CONNECTED
            if data is None:  # queued by Conn.close, after what was already queued
                if connected and conn.close_with is not None:
                    code, reason = conn.close_with
                    await ws.close(code=code, reason=reason)
                return
            if not connected:
                return
            await ws.send_text(data.decode())
            if conn.private_only and conn.account is None and conn.listen_key is not None:
                await self._flush_and_close(conn)  # its listen key expired
                return

    async def _flush_and_close(self, conn: Conn) -> None:
        while not conn.queue.empty():
            data = conn.queue.get_nowait()
            if data is not None:
                await conn.ws.send_text(data.decode())
        await conn.ws.close(code=1000, reason="listenKeyExpired")


def _touched(
    prices: set[int], levels: dict[int, Any], sign: int, inst: Instrument
) -> list[list[str]]:
    """``[price, qty now]`` for each touched level, best first (qty "0" if it is gone)."""
    out: list[list[str]] = []
    for p in sorted(prices, key=lambda x: sign * x):
        level = levels.get(sign * p)
        out.append([wire.price(inst, p), wire.qty(inst, level.qty if level is not None else 0)])
    return out


def _levels(inst: Instrument, rows: list[tuple[int, int]]) -> list[list[str]]:
    return [[wire.price(inst, p), wire.qty(inst, q)] for p, q in rows]

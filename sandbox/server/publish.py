"""From engine events to WebSocket channels (see docs/api.md, "WebSocket").

Public: ``book:<M>`` (a snapshot on subscribe, then one diff per command that changed levels:
``[price, qty]`` with qty ``"0"`` for a level that emptied), ``trades:<M>``, ``ticker:<M>``
(on every index/mark update), ``funding:<M>`` (on every settlement). Private, per account:
``orders``, ``fills``, ``positions``, ``account``, ``margin``, ``liquidations``. Private
messages are only built for accounts somebody is listening to.
"""

from __future__ import annotations

from typing import Any, Protocol

from sandbox.engine import Instrument
from sandbox.engine.events import (
    Deposited,
    Event,
    FundingPaid,
    FundingSettled,
    LeverageChanged,
    MarginCall,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    PricesUpdated,
    Trade,
    Withdrawn,
)

from . import wire
from .core import SandboxCore
from .records import _LIQUIDATION_EVENTS, fill_json, fill_row, liquidation_records

PRIVATE_CHANNELS = ("orders", "fills", "positions", "account", "margin", "liquidations")


class HubLike(Protocol):
    def publish(self, channel: str, data: object, ts: int, *, account: str | None = None) -> int:
        """Send ``data`` on ``channel`` (per-account when ``account`` is given)."""
        ...

    def has_subscribers(self, channel: str, account: str | None = None) -> bool:
        """Whether anyone listens (private channels: that account's)."""
        ...

    def seq(self, channel: str, account: str | None = None) -> int:
        """The channel's last sequence number."""
        ...


class Publisher:
    """Turns each command's events into channel messages. Registered as a core sink."""

    def __init__(self, core: SandboxCore, hub: HubLike) -> None:
        self.core = core
        self.hub = hub
        # What the book channel last told subscribers, per market: price -> lots, per side.
        self._levels: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        for sym in core.instruments:
            book = core.exchange.markets[sym].book
            self._levels[sym] = (
                {lv.price: lv.qty for lv in book.bids.levels.values()},
                {lv.price: lv.qty for lv in book.asks.levels.values()},
            )

    # -- snapshots ---------------------------------------------------------------------------
    def book_snapshot(self, channel: str) -> dict[str, Any]:
        """The whole book of ``book:<market>`` (the WebSocket snapshot)."""
        sym = channel.partition(":")[2]
        return self.book_json(sym, depth=None)

    def book_json(self, sym: str, depth: int | None) -> dict[str, Any]:
        inst = self.core.instruments[sym]
        book = self.core.exchange.markets[sym].book
        limit = depth if depth is not None else 1 << 30
        return {
            "market": sym,
            "bids": [[wire.price(inst, p), wire.qty(inst, q)] for p, q in book.bids.depth(limit)],
            "asks": [[wire.price(inst, p), wire.qty(inst, q)] for p, q in book.asks.depth(limit)],
        }

    def account_snapshot(self, account: str) -> dict[str, Any] | None:
        """The ``account`` channel's snapshot (None before the first deposit)."""
        if account not in self.core.exchange.accounts:
            return None
        return wire.account_json(self.core.instruments, self.core.exchange.account_view(account))

    def positions_snapshot(self, account: str) -> list[Any]:
        snap = self.account_snapshot(account)
        return [] if snap is None else list(snap["positions"])

    def orders_snapshot(self, account: str) -> list[dict[str, Any]]:
        """The ``orders`` channel's snapshot: the account's open orders."""
        if account not in self.core.exchange.accounts:
            return []
        return [
            wire.order_json(self.core.instruments[o.market], o)
            for o in self.core.exchange.open_orders(account)
        ]

    def is_valid_channel(self, name: str) -> bool:
        prefix, _, sym = name.partition(":")
        if sym:
            if prefix == "alerts":  # sandbox.monitor: alerts:all or alerts:<MARKET>
                return sym == "all" or sym in self.core.instruments
            return (
                prefix in ("book", "trades", "ticker", "funding") and sym in self.core.instruments
            )
        return prefix in PRIVATE_CHANNELS

    # -- the sink ----------------------------------------------------------------------------
    def __call__(self, events: list[Event]) -> None:
        hub = self.hub
        instruments = self.core.instruments
        touched: dict[str, tuple[set[int], set[int]]] = {}
        accounts: dict[str, None] = {}
        ts = events[-1].ts
        for ev in events:
            kind = type(ev)
            if kind is Trade:
                assert isinstance(ev, Trade)
                sym = ev.stream
                inst = instruments[sym]
                t = touched.get(sym) or _touch(touched, sym)
                (t[0] if ev.taker_side < 0 else t[1]).add(ev.price)
                hub.publish(
                    f"trades:{sym}",
                    {
                        "trade_id": ev.trade_id,
                        "market": sym,
                        "price": wire.price(inst, ev.price),
                        "qty": wire.qty(inst, ev.qty),
                        "taker_side": wire.SIDE_NAME[ev.taker_side],
                        "ts": ev.ts,
                    },
                    ev.ts,
                )
                for acct in (ev.maker_account, ev.taker_account):
                    accounts[acct] = None
                self._private_trade(ev, inst)
            elif kind is OrderAccepted:
                assert isinstance(ev, OrderAccepted)
                t = touched.get(ev.stream) or _touch(touched, ev.stream)
                (t[0] if ev.side > 0 else t[1]).add(ev.price)
                self._order_update(ev.account, ev.order_id, "accepted", ev.ts)
                accounts[ev.account] = None
            elif kind is OrderCanceled:
                assert isinstance(ev, OrderCanceled)
                t = touched.get(ev.stream) or _touch(touched, ev.stream)
                (t[0] if ev.side > 0 else t[1]).add(ev.price)
                self._order_update(ev.account, ev.order_id, ev.reason, ev.ts)
                accounts[ev.account] = None
            elif kind is OrderAmended:
                assert isinstance(ev, OrderAmended)
                t = touched.get(ev.stream) or _touch(touched, ev.stream)
                s = t[0] if ev.side > 0 else t[1]
                s.add(ev.price)
                s.add(ev.old_price)
                self._order_update(ev.account, ev.order_id, "amended", ev.ts)
                accounts[ev.account] = None
            elif kind is PricesUpdated:
                assert isinstance(ev, PricesUpdated)
                hub.publish(f"ticker:{ev.stream}", self.ticker_update(ev), ev.ts)
            elif kind is FundingSettled:
                assert isinstance(ev, FundingSettled)
                inst = instruments[ev.stream]
                hub.publish(
                    f"funding:{ev.stream}",
                    {
                        "market": ev.stream,
                        "funding_ts": ev.funding_ts,
                        "rate": wire.rate(ev.rate),
                        "mark": wire.price(inst, ev.mark),
                    },
                    ev.ts,
                )
            elif kind in (Deposited, Withdrawn, FundingPaid, LeverageChanged):
                accounts[ev.account] = None  # type: ignore[attr-defined]
            elif kind in _LIQUIDATION_EVENTS:
                for acct, record in liquidation_records(ev, instruments):
                    accounts[acct] = None
                    channel = "margin" if kind is MarginCall else "liquidations"
                    if hub.has_subscribers(channel, acct):
                        hub.publish(channel, record, ev.ts, account=acct)
        for sym, (bids, asks) in touched.items():
            self._book_diff(sym, bids, asks, ts)
        for acct in accounts:
            self._account_update(acct, ts)

    # -- helpers -----------------------------------------------------------------------------
    def ticker_update(self, ev: PricesUpdated) -> dict[str, Any]:
        inst = self.core.instruments[ev.stream]
        book = self.core.exchange.markets[ev.stream].book
        bid, ask = book.best_bid(), book.best_ask()
        return {
            "market": ev.stream,
            "last": None if ev.last is None else wire.price(inst, ev.last),
            "mark": wire.price(inst, ev.mark),
            "index": wire.price(inst, ev.index),
            "best_bid": None if bid is None else wire.price(inst, bid),
            "best_ask": None if ask is None else wire.price(inst, ask),
            "predicted_funding_rate": wire.rate(ev.funding_rate),
            "next_funding_ts": ev.next_funding_ts,
            "ts": ev.ts,
        }

    def _book_diff(self, sym: str, bids: set[int], asks: set[int], ts: int) -> None:
        book = self.core.exchange.markets[sym].book
        inst = self.core.instruments[sym]
        mirror_bids, mirror_asks = self._levels[sym]
        out_bids = _changes(bids, book.bids.levels, -1, mirror_bids, inst) if bids else []
        out_asks = _changes(asks, book.asks.levels, 1, mirror_asks, inst) if asks else []
        if out_bids or out_asks:
            self.hub.publish(f"book:{sym}", {"market": sym, "bids": out_bids, "asks": out_asks}, ts)

    def _private_trade(self, ev: Trade, inst: Instrument) -> None:
        hub = self.hub
        for maker in (True, False):
            acct = ev.maker_account if maker else ev.taker_account
            oid = ev.maker_order_id if maker else ev.taker_order_id
            if hub.has_subscribers("fills", acct):
                order = self.core.exchange.get_order(acct, order_id=oid)
                row = fill_row(ev, maker, order.client_id if order is not None else None)
                hub.publish("fills", fill_json(inst, row), ev.ts, account=acct)
            self._order_update(acct, oid, "trade", ev.ts)

    def _order_update(self, account: str, order_id: int, what: str, ts: int) -> None:
        if not self.hub.has_subscribers("orders", account):
            return
        order = self.core.exchange.get_order(account, order_id=order_id)
        if order is None:
            return
        data = wire.order_json(self.core.instruments[order.market], order)
        data["update"] = what
        self.hub.publish("orders", data, ts, account=account)

    def _account_update(self, account: str, ts: int) -> None:
        hub = self.hub
        want_account = hub.has_subscribers("account", account)
        want_positions = hub.has_subscribers("positions", account)
        if not (want_account or want_positions) or account not in self.core.exchange.accounts:
            return
        view = wire.account_json(self.core.instruments, self.core.exchange.account_view(account))
        if want_positions:
            hub.publish("positions", view["positions"], ts, account=account)
        if want_account:
            hub.publish("account", view, ts, account=account)


def _touch(touched: dict[str, tuple[set[int], set[int]]], sym: str) -> tuple[set[int], set[int]]:
    """A market's (bid prices, ask prices) touched by this batch of events, created empty."""
    t = touched[sym] = (set(), set())
    return t


def _changes(
    prices: set[int], levels: dict[int, Any], sign: int, mirror: dict[int, int], inst: Instrument
) -> list[list[str]]:
    """``[price, qty]`` for the touched levels whose quantity changed, best first."""
    out: list[list[str]] = []
    for p in sorted(prices, reverse=sign < 0) if len(prices) > 1 else prices:
        level = levels.get(-p if sign < 0 else p)
        now = level.qty if level is not None else 0
        if mirror.get(p, 0) != now:
            if now:
                mirror[p] = now
            else:
                mirror.pop(p, None)
            out.append([wire.price(inst, p), wire.qty(inst, now)])
    return out

"""Histories the engine does not keep: public trades, candles, fills, funding, liquidations.

Fed with the engine's events after every command (engine units, cheap tuples); converted to
wire JSON only when someone asks. Every history is bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from sandbox.engine import Instrument
from sandbox.engine.events import (
    Event,
    FundingPaid,
    FundingSettled,
    InsuranceFundUsed,
    LiquidationFill,
    LiquidationFinished,
    LiquidationStarted,
    MarginCall,
    PositionTransferred,
    Trade,
)

from . import wire

MINUTE_MS = 60_000
DAY_MS = 24 * 3600 * 1000
CANDLE_INTERVALS = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": DAY_MS,
}
MAX_TRADES = 1_000  # per market
MAX_MINUTES = 7 * 24 * 60  # one-minute candles kept per market (7 days)
MAX_PER_ACCOUNT = 5_000  # fills, funding payments, liquidation records
MAX_FUNDING = 1_000  # settlements per market

# (trade_id, price, qty, taker_side, ts)
TradeRow = tuple[int, int, int, int, int]
# (trade_id, order_id, client_id, market, side, price, qty, fee, maker, realized, ts)
FillRow = tuple[int, int, str | None, str, int, int, int, int, bool, int, int]


class MinuteCandle:
    __slots__ = ("close", "count", "high", "low", "open", "open_ts", "quote", "volume")

    def __init__(self, open_ts: int, price: int) -> None:
        self.open_ts = open_ts
        self.open = self.high = self.low = self.close = price
        self.volume = 0  # lots
        self.quote = 0  # money units
        self.count = 0


class MarketRecords:
    __slots__ = ("candles", "funding", "inst", "trades")

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.trades: deque[TradeRow] = deque(maxlen=MAX_TRADES)
        self.candles: deque[MinuteCandle] = deque(maxlen=MAX_MINUTES)
        self.funding: deque[tuple[int, int, int]] = deque(maxlen=MAX_FUNDING)  # ts, rate, mark

    def add_trade(self, ev: Trade) -> None:
        self.trades.append((ev.trade_id, ev.price, ev.qty, ev.taker_side, ev.ts))
        start = ev.ts - ev.ts % MINUTE_MS
        candles = self.candles
        if candles and candles[-1].open_ts == start:
            c = candles[-1]
            if ev.price > c.high:
                c.high = ev.price
            elif ev.price < c.low:
                c.low = ev.price
            c.close = ev.price
        else:
            c = MinuteCandle(start, ev.price)
            candles.append(c)
        c.volume += ev.qty
        c.quote += ev.price * ev.qty * self.inst.notional_factor
        c.count += 1

    # -- queries -----------------------------------------------------------------------------
    def recent_trades(self, limit: int) -> list[dict[str, Any]]:
        inst, sym = self.inst, self.inst.symbol
        rows = list(self.trades)[-limit:]
        return [
            {
                "trade_id": tid,
                "market": sym,
                "price": wire.price(inst, px),
                "qty": wire.qty(inst, q),
                "taker_side": wire.SIDE_NAME[side],
                "ts": ts,
            }
            for tid, px, q, side, ts in reversed(rows)
        ]

    def candle_rows(
        self, interval_ms: int, start: int | None, end: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Candles aggregated from one-minute buckets, oldest first, at most ``limit`` (the
        newest ones); minutes without trades produce no candle."""
        out: list[MinuteCandle] = []
        for c in self.candles:
            if (start is not None and c.open_ts < start) or (end is not None and c.open_ts > end):
                continue
            bucket = c.open_ts - c.open_ts % interval_ms
            if out and out[-1].open_ts == bucket:
                agg = out[-1]
                agg.high = max(agg.high, c.high)
                agg.low = min(agg.low, c.low)
                agg.close = c.close
            else:
                agg = MinuteCandle(bucket, c.open)
                agg.high, agg.low, agg.close = c.high, c.low, c.close
                out.append(agg)
            agg.volume += c.volume
            agg.quote += c.quote
            agg.count += c.count
        inst = self.inst
        return [
            {
                "open_ts": c.open_ts,
                "open": wire.price(inst, c.open),
                "high": wire.price(inst, c.high),
                "low": wire.price(inst, c.low),
                "close": wire.price(inst, c.close),
                "volume": wire.qty(inst, c.volume),
                "quote_volume": wire.money(c.quote),
                "trades": c.count,
            }
            for c in out[-limit:]
        ]

    def stats_24h(self, now: int) -> dict[str, Any]:
        """Open, high, low, volume over the minutes that started in the last 24 h."""
        since = now - DAY_MS
        first: MinuteCandle | None = None
        high = low = 0
        volume = quote = 0
        for c in self.candles:
            if c.open_ts < since - MINUTE_MS + 1:
                continue
            if first is None:
                first, high, low = c, c.high, c.low
            high, low = max(high, c.high), min(low, c.low)
            volume += c.volume
            quote += c.quote
        inst = self.inst
        if first is None:
            return {
                "open_24h": None,
                "high_24h": None,
                "low_24h": None,
                "volume_24h": "0",
                "quote_volume_24h": "0",
                "open_ticks": None,
            }
        return {
            "open_24h": wire.price(inst, first.open),
            "high_24h": wire.price(inst, high),
            "low_24h": wire.price(inst, low),
            "volume_24h": wire.qty(inst, volume),
            "quote_volume_24h": wire.money(quote),
            "open_ticks": first.open,
        }


class AccountRecords:
    __slots__ = ("fills", "funding", "liquidations")

    def __init__(self) -> None:
        self.fills: deque[FillRow] = deque(maxlen=MAX_PER_ACCOUNT)
        # (market, funding_ts, rate, size, amount)
        self.funding: deque[tuple[str, int, int, int, int]] = deque(maxlen=MAX_PER_ACCOUNT)
        self.liquidations: deque[dict[str, Any]] = deque(maxlen=MAX_PER_ACCOUNT)


class Records:
    """All histories, fed by :meth:`apply` with each command's events."""

    def __init__(self, instruments: dict[str, Instrument]) -> None:
        self.instruments = instruments
        self.markets = {sym: MarketRecords(inst) for sym, inst in instruments.items()}
        self.accounts: dict[str, AccountRecords] = {}

    def account(self, account: str) -> AccountRecords:
        rec = self.accounts.get(account)
        if rec is None:
            rec = self.accounts[account] = AccountRecords()
        return rec

    def apply(self, events: Iterable[Event], client_ids: dict[int, str | None]) -> None:
        """Record ``events``; ``client_ids`` maps the order ids they mention to client ids."""
        # A settlement's payments may precede its summary in the list: read the rates first.
        settled = {ev.stream: ev for ev in events if type(ev) is FundingSettled}
        for ev in events:
            kind = type(ev)
            if kind is Trade:
                assert isinstance(ev, Trade)
                self.markets[ev.stream].add_trade(ev)
                for maker in (True, False):
                    oid = ev.maker_order_id if maker else ev.taker_order_id
                    row = fill_row(ev, maker, client_ids.get(oid))
                    self.account(ev.maker_account if maker else ev.taker_account).fills.append(row)
            elif kind is FundingSettled:
                assert isinstance(ev, FundingSettled)
                self.markets[ev.stream].funding.append((ev.funding_ts, ev.rate, ev.mark))
            elif kind is FundingPaid:
                assert isinstance(ev, FundingPaid)
                s = settled.get(ev.stream)
                self.account(ev.account).funding.append(
                    (
                        ev.stream,
                        s.funding_ts if s else ev.ts,
                        s.rate if s else 0,
                        ev.size,
                        ev.amount,
                    )
                )
            elif kind in _LIQUIDATION_EVENTS:
                for account, record in liquidation_records(ev, self.instruments):
                    self.account(account).liquidations.append(record)

    # -- queries -----------------------------------------------------------------------------
    def fills(self, account: str, market: str | None, limit: int) -> list[dict[str, Any]]:
        rec = self.accounts.get(account)
        if rec is None:
            return []
        out = []
        for row in reversed(rec.fills):
            if market is not None and row[3] != market:
                continue
            out.append(fill_json(self.instruments[row[3]], row))
            if len(out) >= limit:
                break
        return out

    def funding_payments(self, account: str, market: str | None, limit: int) -> list[Any]:
        rec = self.accounts.get(account)
        if rec is None:
            return []
        out = []
        for sym, funding_ts, rate_units, size, amount in reversed(rec.funding):
            if market is not None and sym != market:
                continue
            out.append(
                {
                    "market": sym,
                    "funding_ts": funding_ts,
                    "rate": wire.rate(rate_units),
                    "size": wire.qty(self.instruments[sym], size),
                    "amount": wire.money(amount),
                }
            )
            if len(out) >= limit:
                break
        return out

    def liquidations(self, account: str, limit: int) -> list[dict[str, Any]]:
        rec = self.accounts.get(account)
        if rec is None:
            return []
        return list(rec.liquidations)[-limit:][::-1]


def fill_row(ev: Trade, maker: bool, client_id: str | None) -> FillRow:
    """One side of a trade as that account's fill (side, fee and PnL are that side's)."""
    if maker:
        oid, side, fee, pnl = ev.maker_order_id, -ev.taker_side, ev.maker_fee, ev.maker_realized
    else:
        oid, side, fee, pnl = ev.taker_order_id, ev.taker_side, ev.taker_fee, ev.taker_realized
    return (ev.trade_id, oid, client_id, ev.stream, side, ev.price, ev.qty, fee, maker, pnl, ev.ts)


def fill_json(inst: Instrument, row: FillRow) -> dict[str, Any]:
    tid, oid, cid, sym, side, px, q, fee, maker, realized, ts = row
    return {
        "trade_id": tid,
        "order_id": oid,
        "client_order_id": cid,
        "market": sym,
        "side": wire.SIDE_NAME[side],
        "price": wire.price(inst, px),
        "qty": wire.qty(inst, q),
        "fee": wire.money(fee),
        "liquidity": "MAKER" if maker else "TAKER",
        "realized_pnl": wire.money(realized),
        "ts": ts,
    }


_LIQUIDATION_EVENTS = frozenset(
    {
        MarginCall,
        LiquidationStarted,
        LiquidationFill,
        LiquidationFinished,
        PositionTransferred,
        InsuranceFundUsed,
    }
)


def liquidation_records(
    ev: Event, instruments: dict[str, Instrument]
) -> list[tuple[str, dict[str, Any]]]:
    """``(account, record)`` pairs for a margin or liquidation event, in wire units."""
    stream = getattr(ev, "stream", None)
    inst = instruments.get(stream) if isinstance(stream, str) else None
    market = inst.symbol if inst is not None else None

    def rec(kind: str, **details: Any) -> dict[str, Any]:
        return {"ts": ev.ts, "market": market, "kind": kind, "details": details}

    if isinstance(ev, MarginCall):
        return [
            (
                ev.account,
                rec(
                    "margin_call",
                    equity=wire.money(ev.equity),
                    maintenance_margin=wire.money(ev.maintenance_margin),
                ),
            )
        ]
    if isinstance(ev, LiquidationStarted):
        return [
            (
                ev.account,
                rec(
                    "started",
                    equity=wire.money(ev.equity),
                    maintenance_margin=wire.money(ev.maintenance_margin),
                    orders_cancelled=ev.orders_cancelled,
                ),
            )
        ]
    if isinstance(ev, LiquidationFinished):
        return [
            (
                ev.account,
                rec(
                    "finished",
                    equity=wire.money(ev.equity),
                    maintenance_margin=wire.money(ev.maintenance_margin),
                ),
            )
        ]
    if isinstance(ev, LiquidationFill) and inst is not None:
        return [
            (
                ev.account,
                rec(
                    "step",
                    mode=ev.mode,
                    side=wire.SIDE_NAME[ev.side],
                    qty=wire.qty(inst, ev.qty),
                    book_qty=wire.qty(inst, ev.book_qty),
                    auction_qty=wire.qty(inst, ev.auction_qty),
                    takeover_qty=wire.qty(inst, ev.takeover_qty),
                    adl_qty=wire.qty(inst, ev.adl_qty),
                    mark=wire.price(inst, ev.mark),
                    bankruptcy_price=wire.price(inst, ev.bankruptcy_price),
                    fee=wire.money(ev.fee),
                    equity=wire.money(ev.equity),
                    maintenance_margin=wire.money(ev.maintenance_margin),
                ),
            )
        ]
    if isinstance(ev, PositionTransferred) and inst is not None:
        details = {
            "reason": ev.reason,
            "from_account": ev.from_account,
            "to_account": ev.to_account,
            "side": wire.SIDE_NAME[ev.side],
            "qty": wire.qty(inst, ev.qty),
            "price": wire.price(inst, ev.price),
        }
        # Both sides see it: the liquidated account, and an ADL counterparty or backstop.
        return [
            (ev.from_account, rec("transfer_out", **details)),
            (ev.to_account, rec("transfer_in", **details)),
        ]
    if isinstance(ev, InsuranceFundUsed):
        return [
            (
                ev.account,
                rec(
                    "insurance_fund",
                    amount=wire.money(ev.amount),
                    balance=wire.money(ev.balance),
                    reason=ev.reason,
                ),
            )
        ]
    return []

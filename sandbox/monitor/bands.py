"""Liquidation bands: where forced flow would exceed the book's depth.

For one market, every account's position is placed at its exact cross-margin liquidation price
(:meth:`Exchange.liquidation_price`, the engine's own bisection) in price buckets around the
mark. Longs liquidate as the price falls and their forced sells meet the bids; shorts as it
rises, against the asks. For each bucket the map holds the cumulative forced flow triggered by
the time the mark reaches it and the cumulative resting depth between the best price and it;
the **shortfall** of a side is the bucket closest to the mark where the first exceeds the
second. Reads the exchange, never changes it. Units: ticks, lots, money units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perpbot.risk.margin import RATE_SCALE, ceil_div
from sandbox.engine import Exchange, Instrument
from sandbox.server import wire

DEFAULT_BUCKETS = 60
DEFAULT_RANGE = 15 * RATE_SCALE // 100  # +-15% around the mark


@dataclass(frozen=True, slots=True)
class Band:
    """Prices ``[low, high]`` (ticks, inclusive). ``long_*`` are the long positions whose
    liquidation price is in the band, ``short_*`` the shorts. ``cum_sell`` counts the lots of
    every long liquidated once the mark falls to ``low`` and ``cum_bids`` the bid lots at or
    above ``low``; ``cum_buy``/``cum_asks`` the same for shorts and asks up to ``high``."""

    low: int
    high: int
    long_qty: int
    long_notional: int
    long_accounts: int
    short_qty: int
    short_notional: int
    short_accounts: int
    bid_qty: int
    ask_qty: int
    cum_sell: int
    cum_bids: int
    cum_buy: int
    cum_asks: int


@dataclass(frozen=True, slots=True)
class Shortfall:
    """The first price from the mark where the forced flow exceeds the depth in its way."""

    side: str  # "long" (forced sells into bids) or "short" (forced buys into asks)
    price: int
    forced_qty: int
    forced_notional: int
    depth_qty: int
    accounts: int
    distance: int  # |mark - price| / mark in rate units


@dataclass(frozen=True, slots=True)
class Bands:
    """The band map of one market at ``ts``."""

    market: str
    ts: int
    mark: int
    index: int
    bucket_ticks: int
    bands: tuple[Band, ...]
    long_shortfall: Shortfall | None
    short_shortfall: Shortfall | None
    positions: int
    long_open: int  # lots held long by traders (insurance funds excluded)
    short_open: int

    def shortfall(self, side: str) -> Shortfall | None:
        return self.long_shortfall if side == "long" else self.short_shortfall


def liquidation_levels(exchange: Exchange, market: str) -> list[tuple[str, int, int]]:
    """``(account, size, liquidation price)`` of every trader's position in ``market``
    (insurance funds excluded; positions no price can liquidate are left out)."""
    out: list[tuple[str, int, int]] = []
    funds = exchange.insurance_funds
    for account_id in sorted(exchange.markets[market].holders):
        if account_id in funds:
            continue
        pos = exchange.accounts[account_id].positions.get(market)
        if pos is None or not pos.size:
            continue
        price = exchange.liquidation_price(account_id, market)
        if price is not None:
            out.append((account_id, pos.size, price))
    return out


def compute_bands(
    exchange: Exchange,
    market: str,
    ts: int,
    *,
    buckets: int = DEFAULT_BUCKETS,
    range_rate: int = DEFAULT_RANGE,
) -> Bands:
    """The band map of ``market``: ``buckets`` equal buckets over ``mark * (1 +- range_rate)``."""
    if buckets < 2 or not 0 < range_rate < RATE_SCALE:
        raise ValueError("need buckets >= 2 and 0 < range_rate < 100%")
    m = exchange.markets[market]
    mark, factor = m.mark, m.factor
    width = max(1, ceil_div(2 * mark * range_rate, buckets * RATE_SCALE))
    start = max(1, mark - width * (buckets // 2))
    levels = liquidation_levels(exchange, market)
    bids = m.book.bids.depth(1 << 30)  # best (highest) first
    asks = m.book.asks.depth(1 << 30)  # best (lowest) first
    long_open = sum(s for _, s, _ in levels if s > 0)
    short_open = -sum(s for _, s, _ in levels if s < 0)

    rows: list[list[int]] = []
    for k in range(buckets):
        low = start + k * width
        high = low + width - 1
        lq = ln = la = sq = sn = sa = 0
        for _, size, price in levels:
            if low <= price <= high:
                if size > 0:
                    lq, ln, la = lq + size, ln + size * price * factor, la + 1
                else:
                    sq, sn, sa = sq - size, sn - size * price * factor, sa + 1
        bq = sum(q for p, q in bids if low <= p <= high)
        aq = sum(q for p, q in asks if low <= p <= high)
        cum_sell = sum(s for _, s, p in levels if s > 0 and p >= low)
        cum_bids = sum(q for p, q in bids if p >= low)
        cum_buy = -sum(s for _, s, p in levels if s < 0 and p <= high)
        cum_asks = sum(q for p, q in asks if p <= high)
        rows.append(
            [low, high, lq, ln, la, sq, sn, sa, bq, aq, cum_sell, cum_bids, cum_buy, cum_asks]
        )
    bands = tuple(Band(*r) for r in rows)

    long_gap = None
    for b in reversed(bands):  # from the mark downward
        if b.high <= mark and b.cum_sell > b.cum_bids:
            long_gap = _shortfall("long", b.low, b.cum_sell, b.cum_bids, levels, mark, factor)
            break
    short_gap = None
    for b in bands:  # from the mark upward
        if b.low >= mark and b.cum_buy > b.cum_asks:
            short_gap = _shortfall("short", b.high, b.cum_buy, b.cum_asks, levels, mark, factor)
            break
    return Bands(
        market,
        ts,
        mark,
        m.index,
        width,
        bands,
        long_gap,
        short_gap,
        len(levels),
        long_open,
        short_open,
    )


def _shortfall(
    side: str,
    price: int,
    forced: int,
    depth: int,
    levels: list[tuple[str, int, int]],
    mark: int,
    factor: int,
) -> Shortfall:
    if side == "long":
        hit = [(s, p) for _, s, p in levels if s > 0 and p >= price]
    else:
        hit = [(-s, p) for _, s, p in levels if s < 0 and p <= price]
    return Shortfall(
        side,
        price,
        forced,
        sum(s * p * factor for s, p in hit),
        depth,
        len(hit),
        abs(mark - price) * RATE_SCALE // mark,
    )


def bands_json(inst: Instrument, b: Bands) -> dict[str, Any]:
    """The wire form of a band map (decimal strings)."""

    def gap(s: Shortfall | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {
            "side": s.side,
            "price": wire.price(inst, s.price),
            "forced_qty": wire.qty(inst, s.forced_qty),
            "forced_notional": wire.money(s.forced_notional),
            "depth_qty": wire.qty(inst, s.depth_qty),
            "accounts": s.accounts,
            "distance": wire.rate(s.distance),
        }

    return {
        "market": b.market,
        "ts": b.ts,
        "mark": wire.price(inst, b.mark),
        "index": wire.price(inst, b.index),
        "bucket_size": wire.price(inst, b.bucket_ticks),
        "positions": b.positions,
        "long_open": wire.qty(inst, b.long_open),
        "short_open": wire.qty(inst, b.short_open),
        "long_shortfall": gap(b.long_shortfall),
        "short_shortfall": gap(b.short_shortfall),
        "bands": [
            {
                "low": wire.price(inst, x.low),
                "high": wire.price(inst, x.high),
                "long_qty": wire.qty(inst, x.long_qty),
                "long_notional": wire.money(x.long_notional),
                "long_accounts": x.long_accounts,
                "short_qty": wire.qty(inst, x.short_qty),
                "short_notional": wire.money(x.short_notional),
                "short_accounts": x.short_accounts,
                "bid_qty": wire.qty(inst, x.bid_qty),
                "ask_qty": wire.qty(inst, x.ask_qty),
                "cum_forced_sell": wire.qty(inst, x.cum_sell),
                "cum_bid_depth": wire.qty(inst, x.cum_bids),
                "cum_forced_buy": wire.qty(inst, x.cum_buy),
                "cum_ask_depth": wire.qty(inst, x.cum_asks),
            }
            for x in b.bands
        ],
    }

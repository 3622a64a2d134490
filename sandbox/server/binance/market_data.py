"""Public market data on /fapi: exchange info, book, trades, candles, tickers, funding."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .. import wire
from ..records import DAY_MS, MINUTE_MS
from . import errors as E
from .codec import ASSET, symbol_info, to_binance
from .context import Context, Params
from .errors import BinanceError

KLINE_INTERVALS = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": DAY_MS,
}
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


class MarketData(Context):
    """Handlers of the public routes (no key needed)."""

    def time(self, p: Params) -> dict[str, Any]:
        return {"serverTime": self.state.wall_ms()}

    def exchange_info(self, p: Params) -> dict[str, Any]:
        cfg = self.throttle.config
        max_orders = self.exchange.config.max_open_orders
        return {
            "timezone": "UTC",
            "serverTime": self.state.wall_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": cfg.weight_window_ms // 60_000 or 1,
                    "limit": cfg.weight_limit,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "MINUTE",
                    "intervalNum": cfg.order_window_long_ms // 60_000 or 1,
                    "limit": cfg.order_limit_long,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": cfg.order_window_ms // 1000 or 1,
                    "limit": cfg.order_limit,
                },
            ],
            "exchangeFilters": [],
            "assets": [{"asset": ASSET, "marginAvailable": True, "autoAssetExchange": "0"}],
            "symbols": [
                symbol_info(inst, self.onboard_ms, max_orders) for inst in self.instruments.values()
            ],
        }

    def depth(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        assert sym is not None
        limit = p.integer("limit", 500, 1, 1000)
        if limit not in DEPTH_LIMITS:
            raise E.illegal("limit")
        assert limit is not None
        inst = self._inst(sym)
        book = self.exchange.markets[sym].book
        now = self.core.now_ms()
        return {
            "lastUpdateId": self.streams.update_id[sym],
            "E": now,
            "T": now,
            "bids": [[wire.price(inst, px), wire.qty(inst, q)] for px, q in book.bids.depth(limit)],
            "asks": [[wire.price(inst, px), wire.qty(inst, q)] for px, q in book.asks.depth(limit)],
        }

    def trades(self, p: Params) -> list[dict[str, Any]]:
        sym = p.symbol()
        assert sym is not None
        inst = self._inst(sym)
        limit = p.limit(500, 1000)
        rows = list(self.core.records.markets[sym].trades)[-limit:]
        return [
            {
                "id": tid,
                "price": wire.price(inst, px),
                "qty": wire.qty(inst, q),
                "quoteQty": wire.money(px * q * inst.notional_factor),
                "time": ts,
                "isBuyerMaker": side < 0,
            }
            for tid, px, q, side, ts in rows
        ]

    def agg_trades(self, p: Params) -> list[dict[str, Any]]:
        sym = p.symbol()
        assert sym is not None
        inst = self._inst(sym)
        limit = p.limit(500, 1000)
        from_id = p.integer("fromId", None, 0, 2**62)
        rows = list(self.core.records.markets[sym].trades)
        if from_id is not None:
            rows = [r for r in rows if r[0] >= from_id][:limit]
        else:
            rows = self._window(rows, p, lambda r: int(r[4]), limit)
        return [
            {
                "a": tid,
                "p": wire.price(inst, px),
                "q": wire.qty(inst, q),
                "f": tid,
                "l": tid,
                "T": ts,
                "m": side < 0,
            }
            for tid, px, q, side, ts in rows
        ]

    def klines(self, p: Params) -> list[list[Any]]:
        sym = p.symbol()
        assert sym is not None
        interval = p.req("interval")
        step = KLINE_INTERVALS.get(interval)
        if step is None:
            raise BinanceError(E.BAD_INTERVAL, "Invalid interval.")
        limit = p.limit(500, 1500)
        start = p.integer("startTime", None, 0, 2**62)
        end = p.integer("endTime", None, 0, 2**62)
        rows = self.core.records.markets[sym].candle_rows(step, start, end, 10**9)
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [
            [
                r["open_ts"],
                r["open"],
                r["high"],
                r["low"],
                r["close"],
                r["volume"],
                r["open_ts"] + step - 1,
                r["quote_volume"],
                r["trades"],
                "0",
                "0",
                "0",
            ]
            for r in rows
        ]

    def _premium(self, sym: str) -> dict[str, Any]:
        inst = self._inst(sym)
        prices = self.exchange.prices(sym)
        return {
            "symbol": to_binance(sym),
            "markPrice": wire.price(inst, prices.mark),
            "indexPrice": wire.price(inst, prices.index),
            "estimatedSettlePrice": wire.price(inst, prices.mark),
            "lastFundingRate": wire.rate(prices.predicted_funding_rate),
            "interestRate": wire.rate(inst.mechanics.funding.interest_rate),
            "nextFundingTime": prices.next_funding_ts,
            "time": self.core.now_ms(),
        }

    def premium_index(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        if sym is not None:
            return self._premium(sym)
        return [self._premium(s) for s in self.instruments]

    def funding_rate(self, p: Params) -> list[dict[str, Any]]:
        limit = p.limit(100, 1000)
        rows = []
        for sym in self._syms(p):
            inst = self._inst(sym)
            for ts, rate, mark in self.core.records.markets[sym].funding:
                rows.append(
                    {
                        "symbol": to_binance(sym),
                        "fundingRate": wire.rate(rate),
                        "fundingTime": ts,
                        "markPrice": wire.price(inst, mark),
                    }
                )
        rows.sort(key=lambda r: (r["fundingTime"], r["symbol"]))
        return list(self._window(rows, p, lambda r: int(r["fundingTime"]), limit))

    def funding_info(self, p: Params) -> list[dict[str, Any]]:
        out = []
        for sym, inst in self.instruments.items():
            cfg = inst.mechanics.funding
            out.append(
                {
                    "symbol": to_binance(sym),
                    "adjustedFundingRateCap": wire.rate(cfg.cap),
                    "adjustedFundingRateFloor": wire.rate(-cfg.cap),
                    "fundingIntervalHours": cfg.interval_ms // 3_600_000,
                    "disclaimer": False,
                }
            )
        return out

    def _ticker(self, sym: str) -> dict[str, Any]:
        inst = self._inst(sym)
        now = self.core.now_ms()
        market = self.core.records.markets[sym]
        since = now - DAY_MS
        first_open = high = low = None
        volume = quote = count = 0
        open_ts = None
        for c in market.candles:
            if c.open_ts < since - MINUTE_MS + 1:
                continue
            if first_open is None:
                first_open, high, low, open_ts = c.open, c.high, c.low, c.open_ts
            high = max(high or c.high, c.high)
            low = min(low or c.low, c.low)
            volume += c.volume
            quote += c.quote
            count += c.count
        last = self.exchange.markets[sym].last
        last_trade = market.trades[-1] if market.trades else None
        if first_open is None or last is None:
            change = Decimal(0)
            pct = Decimal(0)
            first_open = last or 0
            high = low = last or 0
        else:
            change = inst.price_to_decimal(last - first_open)
            pct = (change * 100 / inst.price_to_decimal(first_open)).quantize(Decimal("0.001"))
        vol_dec = inst.qty_to_decimal(volume)
        wavg = (
            (Decimal(quote).scaleb(-8) / vol_dec).quantize(Decimal(1).scaleb(-8))
            if volume
            else Decimal(0)
        )
        last_id = last_trade[0] if last_trade is not None else 0
        return {
            "symbol": to_binance(sym),
            "priceChange": wire._fmt(change),
            "priceChangePercent": wire._fmt(pct),
            "weightedAvgPrice": wire._fmt(wavg),
            "lastPrice": wire.price(inst, last or 0),
            "lastQty": wire.qty(inst, last_trade[2]) if last_trade is not None else "0",
            "openPrice": wire.price(inst, first_open),
            "highPrice": wire.price(inst, high or 0),
            "lowPrice": wire.price(inst, low or 0),
            "volume": wire.qty(inst, volume),
            "quoteVolume": wire.money(quote),
            "openTime": open_ts if open_ts is not None else since,
            "closeTime": now,
            "firstId": last_id - count + 1 if count else -1,
            "lastId": last_id if count else -1,
            "count": count,
        }

    def ticker_24hr(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        if sym is not None:
            return self._ticker(sym)
        return [self._ticker(s) for s in self.instruments]

    def _price(self, sym: str) -> dict[str, Any]:
        inst = self._inst(sym)
        last = self.exchange.markets[sym].last
        return {
            "symbol": to_binance(sym),
            "price": wire.price(inst, last) if last is not None else "0",
            "time": self.core.now_ms(),
        }

    def ticker_price(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        if sym is not None:
            return self._price(sym)
        return [self._price(s) for s in self.instruments]

    def _book_ticker(self, sym: str) -> dict[str, Any]:
        data = self.streams.book_ticker_json(sym, self.core.now_ms(), event=False)
        return {
            "symbol": data["s"],
            "bidPrice": data["b"],
            "bidQty": data["B"],
            "askPrice": data["a"],
            "askQty": data["A"],
            "time": data["T"],
            "lastUpdateId": data["u"],
        }

    def book_ticker(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        if sym is not None:
            return self._book_ticker(sym)
        return [self._book_ticker(s) for s in self.instruments]

    def open_interest(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        assert sym is not None
        inst = self._inst(sym)
        accounts = self.exchange.accounts
        longs = 0
        for holder in self.exchange.markets[sym].holders:
            size = accounts[holder].positions[sym].size
            if size > 0:
                longs += size
        return {
            "openInterest": wire.qty(inst, longs),
            "symbol": to_binance(sym),
            "time": self.core.now_ms(),
        }

"""Signed /fapi routes: account, positions, leverage, history, orders and listen keys."""

from __future__ import annotations

from typing import Any

from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    EngineError,
    PlaceOrder,
    SetLeverage,
)
from sandbox.engine.commands import OrderType, Side, TimeInForce
from sandbox.engine.events import OrderAccepted

from .. import wire
from ..wire import ApiError
from . import errors as E
from .codec import (
    ASSET,
    account_json,
    balance_rows,
    flat_view,
    leverage_brackets,
    max_notional,
    position_risk,
    position_views,
    to_binance,
)
from .context import INT_PATTERN, Context, Params
from .errors import BinanceError

_TIFS = {
    "GTC": TimeInForce.GTC,
    "IOC": TimeInForce.IOC,
    "FOK": TimeInForce.FOK,
    "GTX": TimeInForce.POST_ONLY,
}


class Trading(Context):
    """Handlers of the routes that act for an account (``p.account``, already verified)."""

    # -- account -------------------------------------------------------------------------------
    def account(self, p: Params, *, v2: bool) -> dict[str, Any]:
        return account_json(self.instruments, self.exchange, p.account, self.core.now_ms(), v2=v2)

    def balance(self, p: Params) -> list[dict[str, Any]]:
        view, _ = position_views(self.exchange, self.instruments, p.account)
        return balance_rows(view, self.core.now_ms())

    def brackets(self, p: Params) -> Any:
        sym = p.symbol(required=False)
        if sym is not None:
            return [leverage_brackets(self._inst(sym))]
        return [leverage_brackets(inst) for inst in self.instruments.values()]

    def positions(self, p: Params, *, v2: bool) -> list[dict[str, Any]]:
        now = self.core.now_ms()
        _, views = position_views(self.exchange, self.instruments, p.account)
        out = []
        for sym in self._syms(p):
            inst = self._inst(sym)
            pos = views.get(sym)
            if pos is None or (not v2 and not pos.size and not pos.order_margin):
                if not v2:
                    continue
                pos = flat_view(inst, self.exchange, p.account)
            out.append(position_risk(inst, pos, now, v2=v2))
        return out

    def set_leverage(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        assert sym is not None
        raw = p.req("leverage")
        if not INT_PATTERN.match(raw) or not 1 <= int(raw) <= 125:
            raise BinanceError(E.INVALID_LEVERAGE, f"Leverage {raw[:20]} is not valid")
        leverage = int(raw)
        try:
            self.state.apply(SetLeverage(p.account, sym, leverage))
        except ApiError as exc:
            if exc.code == "INVALID_LEVERAGE":
                raise BinanceError(
                    E.INVALID_LEVERAGE, f"Leverage {leverage} is not valid"
                ) from None
            raise
        return {
            "leverage": leverage,
            "maxNotionalValue": max_notional(self._inst(sym), leverage),
            "symbol": to_binance(sym),
        }

    def margin_type(self, p: Params) -> dict[str, Any]:
        p.symbol()
        kind = p.req("marginType").upper()
        if kind not in ("ISOLATED", "CROSSED"):
            raise E.illegal("marginType")
        if kind == "CROSSED":
            raise BinanceError(E.NO_NEED_TO_CHANGE_MARGIN_TYPE, "No need to change margin type.")
        raise BinanceError(
            E.ISOLATED_UNSUPPORTED,
            "Unable to adjust to isolated-margin mode: the sandbox supports cross margin only.",
        )

    def get_dual(self, p: Params) -> dict[str, Any]:
        return {"dualSidePosition": False}

    def set_dual(self, p: Params) -> dict[str, Any]:
        if p.flag("dualSidePosition"):
            raise BinanceError(
                E.ILLEGAL_PARAM, "Hedge mode is not supported: the sandbox is one-way only."
            )
        raise BinanceError(E.NO_NEED_TO_CHANGE_POSITION_SIDE, "No need to change position side.")

    def multi_assets(self, p: Params) -> dict[str, Any]:
        return {"multiAssetsMargin": False}

    def symbol_config(self, p: Params) -> list[dict[str, Any]]:
        acct = self.exchange.accounts.get(p.account)
        out = []
        for sym in self._syms(p):
            inst = self._inst(sym)
            pos = acct.positions.get(sym) if acct is not None else None
            leverage = pos.leverage if pos is not None else inst.default_leverage
            out.append(
                {
                    "symbol": to_binance(sym),
                    "marginType": "CROSSED",
                    "isAutoAddMargin": False,
                    "leverage": leverage,
                    "maxNotionalValue": max_notional(inst, leverage),
                }
            )
        return out

    def account_config(self, p: Params) -> dict[str, Any]:
        return {
            "feeTier": 0,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "dualSidePosition": False,
            "updateTime": self.core.now_ms(),
            "multiAssetsMargin": False,
            "tradeGroupId": -1,
        }

    def commission_rate(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        assert sym is not None
        inst = self._inst(sym)
        return {
            "symbol": to_binance(sym),
            "makerCommissionRate": wire.rate(inst.maker_fee),
            "takerCommissionRate": wire.rate(inst.taker_fee),
        }

    def user_trades(self, p: Params) -> list[dict[str, Any]]:
        sym = p.symbol()
        assert sym is not None
        inst = self._inst(sym)
        limit = p.limit(500, 1000)
        from_id = p.integer("fromId", None, 0, 2**62)
        rec = self.core.records.accounts.get(p.account)
        rows = [r for r in (rec.fills if rec is not None else ()) if r[3] == sym]
        if from_id is not None:
            rows = [r for r in rows if r[0] >= from_id][:limit]
        else:
            rows = self._window(rows, p, lambda r: int(r[10]), limit)
        out = []
        for tid, oid, _cid, _sym, side, px, q, fee, maker, realized, ts in rows:
            out.append(
                {
                    "buyer": side > 0,
                    "commission": wire.money(fee),
                    "commissionAsset": ASSET,
                    "id": tid,
                    "maker": maker,
                    "orderId": oid,
                    "price": wire.price(inst, px),
                    "qty": wire.qty(inst, q),
                    "quoteQty": wire.money(px * q * inst.notional_factor),
                    "realizedPnl": wire.money(realized),
                    "side": wire.SIDE_NAME[side],
                    "positionSide": "BOTH",
                    "symbol": to_binance(sym),
                    "time": ts,
                }
            )
        return out

    def income(self, p: Params) -> list[dict[str, Any]]:
        sym = p.symbol(required=False)
        kind = p.get("incomeType")
        limit = p.limit(100, 1000)
        rec = self.core.records.accounts.get(p.account)
        if rec is None:
            return []
        index = {s: i for i, s in enumerate(self.instruments)}
        rows: list[dict[str, Any]] = []

        def add(market: str, what: str, amount: int, ts: int, tran: int, trade: str) -> None:
            if (sym is None or market == sym) and (kind is None or kind == what):
                rows.append(
                    {
                        "symbol": to_binance(market),
                        "incomeType": what,
                        "income": wire.money(amount),
                        "asset": ASSET,
                        "info": what,
                        "time": ts,
                        "tranId": tran,
                        "tradeId": trade,
                    }
                )

        for tid, _oid, _cid, market, _side, _px, _q, fee, _maker, realized, ts in rec.fills:
            base = (tid * 16 + index[market] * 4) * 2 + (1 if _maker else 0)
            if realized:
                add(market, "REALIZED_PNL", realized, ts, base * 4 + 1, str(tid))
            if fee:
                add(market, "COMMISSION", -fee, ts, base * 4 + 2, str(tid))
        for market, funding_ts, _rate, _size, amount in rec.funding:
            add(
                market,
                "FUNDING_FEE",
                -amount,
                funding_ts,
                (funding_ts * 16 + index[market]) * 4 + 3,
                "",
            )
        rows.sort(key=lambda r: (r["time"], r["tranId"]))
        return list(self._window(rows, p, lambda r: int(r["time"]), limit))

    # -- orders --------------------------------------------------------------------------------
    def place_order(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        assert sym is not None
        inst = self._inst(sym)
        side_raw = p.req("side").upper()
        if side_raw not in ("BUY", "SELL"):
            raise BinanceError(E.INVALID_SIDE, "Invalid side.")
        type_raw = p.req("type").upper()
        if type_raw not in ("LIMIT", "MARKET"):
            raise BinanceError(E.INVALID_ORDER_TYPE, "Invalid orderType.")
        position_side = (p.get("positionSide") or "BOTH").upper()
        if position_side != "BOTH":
            raise BinanceError(
                E.POSITION_SIDE_MISMATCH, "Order's position side does not match user's setting."
            )
        if p.flag("closePosition"):
            raise E.illegal("closePosition")
        resp_type = (p.get("newOrderRespType") or "ACK").upper()
        if resp_type not in ("ACK", "RESULT"):
            raise E.illegal("newOrderRespType")
        qty_dec = p.decimal("quantity")
        if qty_dec is None:
            raise E.mandatory("quantity")
        price_dec = p.decimal("price")
        tif: TimeInForce | None = None
        if type_raw == "LIMIT":
            if price_dec is None:
                raise E.mandatory("price")
            tif_raw = (p.get("timeInForce") or "GTC").upper()
            if tif_raw not in _TIFS:
                raise BinanceError(E.INVALID_TIF, "Invalid timeInForce.")
            tif = _TIFS[tif_raw]
        elif price_dec is not None:
            raise BinanceError(E.PARAM_NOT_REQUIRED, "Parameter 'price' sent when not required.")
        reduce_only = p.flag("reduceOnly")
        client_id = p.get("newClientOrderId")
        if client_id is None:
            self._auto_id += 1
            client_id = f"sbx-auto-{self.core.now_ms()}-{self._auto_id}"
        market_order = type_raw == "MARKET"
        try:
            qty = inst.qty_to_lots(qty_dec)
            price = None if price_dec is None else inst.price_to_ticks(price_dec)
            events = self.state.apply(
                PlaceOrder(
                    p.account,
                    sym,
                    Side.BUY if side_raw == "BUY" else Side.SELL,
                    qty,
                    price,
                    OrderType.MARKET if market_order else OrderType.LIMIT,
                    tif,
                    reduce_only,
                    client_id,
                )
            )
        except EngineError as exc:
            raise E.from_engine_error(exc) from None
        except ApiError as exc:
            raise E.from_api_error(exc, price=price_dec, market_order=market_order) from None
        accepted = next(e for e in events if type(e) is OrderAccepted)
        assert isinstance(accepted, OrderAccepted)
        order = self.exchange.get_order(p.account, order_id=accepted.order_id)
        assert order is not None
        return self._order(order)

    def modify_order(self, p: Params) -> dict[str, Any]:
        """``PUT /fapi/v1/order``: a resting LIMIT order's new price and total quantity (a
        price change or a larger size loses time priority, as the engine's amend)."""
        sym = p.symbol()
        assert sym is not None
        inst = self._inst(sym)
        side = p.req("side").upper()
        qty_dec = p.decimal("quantity")
        price_dec = p.decimal("price")
        if qty_dec is None:
            raise E.mandatory("quantity")
        if price_dec is None:
            raise E.mandatory("price")
        order = self._find(p, sym)
        if order is None or not order.live:
            raise BinanceError(E.NO_SUCH_ORDER, "Order does not exist.")
        if side != wire.SIDE_NAME[order.side]:
            raise E.illegal("side")
        try:
            qty = inst.qty_to_lots(qty_dec)
            price = inst.price_to_ticks(price_dec)
            self.state.apply(AmendOrder(p.account, sym, order.id, None, price, qty))
        except EngineError as exc:
            raise E.from_engine_error(exc) from None
        except ApiError as exc:
            raise E.from_api_error(exc, price=price_dec) from None
        fresh = self.exchange.get_order(p.account, order_id=order.id)
        assert fresh is not None
        return self._order(fresh)

    def query_order(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        assert sym is not None
        order = self._find(p, sym)
        if order is None:
            raise BinanceError(E.NO_SUCH_ORDER, "Order does not exist.")
        return self._order(order)

    def query_open_order(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        assert sym is not None
        order = self._find(p, sym)
        if order is None or not order.live:
            raise BinanceError(E.NO_SUCH_ORDER, "Order does not exist.")
        return self._order(order)

    def cancel_order(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        assert sym is not None
        order = self._find(p, sym)
        if order is None or not order.live:
            raise BinanceError(E.UNKNOWN_ORDER_CANCEL, "Unknown order sent.")
        self.state.apply(CancelOrder(p.account, sym, order.id))
        fresh = self.exchange.get_order(p.account, order_id=order.id)
        return self._order(fresh if fresh is not None else order)

    def open_orders(self, p: Params) -> list[dict[str, Any]]:
        sym = p.symbol(required=False)
        if p.account not in self.exchange.accounts:
            return []
        return [self._order(o) for o in self.exchange.open_orders(p.account, sym)]

    def all_orders(self, p: Params) -> list[dict[str, Any]]:
        sym = p.symbol()
        acct = self.exchange.accounts.get(p.account)
        if acct is None:
            return []
        limit = p.limit(500, 1000)
        from_id = p.integer("orderId", None, 0, 2**62)
        orders = sorted(
            (o for o in [*acct.open_orders.values(), *acct.recent.values()] if o.market == sym),
            key=lambda o: o.id,
        )
        if from_id is not None:
            orders = [o for o in orders if o.id >= from_id][:limit]
        else:
            orders = self._window(orders, p, lambda o: int(o.ts), limit)
        return [self._order(o) for o in orders]

    def cancel_all(self, p: Params) -> dict[str, Any]:
        sym = p.symbol()
        if p.account in self.exchange.accounts:
            self.state.apply(CancelAll(p.account, sym))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # -- listen keys -----------------------------------------------------------------------------
    def listen_key_create(self, p: Params) -> dict[str, Any]:
        return {"listenKey": self.listen_keys.create(p.account)}

    def listen_key_keepalive(self, p: Params) -> dict[str, Any]:
        return {"listenKey": self.listen_keys.keepalive(p.account, p.get("listenKey"))}

    def listen_key_delete(self, p: Params) -> dict[str, Any]:
        self.listen_keys.delete(p.account, p.get("listenKey"))
        return {}

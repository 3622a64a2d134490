"""Engine state -> Binance USDⓈ-M JSON (orders, positions, balances, markets).

Numbers are decimal strings exactly as the sandbox's own API writes them (never floats), ids
and times are integers. Our markets ``BTC-PERP`` are ``BTCUSDT`` on this API (quote and margin
asset USDT). Times are the sandbox's simulated milliseconds, except ``/fapi/v1/time`` and the
signature window, which use the wall clock (see docs/compat-binance.md).
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from sandbox.engine import MAX_TICKS, Instrument
from sandbox.engine.book import Order
from sandbox.engine.events import Event, Trade
from sandbox.engine.exchange import AccountView, Exchange, PositionView

from .. import wire

ASSET = "USDT"
ORDER_MEMORY = 200_000  # orders whose traded notional is remembered (oldest forgotten first)
_AVG_DECIMALS = Decimal(1).scaleb(-8)


def to_binance(symbol: str) -> str:
    """``BTC-PERP`` -> ``BTCUSDT``."""
    return symbol.split("-", 1)[0] + ASSET


def base_asset(symbol: str) -> str:
    return symbol.split("-", 1)[0]


class Symbols:
    """Both spellings of every market."""

    def __init__(self, instruments: dict[str, Instrument]) -> None:
        self.to_ours = {to_binance(s): s for s in instruments}
        self.instruments = instruments

    def ours(self, binance_symbol: str) -> str | None:
        return self.to_ours.get(binance_symbol.upper())


class OrderQuotes:
    """Traded notional per order id (money units), for ``cumQuote`` and ``avgPrice``.

    An engine event sink; only orders of accounts outside the simulated market are tracked.
    """

    def __init__(self) -> None:
        self.quote: OrderedDict[int, int] = OrderedDict()

    def __call__(self, events: list[Event]) -> None:
        for ev in events:
            if type(ev) is Trade:
                assert isinstance(ev, Trade)
                notional = -1  # computed lazily: most trades are between simulated agents
                for acct, oid in (
                    (ev.maker_account, ev.maker_order_id),
                    (ev.taker_account, ev.taker_order_id),
                ):
                    if acct.startswith(("mm:", "flow:")):
                        continue
                    if notional < 0:
                        notional = ev.price * ev.qty
                    self.quote[oid] = self.quote.get(oid, 0) + notional
                    self.quote.move_to_end(oid)
        while len(self.quote) > ORDER_MEMORY:
            self.quote.popitem(last=False)

    def get(self, inst: Instrument, order_id: int) -> int:
        """Traded notional of the order in money units."""
        return self.quote.get(order_id, 0) * inst.notional_factor


def dec(value: Decimal) -> str:
    """A Decimal as a plain string without exponent or trailing zeros."""
    return wire._fmt(value)


def avg_price(inst: Instrument, quote_units: int, filled_lots: int) -> str:
    """Average fill price, rounded half-even to 8 decimals ("0" before any fill)."""
    if not filled_lots:
        return "0"
    with localcontext() as ctx:
        ctx.prec = 60
        value = Decimal(quote_units).scaleb(-8) / inst.qty_to_decimal(filled_lots)
        return dec(value.quantize(_AVG_DECIMALS, rounding=ROUND_HALF_EVEN))


def client_id_of(order: Order) -> str:
    """The order's client id; the exchange's own liquidation orders read ``autoclose-<id>``."""
    if order.client_id is not None:
        return order.client_id
    return f"autoclose-{order.id}"


def tif_name(order: Order) -> str:
    tif = str(order.tif)
    return "GTX" if tif == "POST_ONLY" else tif


def order_json(inst: Instrument, order: Order, quote_units: int) -> dict[str, Any]:
    """An order as ``/fapi/v1/order`` answers it."""
    otype = str(order.order_type)
    return {
        "orderId": order.id,
        "symbol": to_binance(order.market),
        "status": order.status,
        "clientOrderId": client_id_of(order),
        "price": "0" if otype == "MARKET" else wire.price(inst, order.price),
        "avgPrice": avg_price(inst, quote_units, order.filled),
        "origQty": wire.qty(inst, order.qty),
        "executedQty": wire.qty(inst, order.filled),
        "cumQty": wire.qty(inst, order.filled),
        "cumQuote": wire.money(quote_units),
        "timeInForce": tif_name(order),
        "type": otype,
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": wire.SIDE_NAME[order.side],
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": otype,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE",
        "goodTillDate": 0,
        "time": order.ts,
        "updateTime": order.done_ts or order.ts,
    }


def entry_price(inst: Instrument, pos: PositionView) -> str:
    """Average entry price of an open position ("0" when flat), exact to 12 decimals."""
    if not pos.size:
        return "0"
    value = Decimal(pos.cost) / Decimal(pos.size * inst.notional_factor) * inst.tick_size
    return dec(value.quantize(Decimal(1).scaleb(-12)).normalize())


def notional(inst: Instrument, pos: PositionView) -> str:
    return wire.money(pos.size * pos.mark * inst.notional_factor)


def max_notional(inst: Instrument, leverage: int) -> str:
    """The largest position notional allowed at ``leverage`` (Binance's maxNotionalValue)."""
    cap = max((b.notional_cap for b in inst.brackets if b.max_leverage >= leverage), default=0)
    return wire.money(cap)


def position_views(
    exchange: Exchange, instruments: dict[str, Instrument], account: str
) -> tuple[AccountView | None, dict[str, PositionView]]:
    if account not in exchange.accounts:
        return None, {}
    view = exchange.account_view(account)
    return view, {p.market: p for p in view.positions}


def flat_view(inst: Instrument, exchange: Exchange, account: str) -> PositionView:
    acct = exchange.accounts.get(account)
    pos = acct.positions.get(inst.symbol) if acct is not None else None
    lev = pos.leverage if pos is not None else inst.default_leverage
    mark = exchange.markets[inst.symbol].mark
    return PositionView(inst.symbol, 0, 0, lev, mark, 0, 0, 0, 0, 0, None)


def position_risk(
    inst: Instrument, pos: PositionView, ts: int, *, v2: bool, order_im: int = 0
) -> dict[str, Any]:
    """One ``positionRisk`` row (v2 or v3 shape; v3 also carries ``leverage`` as an extra)."""
    row: dict[str, Any] = {
        "symbol": to_binance(inst.symbol),
        "positionSide": "BOTH",
        "positionAmt": wire.qty(inst, pos.size),
        "entryPrice": entry_price(inst, pos),
        "breakEvenPrice": entry_price(inst, pos),
        "markPrice": wire.price(inst, pos.mark),
        "unRealizedProfit": wire.money(pos.unrealized_pnl),
        "liquidationPrice": (
            "0" if pos.liquidation_price is None else wire.price(inst, pos.liquidation_price)
        ),
        "isolatedMargin": "0",
        "notional": notional(inst, pos),
        "marginAsset": ASSET,
        "isolatedWallet": "0",
        "leverage": str(pos.leverage),
        "updateTime": ts,
    }
    if v2:
        row.update(
            {
                "marginType": "cross",
                "isAutoAddMargin": "false",
                "maxNotionalValue": max_notional(inst, pos.leverage),
            }
        )
    else:
        row.update(
            {
                "initialMargin": wire.money(pos.initial_margin + pos.order_margin),
                "maintMargin": wire.money(pos.maintenance_margin),
                "positionInitialMargin": wire.money(pos.initial_margin),
                "openOrderInitialMargin": wire.money(pos.order_margin),
                "adl": 0,
                "bidNotional": "0",
                "askNotional": "0",
            }
        )
    return row


def balance_rows(view: AccountView | None, ts: int) -> list[dict[str, Any]]:
    """``/fapi/v2|v3/balance``: one USDT row."""
    collateral = view.collateral if view else 0
    upnl = view.unrealized_pnl if view else 0
    available = max(view.available, 0) if view else 0
    return [
        {
            "accountAlias": "sandbox",
            "asset": ASSET,
            "balance": wire.money(collateral),
            "crossWalletBalance": wire.money(collateral),
            "crossUnPnl": wire.money(upnl),
            "availableBalance": wire.money(available),
            "maxWithdrawAmount": wire.money(min(available, max(collateral, 0))),
            "marginAvailable": True,
            "updateTime": ts,
        }
    ]


def account_json(
    instruments: dict[str, Instrument],
    exchange: Exchange,
    account: str,
    ts: int,
    *,
    v2: bool,
) -> dict[str, Any]:
    """``/fapi/v2|v3/account``: totals, the USDT asset and the positions."""
    view, positions = position_views(exchange, instruments, account)
    collateral = view.collateral if view else 0
    upnl = view.unrealized_pnl if view else 0
    equity = view.equity if view else 0
    pos_im = view.position_margin if view else 0
    ord_im = view.order_margin if view else 0
    mm = view.maintenance_margin if view else 0
    available = max(view.available, 0) if view else 0
    withdraw = min(available, max(collateral, 0))
    asset = {
        "asset": ASSET,
        "walletBalance": wire.money(collateral),
        "unrealizedProfit": wire.money(upnl),
        "marginBalance": wire.money(equity),
        "maintMargin": wire.money(mm),
        "initialMargin": wire.money(pos_im + ord_im),
        "positionInitialMargin": wire.money(pos_im),
        "openOrderInitialMargin": wire.money(ord_im),
        "crossWalletBalance": wire.money(collateral),
        "crossUnPnl": wire.money(upnl),
        "availableBalance": wire.money(available),
        "maxWithdrawAmount": wire.money(withdraw),
        "marginAvailable": True,
        "updateTime": ts,
    }
    rows = []
    for sym, inst in instruments.items():
        pos = positions.get(sym)
        if pos is None:
            if not v2:
                continue
            pos = flat_view(inst, exchange, account)
        row: dict[str, Any] = {
            "symbol": to_binance(sym),
            "positionSide": "BOTH",
            "positionAmt": wire.qty(inst, pos.size),
            "unrealizedProfit": wire.money(pos.unrealized_pnl),
            "isolatedMargin": "0",
            "notional": notional(inst, pos),
            "isolatedWallet": "0",
            "initialMargin": wire.money(pos.initial_margin + pos.order_margin),
            "maintMargin": wire.money(pos.maintenance_margin),
            "updateTime": ts,
        }
        if v2:
            row.update(
                {
                    "positionInitialMargin": wire.money(pos.initial_margin),
                    "openOrderInitialMargin": wire.money(pos.order_margin),
                    "leverage": str(pos.leverage),
                    "isolated": False,
                    "entryPrice": entry_price(inst, pos),
                    "breakEvenPrice": entry_price(inst, pos),
                    "maxNotional": max_notional(inst, pos.leverage),
                    "bidNotional": "0",
                    "askNotional": "0",
                }
            )
        rows.append(row)
    out: dict[str, Any] = {
        "totalInitialMargin": wire.money(pos_im + ord_im),
        "totalMaintMargin": wire.money(mm),
        "totalWalletBalance": wire.money(collateral),
        "totalUnrealizedProfit": wire.money(upnl),
        "totalMarginBalance": wire.money(equity),
        "totalPositionInitialMargin": wire.money(pos_im),
        "totalOpenOrderInitialMargin": wire.money(ord_im),
        "totalCrossWalletBalance": wire.money(collateral),
        "totalCrossUnPnl": wire.money(upnl),
        "availableBalance": wire.money(available),
        "maxWithdrawAmount": wire.money(withdraw),
        "assets": [asset],
        "positions": rows,
    }
    if v2:
        out = {
            "feeTier": 0,
            "feeBurn": False,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "updateTime": ts,
            "multiAssetsMargin": False,
            "tradeGroupId": -1,
            **out,
        }
    return out


def leverage_brackets(inst: Instrument) -> dict[str, Any]:
    """``/fapi/v1/leverageBracket`` for one market (ratios and amounts as exact strings)."""
    rows = []
    floor = 0
    for i, b in enumerate(inst.brackets, start=1):
        rows.append(
            {
                "bracket": i,
                "initialLeverage": b.max_leverage,
                "notionalCap": _number(b.notional_cap),
                "notionalFloor": _number(floor),
                "maintMarginRatio": wire.rate(b.mmr),
                "cum": wire.money(b.maint_amount),
            }
        )
        floor = b.notional_cap
    return {"symbol": to_binance(inst.symbol), "notionalCoef": 1, "brackets": rows}


def _number(money_units: int) -> int | str:
    """Whole USDT as a JSON integer (as Binance writes caps), else an exact string."""
    whole, frac = divmod(money_units, 10**8)
    return whole if not frac else wire.money(money_units)


def decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def symbol_info(inst: Instrument, onboard_ms: int, max_orders: int) -> dict[str, Any]:
    """One ``exchangeInfo`` symbol: a USDT-margined perpetual with its filters."""
    tick = dec(inst.tick_size)
    step = dec(inst.lot_size)
    band = Decimal(inst.price_band).scaleb(-8)
    return {
        "symbol": to_binance(inst.symbol),
        "pair": to_binance(inst.symbol),
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": onboard_ms,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base_asset(inst.symbol),
        "quoteAsset": ASSET,
        "marginAsset": ASSET,
        "pricePrecision": decimals(inst.tick_size),
        "quantityPrecision": decimals(inst.lot_size),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": wire.rate(inst.mechanics.liquidation.fee_rate),
        "marketTakeBound": wire.rate(inst.market_band),
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": dec(inst.tick_size * MAX_TICKS),  # the engine's bound on any price
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "stepSize": step,
                "minQty": wire.qty(inst, inst.min_qty),
                "maxQty": wire.qty(inst, inst.max_qty),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "stepSize": step,
                "minQty": wire.qty(inst, inst.min_qty),
                "maxQty": wire.qty(inst, inst.market_max_qty),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": max_orders},
            {"filterType": "MIN_NOTIONAL", "notional": wire.money(inst.min_notional)},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": dec(1 + band),
                "multiplierDown": dec(1 - band),
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }

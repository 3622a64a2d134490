"""Wire models: the JSON the sandbox serves and the SDK reads (the public contract).

Money, prices, quantities and rates are decimal strings (``"64250.5"``), never JSON floats:
a float cannot hold ``0.1`` exactly, and an exchange that rounds your order silently is
hidden leverage. Timestamps are integer milliseconds of the exchange's (simulated) clock.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

DecimalStr = Annotated[
    str,
    Field(
        pattern=r"^-?[0-9]+(\.[0-9]+)?$",
        max_length=40,
        json_schema_extra={"format": "decimal"},
        examples=["64250.5"],
    ),
]
"""A finite decimal number as a string (no exponent, no NaN/Infinity)."""

ClientOrderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{1,36}$")]


class WireModel(BaseModel):
    """A request body: unknown fields and loosely typed values (``"5"`` for 5) are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ResponseModel(BaseModel):
    # Servers may add fields in later versions; readers ignore what they do not know.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    LIQUIDATION = "LIQUIDATION"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    POST_ONLY = "POST_ONLY"


class SelfTradePrevention(StrEnum):
    CANCEL_TAKER = "CANCEL_TAKER"
    CANCEL_MAKER = "CANCEL_MAKER"
    CANCEL_BOTH = "CANCEL_BOTH"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


# -- errors ---------------------------------------------------------------------------------
class ErrorBody(ResponseModel):
    """Every 4xx/5xx body: a stable ``code`` (see docs/api.md), a message, and the numbers."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


# -- requests -------------------------------------------------------------------------------
class OrderRequest(WireModel):
    """A new order. ``price`` is required for LIMIT and forbidden for MARKET; ``tif`` defaults
    to GTC (limit) or IOC (market); ``stp`` to the exchange's default (CANCEL_TAKER)."""

    market: str = Field(max_length=32, examples=["BTC-PERP"])
    side: Side
    type: OrderType = OrderType.LIMIT
    qty: DecimalStr
    price: DecimalStr | None = None
    tif: TimeInForce | None = None
    reduce_only: bool = False
    client_order_id: ClientOrderId | None = None
    stp: SelfTradePrevention | None = None


class AmendRequest(WireModel):
    """New price and/or new total quantity (including what has filled). A price change or a
    size increase loses time priority; a size decrease keeps it."""

    price: DecimalStr | None = None
    qty: DecimalStr | None = None


class LeverageRequest(WireModel):
    leverage: int = Field(ge=1, le=1000)


# -- public market data ---------------------------------------------------------------------
class BracketInfo(ResponseModel):
    notional_cap: str
    max_leverage: int
    maintenance_rate: str
    maintenance_amount: str


class MarketInfo(ResponseModel):
    symbol: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    market_max_qty: str
    min_notional: str
    price_band: str
    market_band: str
    maker_fee: str
    taker_fee: str
    default_leverage: int
    funding_interval_ms: int
    liquidation_mode: str
    brackets: list[BracketInfo]


class Ticker(ResponseModel):
    """Last trade, mark and index (three different prices: see docs/mechanics.md) and 24 h
    statistics over the exchange clock's last 24 hours."""

    market: str
    last: str | None
    mark: str
    index: str
    index_degraded: bool
    best_bid: str | None
    best_ask: str | None
    open_24h: str | None
    high_24h: str | None
    low_24h: str | None
    volume_24h: str
    quote_volume_24h: str
    price_change_24h: str | None
    ts: int


class OrderBook(ResponseModel):
    """Aggregated depth, best first, as ``[price, qty]`` pairs. ``seq`` is the position in the
    ``book:<market>`` WebSocket channel: apply the diffs with a greater ``seq``."""

    market: str
    seq: int
    ts: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class PublicTrade(ResponseModel):
    trade_id: int
    market: str
    price: str
    qty: str
    taker_side: Side
    ts: int


class FundingInfo(ResponseModel):
    """Funding now: the latest premium sample, the rate the current interval would settle at
    (predicted), the last settled rate, and when the next settlement is."""

    market: str
    mark: str
    index: str
    premium: str | None
    predicted_rate: str
    last_rate: str
    next_funding_ts: int
    interval_ms: int


class FundingRecord(ResponseModel):
    market: str
    funding_ts: int
    rate: str
    mark: str


class Candle(ResponseModel):
    open_ts: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int


class ServerTime(ResponseModel):
    """``server_ts``: the exchange's simulated clock; ``wall_ts``: real time (sign requests
    with real time). ``speed``: simulated seconds per real second (0 when paused)."""

    server_ts: int
    wall_ts: int
    speed: str
    paused: bool


class RateLimit(ResponseModel):
    type: str  # REQUEST_WEIGHT or ORDERS
    scope: str  # IP or API_KEY
    window_ms: int
    limit: int


class BanRules(ResponseModel):
    """Requests that keep coming while throttled (429) are strikes; ``strikes_to_ban`` of them
    earn a 418 ban of ``base_ms * multiplier**n`` (n = bans in the last ``memory_ms``), capped."""

    strikes_to_ban: int
    base_ms: int
    multiplier: int
    max_ms: int
    memory_ms: int


class RateLimitRules(ResponseModel):
    """The limits in force and each endpoint's weight (``METHOD /path``)."""

    rate_limits: list[RateLimit]
    bans: BanRules
    weights: dict[str, int]


# -- private --------------------------------------------------------------------------------
class Position(ResponseModel):
    market: str
    size: str
    side: str
    entry_price: str | None
    mark: str
    notional: str
    leverage: int
    unrealized_pnl: str
    realized_pnl: str
    initial_margin: str
    maintenance_margin: str
    order_margin: str
    liquidation_price: str | None


class Account(ResponseModel):
    """Cross-margin state at the current marks. ``margin_ratio`` = maintenance margin / equity
    (liquidation at >= 1; None when equity <= 0)."""

    account: str
    collateral: str
    equity: str
    unrealized_pnl: str
    position_margin: str
    order_margin: str
    available: str
    maintenance_margin: str
    margin_ratio: str | None
    in_liquidation: bool
    positions: list[Position]


class Order(ResponseModel):
    order_id: int
    client_order_id: str | None
    market: str
    side: Side
    type: OrderType
    tif: TimeInForce
    price: str
    qty: str
    filled_qty: str
    remaining_qty: str
    reduce_only: bool
    status: OrderStatus
    created_ts: int
    done_ts: int | None


class Fill(ResponseModel):
    trade_id: int
    order_id: int
    client_order_id: str | None
    market: str
    side: Side
    price: str
    qty: str
    fee: str
    liquidity: str
    realized_pnl: str
    ts: int


class OrderResult(ResponseModel):
    """The order after the command, and the fills it made as it arrived (a taker's fills)."""

    order: Order
    fills: list[Fill]


class CancelAllResult(ResponseModel):
    canceled: list[int]


class FundingPayment(ResponseModel):
    """``amount`` > 0 was paid, < 0 received."""

    market: str
    funding_ts: int
    rate: str
    size: str
    amount: str


class LeverageInfo(ResponseModel):
    market: str
    leverage: int
    max_leverage: int


class LiquidationRecord(ResponseModel):
    """One step of a liquidation of this account, as the engine explained it."""

    ts: int
    market: str | None
    kind: str
    details: dict[str, Any]


# -- admin ----------------------------------------------------------------------------------
class CreateAccountRequest(WireModel):
    account: str = Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")
    api_key: str = Field(pattern=r"^[A-Za-z0-9._-]{8,64}$")
    api_secret: str = Field(min_length=16, max_length=128, pattern=r"^[\x21-\x7e]+$")
    deposit: DecimalStr = "0"


class CreatedAccount(ResponseModel):
    account: str
    api_key: str
    collateral: str


class DepositRequest(WireModel):
    amount: DecimalStr


class ClockRequest(WireModel):
    """``action``: pause, resume, set_speed (with ``speed``), or advance (with ``ms``)."""

    action: str = Field(pattern="^(pause|resume|set_speed|advance)$")
    speed: DecimalStr | None = None
    ms: int | None = Field(default=None, ge=0, le=366 * 24 * 3600 * 1000)


class IndexPriceRequest(WireModel):
    """Pin one index source at ``price`` (it stays there while the simulation runs);
    ``price`` null hands the source back to the simulation."""

    market: str = Field(max_length=32)
    source: str = Field(max_length=32)
    price: DecimalStr | None


class FaultRequest(WireModel):
    """Inject faults for ``duration_ms`` of real time (0 clears): added latency, a share of
    requests answered 503, a share whose response is dropped after the order is applied."""

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    error_rate: DecimalStr = "0"
    drop_rate: DecimalStr = "0"
    duration_ms: int = Field(default=60_000, ge=0, le=24 * 3600 * 1000)


class LimitsRequest(WireModel):
    """Any subset of the throttle settings to change now (see ``GET /v1/rate-limits``)."""

    weight_limit: int | None = Field(default=None, ge=1)
    key_weight_limit: int | None = Field(default=None, ge=1)
    order_limit: int | None = Field(default=None, ge=1)
    order_limit_long: int | None = Field(default=None, ge=1)
    strikes_to_ban: int | None = Field(default=None, ge=1)
    ban_base_ms: int | None = Field(default=None, ge=1)


class OkResponse(ResponseModel):
    ok: bool = True
    details: dict[str, Any] = Field(default_factory=dict)


# -- monitor (GET /v1/alerts, /v1/markets/{m}/liquidation-bands, /v1/markets/{m}/cascade) ----


class Alert(ResponseModel):
    """One alert. ``values`` are the numbers behind it, as strings."""

    id: int
    detector: str
    severity: str
    ts: int
    market: str | None
    account: str | None
    message: str
    values: dict[str, str]


class LiquidationShortfall(ResponseModel):
    side: str
    price: str
    forced_qty: str
    forced_notional: str
    depth_qty: str
    accounts: int
    distance: str


class LiquidationBand(ResponseModel):
    low: str
    high: str
    long_qty: str
    long_notional: str
    long_accounts: int
    short_qty: str
    short_notional: str
    short_accounts: int
    bid_qty: str
    ask_qty: str
    cum_forced_sell: str
    cum_bid_depth: str
    cum_forced_buy: str
    cum_ask_depth: str


class LiquidationBands(ResponseModel):
    """Liquidation prices against cumulative book depth, per price bucket."""

    market: str
    ts: int
    mark: str
    index: str
    bucket_size: str
    positions: int
    long_open: str
    short_open: str
    long_shortfall: LiquidationShortfall | None
    short_shortfall: LiquidationShortfall | None
    bands: list[LiquidationBand]


class CascadeStep(ResponseModel):
    second: int
    ts: int
    account: str
    market: str
    side: str
    qty: str
    book_qty: str
    takeover_qty: str
    adl_qty: str
    notional: str
    avg_price: str | None
    mark: str
    bankruptcy_price: str
    last: str | None
    fee: str
    insurance_fund_used: str
    deep: bool


class CascadeMarket(ResponseModel):
    market: str
    mark_before: str | None
    mark_after: str | None
    insurance_before: str
    insurance_after: str


class Cascade(ResponseModel):
    """A predicted liquidation cascade after a price shock."""

    market: str
    shock: str
    start_ts: int
    seconds: int
    accounts: list[str]
    liquidated_accounts: int
    forced_notional: str
    mark_before: str
    mark_after: str
    min_mark: str
    last_after: str | None
    markets: list[CascadeMarket]
    insurance_fund_used: str
    steps: list[CascadeStep]

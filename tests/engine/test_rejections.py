"""Every reachable RejectCode, and for every rejection: exactly one Rejected, no state change.

``assert_rejected`` (conftest) snapshots the whole exchange (collateral, positions and their
order aggregates, open and recent orders, client ids, books, market sequence numbers, marks,
fees collected, deposit/withdrawal totals, next order id, accounts stream seq) before and after.

Numbers: BTC-PERP notional = ticks * lots * 10_000 money units; mark 600_000 ticks (60000 USDT);
price band +-5% -> [570_000, 630_000] ticks; default leverage 20.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    EngineError,
    Exchange,
    ExchangeConfig,
    Instrument,
    OrderType,
    PlaceOrder,
    RegisterBackstop,
    RejectCode,
    Rejected,
    SetLeverage,
    SetMarkPrice,
    TimeInForce,
    UpdateIndexSource,
    Withdraw,
    default_instruments,
    money_units,
)

from .conftest import (
    BTC,
    BTC_MARK,
    BUY,
    ETH,
    ONE_BTC,
    SELL,
    SOL,
    assert_rejected,
    insurance_fund,
    make_exchange,
    minq_instrument,
    ok,
    open_position,
    place,
    rest,
    snapshot,
    usdt,
)

MINQ = "MINQ-PERP"
MARKET = OrderType.MARKET


@pytest.fixture
def rex() -> Exchange:
    """Default instruments plus MINQ-PERP (min qty 10 lots, max 2000, market max 1000)."""
    return make_exchange((*default_instruments(), minq_instrument()))


def limit(account: str, side: int, qty: Any, price: Any, market: str = BTC, **kw: Any) -> Any:
    return PlaceOrder(account, market, side, qty, price, **kw)  # type: ignore[arg-type]


def mkt(account: str, side: int, qty: Any, market: str = BTC, **kw: Any) -> Any:
    return PlaceOrder(account, market, side, qty, order_type=MARKET, **kw)  # type: ignore[arg-type]


# -- setups: each returns the command to reject --------------------------------------------------
Setup = Callable[[Exchange], Any]


def with_bid(cmd_for: Callable[[int], Any]) -> Setup:
    """alice rests a 1 BTC bid at 590000 (client id "a-1"); the command refers to it."""

    def setup(ex: Exchange) -> Any:
        oid = rest(ex, "alice", BUY, ONE_BTC, 590_000, client_id="a-1")
        return cmd_for(oid)

    return setup


def with_minq_bid(cmd_for: Callable[[int], Any]) -> Setup:
    def setup(ex: Exchange) -> Any:
        # 20 lots at 60000 = 120 USDT >= 100 USDT minimum
        oid = rest(ex, "alice", BUY, 20, BTC_MARK, market=MINQ)
        return cmd_for(oid)

    return setup


def with_filled_part(ex: Exchange) -> Any:
    oid = rest(ex, "alice", BUY, 2 * ONE_BTC, BTC_MARK)
    ok(place(ex, "carol", SELL, ONE_BTC, BTC_MARK))  # alice: filled 1000 of 2000
    return AmendOrder("alice", BTC, order_id=oid, qty=1_000)


def with_filled_order(ex: Exchange) -> Any:
    rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
    oid = rest(ex, "alice", BUY, ONE_BTC, BTC_MARK)  # fills at once
    return CancelOrder("alice", BTC, order_id=oid)


def with_ask_then(cmd: Any) -> Setup:
    def setup(ex: Exchange) -> Any:
        rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
        return cmd

    return setup


def with_long(cmd: Any) -> Setup:
    def setup(ex: Exchange) -> Any:
        open_position(ex, "alice", BUY, ONE_BTC)
        return cmd

    return setup


def with_post_only_bid(ex: Exchange) -> Any:
    rest(ex, "bob", SELL, ONE_BTC, BTC_MARK)
    oid = rest(ex, "alice", BUY, ONE_BTC, 599_000, tif=TimeInForce.POST_ONLY)
    return AmendOrder("alice", BTC, order_id=oid, price=BTC_MARK)


def in_liquidation(cmd: Any) -> Setup:
    """lia (40,000 USDT) buys 10 BTC from carol at 60000 (taker fee 300 USDT), then the mark
    drops to 56300: equity 39,700 - 3,700 = 2,700 USDT <= MM 2,765 (0.5% of 563,000 - 50), not
    deep (> 2/3 MM). INCREMENTAL, 563,000 USDT > 100,000: 20% (2,000 lots) is stepped; the
    book is empty, so the fund takes it at 56,030.0 and lia stays in liquidation (equity 2,160
    <= MM 2,202 USDT) until the 30 s cooldown has passed."""

    def setup(ex: Exchange) -> Any:
        ok(ex.submit(Deposit("lia", usdt(40_000))))
        open_position(ex, "lia", BUY, 10 * ONE_BTC)
        ok(ex.submit(SetMarkPrice(BTC, 563_000)))
        assert ex.account_view("lia").in_liquidation
        return cmd

    return setup


def plain(cmd: Any) -> Setup:
    return lambda ex: cmd


@dataclass(frozen=True)
class Unregistered:
    """A command type the exchange has no handler for."""

    account: str = "alice"


R = RejectCode
CASES: list[Any] = [
    # UNKNOWN_MARKET
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, "DOGE-PERP")),
        R.UNKNOWN_MARKET,
        id="place-unknown-market",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, None)),
        R.UNKNOWN_MARKET,
        id="place-market-None",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, "btc-perp")),
        R.UNKNOWN_MARKET,
        id="place-market-wrong-case",
    ),
    pytest.param(
        plain(CancelOrder("alice", "X", order_id=1)), R.UNKNOWN_MARKET, id="cancel-unknown-market"
    ),
    pytest.param(plain(CancelAll("alice", "X")), R.UNKNOWN_MARKET, id="cancel-all-unknown-market"),
    pytest.param(
        plain(AmendOrder("alice", "X", order_id=1, qty=5)),
        R.UNKNOWN_MARKET,
        id="amend-unknown-market",
    ),
    pytest.param(
        plain(SetLeverage("alice", "X", 10)), R.UNKNOWN_MARKET, id="leverage-unknown-market"
    ),
    pytest.param(plain(SetMarkPrice("X", BTC_MARK)), R.UNKNOWN_MARKET, id="mark-unknown-market"),
    # UNKNOWN_ACCOUNT
    pytest.param(
        plain(limit("zed", BUY, ONE_BTC, BTC_MARK)), R.UNKNOWN_ACCOUNT, id="place-unknown-account"
    ),
    pytest.param(plain(Withdraw("zed", usdt(1))), R.UNKNOWN_ACCOUNT, id="withdraw-unknown-account"),
    pytest.param(plain(Withdraw(7, usdt(1))), R.UNKNOWN_ACCOUNT, id="withdraw-account-not-str"),  # type: ignore[arg-type]
    pytest.param(
        plain(CancelOrder("zed", BTC, order_id=1)), R.UNKNOWN_ACCOUNT, id="cancel-unknown-account"
    ),
    pytest.param(plain(CancelAll("zed")), R.UNKNOWN_ACCOUNT, id="cancel-all-unknown-account"),
    pytest.param(
        plain(AmendOrder("zed", BTC, order_id=1, qty=5)),
        R.UNKNOWN_ACCOUNT,
        id="amend-unknown-account",
    ),
    pytest.param(
        plain(SetLeverage("zed", BTC, 10)), R.UNKNOWN_ACCOUNT, id="leverage-unknown-account"
    ),
    # INVALID_ACCOUNT_ID (a deposit creates the account, so its id is validated)
    pytest.param(plain(Deposit("", usdt(1))), R.INVALID_ACCOUNT_ID, id="deposit-empty-id"),
    pytest.param(plain(Deposit("has space", usdt(1))), R.INVALID_ACCOUNT_ID, id="deposit-space-id"),
    pytest.param(plain(Deposit("x" * 37, usdt(1))), R.INVALID_ACCOUNT_ID, id="deposit-37-chars"),
    pytest.param(
        plain(Deposit("caf\u00e9", usdt(1))), R.INVALID_ACCOUNT_ID, id="deposit-non-ascii"
    ),
    pytest.param(
        plain(Deposit("new\n", usdt(1))), R.INVALID_ACCOUNT_ID, id="deposit-trailing-newline"
    ),
    pytest.param(plain(Deposit(42, usdt(1))), R.INVALID_ACCOUNT_ID, id="deposit-int-id"),  # type: ignore[arg-type]
    # UNKNOWN_ORDER
    pytest.param(
        plain(CancelOrder("alice", BTC, order_id=999)), R.UNKNOWN_ORDER, id="cancel-no-such-id"
    ),
    pytest.param(
        plain(CancelOrder("alice", BTC, client_id="nope")),
        R.UNKNOWN_ORDER,
        id="cancel-no-such-client-id",
    ),
    pytest.param(
        with_bid(lambda oid: CancelOrder("bob", BTC, order_id=oid)),
        R.UNKNOWN_ORDER,
        id="cancel-other-accounts-order",
    ),
    pytest.param(
        with_bid(lambda oid: CancelOrder("bob", BTC, client_id="a-1")),
        R.UNKNOWN_ORDER,
        id="cancel-other-accounts-client-id",
    ),
    pytest.param(
        with_bid(lambda oid: CancelOrder("alice", ETH, order_id=oid)),
        R.UNKNOWN_ORDER,
        id="cancel-wrong-market",
    ),
    pytest.param(
        with_bid(lambda oid: CancelOrder("alice", BTC, order_id=str(oid))),
        R.UNKNOWN_ORDER,
        id="cancel-id-as-str",
    ),
    pytest.param(
        with_bid(lambda oid: CancelOrder("alice", BTC, order_id=True)),
        R.UNKNOWN_ORDER,
        id="cancel-id-bool",
    ),
    pytest.param(with_filled_order, R.UNKNOWN_ORDER, id="cancel-filled-order"),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid + 1, qty=5)),
        R.UNKNOWN_ORDER,
        id="amend-no-such-id",
    ),
    # UNKNOWN_COMMAND
    pytest.param(plain(Unregistered()), R.UNKNOWN_COMMAND, id="unregistered-dataclass"),
    pytest.param(plain("cancel everything"), R.UNKNOWN_COMMAND, id="string"),
    pytest.param(plain(None), R.UNKNOWN_COMMAND, id="none"),
    # INVALID_ORDER
    pytest.param(plain(limit("alice", 0, ONE_BTC, BTC_MARK)), R.INVALID_ORDER, id="side-0"),
    pytest.param(plain(limit("alice", 2, ONE_BTC, BTC_MARK)), R.INVALID_ORDER, id="side-2"),
    pytest.param(plain(limit("alice", "BUY", ONE_BTC, BTC_MARK)), R.INVALID_ORDER, id="side-str"),
    # regressions (accepted on e11b3bf, since 1.0 == True == 1): side=1.0 leaked into events
    pytest.param(plain(limit("alice", 1.0, ONE_BTC, BTC_MARK)), R.INVALID_ORDER, id="side-float"),
    pytest.param(plain(limit("alice", True, ONE_BTC, BTC_MARK)), R.INVALID_ORDER, id="side-bool"),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, order_type="STOP")),
        R.INVALID_ORDER,
        id="order-type-unknown",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, tif="GTD")), R.INVALID_ORDER, id="tif-unknown"
    ),
    pytest.param(
        plain(PlaceOrder("alice", BTC, BUY, ONE_BTC, BTC_MARK, order_type=MARKET)),
        R.INVALID_ORDER,
        id="market-with-price",
    ),
    pytest.param(
        plain(mkt("alice", BUY, ONE_BTC, tif=TimeInForce.GTC)), R.INVALID_ORDER, id="market-gtc"
    ),
    pytest.param(
        plain(mkt("alice", BUY, ONE_BTC, tif=TimeInForce.POST_ONLY)),
        R.INVALID_ORDER,
        id="market-post-only",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, reduce_only=1)),
        R.INVALID_ORDER,
        id="reduce-only-int",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, reduce_only="yes")),
        R.INVALID_ORDER,
        id="reduce-only-str",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, stp="NONE")), R.INVALID_ORDER, id="stp-unknown"
    ),
    pytest.param(
        with_bid(lambda oid: CancelOrder("alice", BTC)), R.INVALID_ORDER, id="cancel-no-id"
    ),
    pytest.param(
        with_bid(lambda oid: CancelOrder("alice", BTC, order_id=oid, client_id="a-1")),
        R.INVALID_ORDER,
        id="cancel-both-ids",
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, qty=500)), R.INVALID_ORDER, id="amend-no-id"
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, client_id="a-1", qty=500)),
        R.INVALID_ORDER,
        id="amend-both-ids",
    ),
    # INVALID_QUANTITY
    pytest.param(plain(limit("alice", BUY, 0, BTC_MARK)), R.INVALID_QUANTITY, id="qty-0"),
    pytest.param(
        plain(limit("alice", BUY, -1_000, BTC_MARK)), R.INVALID_QUANTITY, id="qty-negative"
    ),
    pytest.param(plain(limit("alice", BUY, 1000.0, BTC_MARK)), R.INVALID_QUANTITY, id="qty-float"),
    pytest.param(plain(limit("alice", BUY, True, BTC_MARK)), R.INVALID_QUANTITY, id="qty-bool"),
    pytest.param(plain(limit("alice", BUY, "1000", BTC_MARK)), R.INVALID_QUANTITY, id="qty-str"),
    pytest.param(plain(limit("alice", BUY, None, BTC_MARK)), R.INVALID_QUANTITY, id="qty-None"),
    pytest.param(plain(mkt("alice", BUY, 0)), R.INVALID_QUANTITY, id="market-qty-0"),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, qty=0)),
        R.INVALID_QUANTITY,
        id="amend-qty-0",
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, qty=500.0)),
        R.INVALID_QUANTITY,
        id="amend-qty-float",
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, qty=False)),
        R.INVALID_QUANTITY,
        id="amend-qty-bool",
    ),
    pytest.param(with_filled_part, R.INVALID_QUANTITY, id="amend-qty-not-above-filled"),
    # INVALID_PRICE
    pytest.param(plain(limit("alice", BUY, ONE_BTC, 0)), R.INVALID_PRICE, id="price-0"),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, -600_000)), R.INVALID_PRICE, id="price-negative"
    ),
    pytest.param(plain(limit("alice", BUY, ONE_BTC, 600_000.0)), R.INVALID_PRICE, id="price-float"),
    pytest.param(plain(limit("alice", BUY, ONE_BTC, "600000")), R.INVALID_PRICE, id="price-str"),
    pytest.param(plain(limit("alice", BUY, ONE_BTC, True)), R.INVALID_PRICE, id="price-bool"),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, None)), R.INVALID_PRICE, id="limit-without-price"
    ),
    pytest.param(plain(SetMarkPrice(BTC, 0)), R.INVALID_PRICE, id="mark-0"),
    pytest.param(plain(SetMarkPrice(BTC, -1)), R.INVALID_PRICE, id="mark-negative"),
    pytest.param(plain(SetMarkPrice(BTC, 600_000.0)), R.INVALID_PRICE, id="mark-float"),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, price=0)),
        R.INVALID_PRICE,
        id="amend-price-0",
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, price=590_000.5)),
        R.INVALID_PRICE,
        id="amend-price-float",
    ),
    # INVALID_AMOUNT
    pytest.param(plain(Deposit("alice", 0)), R.INVALID_AMOUNT, id="deposit-0"),
    pytest.param(plain(Deposit("alice", -1)), R.INVALID_AMOUNT, id="deposit-negative"),
    pytest.param(plain(Deposit("alice", 1.5)), R.INVALID_AMOUNT, id="deposit-float"),
    pytest.param(plain(Deposit("alice", True)), R.INVALID_AMOUNT, id="deposit-bool"),
    pytest.param(plain(Deposit("alice", "100")), R.INVALID_AMOUNT, id="deposit-str"),
    pytest.param(plain(Deposit("alice", 10**18 + 1)), R.INVALID_AMOUNT, id="deposit-above-max"),
    pytest.param(
        plain(Deposit("newbie", 0)), R.INVALID_AMOUNT, id="deposit-0-does-not-create-account"
    ),
    pytest.param(plain(Withdraw("alice", 0)), R.INVALID_AMOUNT, id="withdraw-0"),
    pytest.param(plain(Withdraw("alice", -5)), R.INVALID_AMOUNT, id="withdraw-negative"),
    pytest.param(plain(Withdraw("alice", 2.0)), R.INVALID_AMOUNT, id="withdraw-float"),
    # INVALID_CLIENT_ORDER_ID
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, client_id="")),
        R.INVALID_CLIENT_ORDER_ID,
        id="client-id-empty",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, client_id="a b")),
        R.INVALID_CLIENT_ORDER_ID,
        id="client-id-space",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, client_id="c" * 37)),
        R.INVALID_CLIENT_ORDER_ID,
        id="client-id-37-chars",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, client_id="caf\u00e9")),
        R.INVALID_CLIENT_ORDER_ID,
        id="client-id-non-ascii",
    ),
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, BTC_MARK, client_id=12)),
        R.INVALID_CLIENT_ORDER_ID,
        id="client-id-int",
    ),
    # INVALID_LEVERAGE
    pytest.param(plain(SetLeverage("alice", BTC, 0)), R.INVALID_LEVERAGE, id="leverage-0"),
    pytest.param(plain(SetLeverage("alice", BTC, -5)), R.INVALID_LEVERAGE, id="leverage-negative"),
    pytest.param(
        plain(SetLeverage("alice", BTC, 126)), R.INVALID_LEVERAGE, id="leverage-above-first-bracket"
    ),
    pytest.param(
        plain(SetLeverage("alice", SOL, 76)), R.INVALID_LEVERAGE, id="leverage-above-sol-max"
    ),
    pytest.param(plain(SetLeverage("alice", BTC, 10.0)), R.INVALID_LEVERAGE, id="leverage-float"),
    pytest.param(plain(SetLeverage("alice", BTC, True)), R.INVALID_LEVERAGE, id="leverage-bool"),
    pytest.param(plain(SetLeverage("alice", BTC, "10")), R.INVALID_LEVERAGE, id="leverage-str"),
    pytest.param(plain(SetLeverage("alice", BTC, 20)), R.INVALID_LEVERAGE, id="leverage-unchanged"),
    # QTY_BELOW_MIN / QTY_ABOVE_MAX
    pytest.param(
        plain(limit("alice", BUY, 9, BTC_MARK, MINQ)), R.QTY_BELOW_MIN, id="limit-below-min"
    ),
    pytest.param(plain(mkt("alice", BUY, 9, MINQ)), R.QTY_BELOW_MIN, id="market-below-min"),
    pytest.param(
        with_minq_bid(lambda oid: AmendOrder("alice", MINQ, order_id=oid, qty=9)),
        R.QTY_BELOW_MIN,
        id="amend-below-min",
    ),
    pytest.param(
        plain(limit("alice", BUY, 2_001, BTC_MARK, MINQ)), R.QTY_ABOVE_MAX, id="limit-above-max"
    ),
    pytest.param(
        plain(mkt("alice", BUY, 1_001, MINQ)), R.QTY_ABOVE_MAX, id="market-above-market-max"
    ),
    pytest.param(
        plain(limit("alice", BUY, 1_000_001, BTC_MARK)), R.QTY_ABOVE_MAX, id="btc-limit-above-1000"
    ),
    pytest.param(plain(mkt("alice", BUY, 120_001)), R.QTY_ABOVE_MAX, id="btc-market-above-120"),
    pytest.param(
        with_minq_bid(lambda oid: AmendOrder("alice", MINQ, order_id=oid, qty=2_001)),
        R.QTY_ABOVE_MAX,
        id="amend-above-max",
    ),
    # NOTIONAL_BELOW_MIN: 1 lot at 60000 = 600000 * 1 * 10000 = 6e9 units = 60 USDT < 100 USDT
    pytest.param(
        plain(limit("alice", BUY, 1, BTC_MARK)), R.NOTIONAL_BELOW_MIN, id="limit-notional"
    ),
    pytest.param(plain(mkt("alice", BUY, 1)), R.NOTIONAL_BELOW_MIN, id="market-notional-at-mark"),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, qty=1)),
        R.NOTIONAL_BELOW_MIN,
        id="amend-notional",
    ),
    # PRICE_OUT_OF_BAND: [570000, 630000]
    pytest.param(
        plain(limit("alice", BUY, ONE_BTC, 630_001)), R.PRICE_OUT_OF_BAND, id="band-above"
    ),
    pytest.param(
        plain(limit("alice", SELL, ONE_BTC, 569_999)), R.PRICE_OUT_OF_BAND, id="band-below"
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, price=569_999)),
        R.PRICE_OUT_OF_BAND,
        id="amend-band",
    ),
    # INSUFFICIENT_MARGIN: 1000 BTC bid at 57000 needs 570000*1e6*1e4/20 = 2.85e14 > 1e14
    pytest.param(
        plain(limit("alice", BUY, 1_000_000, 570_000)), R.INSUFFICIENT_MARGIN, id="place-margin"
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, qty=1_000_000)),
        R.INSUFFICIENT_MARGIN,
        id="amend-margin",
    ),
    # WITHDRAWAL_EXCEEDS_AVAILABLE
    pytest.param(
        plain(Withdraw("alice", usdt(1_000_000) + 1)),
        R.WITHDRAWAL_EXCEEDS_AVAILABLE,
        id="withdraw-too-much",
    ),
    pytest.param(
        with_bid(lambda oid: Withdraw("alice", usdt(1_000_000))),
        R.WITHDRAWAL_EXCEEDS_AVAILABLE,
        id="withdraw-reserved",
    ),
    # MAX_POSITION_EXCEEDED: 20x allows 100M USDT = 1666.67 BTC; 125x allows 50000 USDT
    pytest.param(
        with_long(SetLeverage("alice", BTC, 125)),
        R.MAX_POSITION_EXCEEDED,
        id="leverage-125-with-1-btc",
    ),
    # DUPLICATE_CLIENT_ORDER_ID
    pytest.param(
        with_bid(lambda oid: limit("alice", SELL, ONE_BTC, 610_000, client_id="a-1")),
        R.DUPLICATE_CLIENT_ORDER_ID,
        id="duplicate-client-id",
    ),
    # POST_ONLY_WOULD_TAKE
    pytest.param(
        with_ask_then(limit("alice", BUY, ONE_BTC, BTC_MARK, tif=TimeInForce.POST_ONLY)),
        R.POST_ONLY_WOULD_TAKE,
        id="post-only-place",
    ),
    pytest.param(with_post_only_bid, R.POST_ONLY_WOULD_TAKE, id="post-only-amend"),
    # FOK_NOT_FILLABLE
    pytest.param(
        with_ask_then(limit("alice", BUY, 2 * ONE_BTC, BTC_MARK, tif=TimeInForce.FOK)),
        R.FOK_NOT_FILLABLE,
        id="fok-limit",
    ),
    pytest.param(
        plain(mkt("alice", BUY, ONE_BTC, tif=TimeInForce.FOK)),
        R.FOK_NOT_FILLABLE,
        id="fok-market-empty-book",
    ),
    # REDUCE_ONLY_WOULD_INCREASE
    pytest.param(
        plain(limit("alice", SELL, ONE_BTC, BTC_MARK, reduce_only=True)),
        R.REDUCE_ONLY_WOULD_INCREASE,
        id="reduce-only-flat",
    ),
    pytest.param(
        with_long(limit("alice", BUY, ONE_BTC, 590_000, reduce_only=True)),
        R.REDUCE_ONLY_WOULD_INCREASE,
        id="reduce-only-same-side",
    ),
    pytest.param(
        with_long(mkt("alice", BUY, ONE_BTC, reduce_only=True)),
        R.REDUCE_ONLY_WOULD_INCREASE,
        id="reduce-only-market",
    ),
    # AMEND_NO_CHANGE
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid)),
        R.AMEND_NO_CHANGE,
        id="amend-nothing-given",
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, order_id=oid, price=590_000, qty=1_000)),
        R.AMEND_NO_CHANGE,
        id="amend-same-values",
    ),
    pytest.param(
        with_bid(lambda oid: AmendOrder("alice", BTC, client_id="a-1", qty=1_000)),
        R.AMEND_NO_CHANGE,
        id="amend-same-qty-by-client-id",
    ),
    # ACCOUNT_IN_LIQUIDATION: anything but a reduce-only order, until LiquidationFinished
    pytest.param(
        in_liquidation(limit("lia", BUY, ONE_BTC, 563_000)),
        R.ACCOUNT_IN_LIQUIDATION,
        id="liquidating-limit-buy",
    ),
    pytest.param(
        in_liquidation(limit("lia", SELL, ONE_BTC, 563_000)),  # a sell not flagged reduce-only
        R.ACCOUNT_IN_LIQUIDATION,
        id="liquidating-limit-sell-not-reduce-only",
    ),
    pytest.param(
        in_liquidation(mkt("lia", BUY, ONE_BTC)),
        R.ACCOUNT_IN_LIQUIDATION,
        id="liquidating-market",
    ),
    pytest.param(
        in_liquidation(limit("lia", BUY, ONE_BTC, 300_000, market=ETH)),  # any market
        R.ACCOUNT_IN_LIQUIDATION,
        id="liquidating-other-market",
    ),
    # UNKNOWN_INDEX_SOURCE (BTC's sources are spot-a, spot-b, spot-c)
    pytest.param(
        plain(UpdateIndexSource(BTC, "spot-z", BTC_MARK)),
        R.UNKNOWN_INDEX_SOURCE,
        id="index-source-unknown",
    ),
    pytest.param(
        plain(UpdateIndexSource(BTC, "SPOT-A", BTC_MARK)),
        R.UNKNOWN_INDEX_SOURCE,
        id="index-source-case-sensitive",
    ),
    pytest.param(
        plain(UpdateIndexSource(BTC, 1, BTC_MARK)),  # type: ignore[arg-type]
        R.UNKNOWN_INDEX_SOURCE,
        id="index-source-int",
    ),
    pytest.param(
        plain(UpdateIndexSource("X", "spot-a", BTC_MARK)),
        R.UNKNOWN_MARKET,
        id="index-unknown-market",
    ),
    pytest.param(plain(UpdateIndexSource(BTC, "spot-a", 0)), R.INVALID_PRICE, id="index-price-0"),
    pytest.param(
        plain(UpdateIndexSource(BTC, "spot-a", 600_000.0)),  # type: ignore[arg-type]
        R.INVALID_PRICE,
        id="index-price-float",
    ),
    # INVALID_BACKSTOP
    pytest.param(
        plain(RegisterBackstop("alice", BTC, -1, 100_000)),
        R.INVALID_BACKSTOP,
        id="backstop-negative-qty",
    ),
    pytest.param(
        plain(RegisterBackstop("alice", BTC, 1.5, 100_000)),  # type: ignore[arg-type]
        R.INVALID_BACKSTOP,
        id="backstop-float-qty",
    ),
    pytest.param(
        plain(RegisterBackstop("alice", BTC, True, 100_000)),  # type: ignore[arg-type]
        R.INVALID_BACKSTOP,
        id="backstop-bool-qty",
    ),
    pytest.param(
        plain(RegisterBackstop("alice", BTC, 1_000, -1)),
        R.INVALID_BACKSTOP,
        id="backstop-negative-discount",
    ),
    pytest.param(
        plain(RegisterBackstop("alice", BTC, 1_000, 100_000_000)),  # 100%
        R.INVALID_BACKSTOP,
        id="backstop-discount-100pct",
    ),
    pytest.param(
        plain(RegisterBackstop(insurance_fund(BTC), BTC, 1_000, 100_000)),
        R.RESERVED_ACCOUNT,
        id="backstop-insurance-fund",
    ),
    pytest.param(
        plain(RegisterBackstop("zed", BTC, 1_000, 100_000)),
        R.UNKNOWN_ACCOUNT,
        id="backstop-unknown-account",
    ),
    pytest.param(
        plain(RegisterBackstop("alice", "X", 1_000, 100_000)),
        R.UNKNOWN_MARKET,
        id="backstop-unknown-market",
    ),
]


@pytest.mark.parametrize(("setup", "code"), CASES)
def test_rejection_changes_nothing(rex: Exchange, setup: Setup, code: RejectCode) -> None:
    command = setup(rex)
    assert_rejected(rex, command, code)


def test_account_id_length_limit_is_inclusive() -> None:
    ex = make_exchange(accounts=())
    ok(ex.submit(Deposit("a" * 36, usdt(1))))
    ok(ex.submit(Deposit("A.b_c:d/e-9", usdt(1))))
    assert_rejected(ex, Deposit("a" * 37, usdt(1)), R.INVALID_ACCOUNT_ID)


def test_client_id_length_limit_is_inclusive(rex: Exchange) -> None:
    ok(place(rex, "alice", BUY, ONE_BTC, 590_000, client_id="c" * 36))
    ok(place(rex, "alice", BUY, ONE_BTC, 590_000, client_id="A.b_c:d/e-9"))


def test_every_reject_code_is_covered() -> None:
    covered = {p.values[1] for p in CASES}
    assert covered | {R.TOO_MANY_OPEN_ORDERS} == set(RejectCode)


def test_a_rejection_answers_with_the_clock_time_and_no_sequence(rex: Exchange) -> None:
    rex.clock.advance(1234)  # type: ignore[attr-defined]
    rej = assert_rejected(rex, limit("alice", BUY, 0, BTC_MARK), R.INVALID_QUANTITY)
    assert rej.ts == 1_700_000_001_234
    assert rej.message
    record = rej.to_record()
    assert record["type"] == "Rejected" and record["code"] == "INVALID_QUANTITY"


# -- details carry the numbers -------------------------------------------------------------------
def test_band_boundaries_and_details(rex: Exchange) -> None:
    # band = mark * (1 +- 0.05) = [570_000, 630_000], both ends inclusive
    ok(place(rex, "alice", BUY, ONE_BTC, 570_000))
    ok(place(rex, "alice", SELL, ONE_BTC, 630_000))
    rej = assert_rejected(rex, limit("alice", BUY, ONE_BTC, 630_001), R.PRICE_OUT_OF_BAND)
    assert rej.details == {"mark": 600_000, "min_price": 570_000, "max_price": 630_000}
    # the band follows the mark: at 600001 it is [ceil(570000.95), floor(630001.05)]
    ok(rex.submit(SetMarkPrice(BTC, 600_001)))
    rej = assert_rejected(rex, limit("alice", BUY, ONE_BTC, 570_000), R.PRICE_OUT_OF_BAND)
    assert rej.details == {"mark": 600_001, "min_price": 570_001, "max_price": 630_001}
    ok(place(rex, "alice", SELL, ONE_BTC, 630_001))


def test_min_notional_boundary_and_details(rex: Exchange) -> None:
    ok(rex.submit(SetMarkPrice(BTC, 500_000)))  # band [475_000, 525_000]
    # 2 lots at 50000.0: 500000 * 2 * 10000 = 1e10 units = exactly 100 USDT -> allowed
    ok(place(rex, "alice", BUY, 2, 500_000))
    # 2 lots at 49999.9: 499999 * 2 * 10000 = 9_999_980_000 < 1e10
    rej = assert_rejected(rex, limit("alice", BUY, 2, 499_999), R.NOTIONAL_BELOW_MIN)
    assert rej.details == {"notional": 9_999_980_000, "min_notional": 10_000_000_000}
    # a market order is valued at the mark: 1 lot * 500000 * 10000 = 5e9
    rej = assert_rejected(rex, mkt("alice", SELL, 1), R.NOTIONAL_BELOW_MIN)
    assert rej.details["notional"] == 5_000_000_000


def test_qty_limits_limit_vs_market(rex: Exchange) -> None:
    rej = assert_rejected(rex, limit("alice", BUY, 9, BTC_MARK, MINQ), R.QTY_BELOW_MIN)
    assert rej.details == {"min_qty": 10}
    rej = assert_rejected(rex, mkt("alice", BUY, 1_001, MINQ), R.QTY_ABOVE_MAX)
    assert rej.details == {"max_qty": 1_000}
    rej = assert_rejected(rex, limit("alice", BUY, 2_001, BTC_MARK, MINQ), R.QTY_ABOVE_MAX)
    assert rej.details == {"max_qty": 2_000}
    # a limit order may exceed the market-order maximum
    ok(place(rex, "alice", BUY, 1_001, 590_000, MINQ))
    ok(place(rex, "alice", BUY, 2_000, 590_000, MINQ))
    ok(place(rex, "bob", BUY, 1_000, market=MINQ))  # market at its maximum: expires, no book
    # BTC: limit max 1000 BTC, market max 120 BTC
    assert_rejected(rex, mkt("alice", BUY, 120_001), R.QTY_ABOVE_MAX)
    ok(place(rex, "alice", BUY, 120_001, 570_000))  # 120.001 BTC as a limit order is fine


def test_insufficient_margin_details_are_exact() -> None:
    ex = make_exchange()
    ok(ex.submit(Deposit("dave", usdt(10_000))))
    open_position(ex, "dave", BUY, ONE_BTC)  # taker fee 600000*1000*5 = 3e9 (30 USDT)
    ok(ex.submit(SetMarkPrice(BTC, 590_000)))
    # collateral 9970 USDT; upnl = (590000 - 600000) * 1000 * 10000 = -1e11 (-1000 USDT);
    # position margin = 590000 * 1000 * 10000 / 20 = 2.95e11; available = 9970-1000-2950 = 6020
    assert ex.account_view("dave").available == 602_000_000_000
    # bid 2.5 BTC at 59000: 590000 * 2500 * 10000 / 20 = 737_500_000_000 (7375 USDT)
    rej = assert_rejected(ex, limit("dave", BUY, 2_500, 590_000), R.INSUFFICIENT_MARGIN)
    assert rej.details == {"required": 737_500_000_000, "available": 602_000_000_000}
    # an ask of 3 BTC while long 1: only the 2 BTC beyond the position are margined,
    # 595000 * 2000 * 10000 / 20 = 5.95e11 <= 6.02e11 -> accepted, 7e9 (70 USDT) left
    ok(place(ex, "dave", SELL, 3_000, 595_000))
    assert ex.account_view("dave").available == 7_000_000_000
    # 2 BTC more: 5 BTC asked, 4 beyond the position -> 1.19e12, 5.95e11 more than held
    rej = assert_rejected(ex, limit("dave", SELL, 2_000, 595_000), R.INSUFFICIENT_MARGIN)
    assert rej.details == {"required": 595_000_000_000, "available": 7_000_000_000}
    # withdrawals are bounded by the same available balance
    rej = assert_rejected(ex, Withdraw("dave", 7_000_000_001), R.WITHDRAWAL_EXCEEDS_AVAILABLE)
    assert rej.details == {"requested": 7_000_000_001, "available": 7_000_000_000}
    ok(ex.submit(Withdraw("dave", 7_000_000_000)))
    assert ex.account_view("dave").available == 0


def test_withdrawal_capped_by_collateral_even_with_profit() -> None:
    ex = make_exchange()
    ok(ex.submit(Deposit("erin", usdt(10_000))))
    open_position(ex, "erin", BUY, ONE_BTC)  # collateral 10000 - 30 = 9970 USDT
    ok(ex.submit(SetMarkPrice(BTC, 660_000)))
    # upnl = (660000-600000)*1000*10000 = 6e11; margin 6.6e12/20 = 3.3e11
    # available = 9.97e11 + 6e11 - 3.3e11 = 1.267e12 > collateral 9.97e11
    assert ex.account_view("erin").available == 1_267_000_000_000
    rej = assert_rejected(ex, Withdraw("erin", 997_000_000_001), R.WITHDRAWAL_EXCEEDS_AVAILABLE)
    assert rej.details == {"requested": 997_000_000_001, "available": 997_000_000_000}


def test_max_position_at_leverage_boundary_and_details(rex: Exchange) -> None:
    ok(rex.submit(SetLeverage("alice", BTC, 100)))
    # at 100x the largest bracket allowing it caps notional at 600000 USDT = 6e13 units,
    # i.e. 10 BTC at the 60000 mark (exposure is valued at the mark, not the order price)
    rej = assert_rejected(rex, limit("alice", BUY, 10_001, 590_000), R.MAX_POSITION_EXCEEDED)
    # 10001 * 600000 * 10000 = 60_006_000_000_000
    assert rej.details == {
        "notional": 60_006_000_000_000,
        "max_notional": 60_000_000_000_000,
        "leverage": 100,
    }
    ok(place(rex, "alice", BUY, 10_000, 590_000))  # exactly at the cap
    # open orders count toward the worst case: 10 BTC bid + 2 lots more is over
    assert_rejected(rex, limit("alice", BUY, 2, 590_000), R.MAX_POSITION_EXCEEDED)
    # the sell side is measured separately: asking 10 BTC is also exactly at the cap
    ok(place(rex, "alice", SELL, 10_000, 610_000))


def test_max_position_on_leverage_change_details() -> None:
    ex = make_exchange()
    open_position(ex, "alice", BUY, ONE_BTC)
    rej = assert_rejected(ex, SetLeverage("alice", BTC, 125), R.MAX_POSITION_EXCEEDED)
    # 1 BTC at 60000 = 6e12 > 50000 USDT = 5e12
    assert rej.details == {
        "notional": 6_000_000_000_000,
        "max_notional": 5_000_000_000_000,
        "leverage": 125,
    }
    ok(ex.submit(SetLeverage("alice", BTC, 100)))  # 600000 USDT cap


def test_too_many_open_orders_per_account_and_market() -> None:
    ex = make_exchange(config=ExchangeConfig(max_open_orders=2))
    first = rest(ex, "alice", BUY, ONE_BTC, 590_000)
    rest(ex, "alice", BUY, ONE_BTC, 589_000)
    rej = assert_rejected(ex, limit("alice", BUY, ONE_BTC, 588_000), R.TOO_MANY_OPEN_ORDERS)
    assert rej.details == {"max_open_orders": 2}
    assert_rejected(
        ex, limit("alice", BUY, ONE_BTC, 588_000, tif=TimeInForce.POST_ONLY), R.TOO_MANY_OPEN_ORDERS
    )
    # orders that never rest are not limited, nor are other markets or other accounts
    ok(place(ex, "alice", BUY, ONE_BTC, 588_000, tif=TimeInForce.IOC))
    ok(place(ex, "alice", SELL, ONE_BTC))
    rest(ex, "alice", BUY, 10, 290_000, market=ETH)
    rest(ex, "bob", BUY, ONE_BTC, 588_000)
    ok(ex.submit(CancelOrder("alice", BTC, order_id=first)))
    rest(ex, "alice", BUY, ONE_BTC, 588_000)


def test_invalid_leverage_details(rex: Exchange) -> None:
    rej = assert_rejected(rex, SetLeverage("alice", BTC, 126), R.INVALID_LEVERAGE)
    assert rej.details == {"max_leverage": 125}
    # a rejected SetLeverage does not create a position slot in the market
    assert "BTC-PERP" not in rex.accounts["alice"].positions


def test_amend_qty_not_above_filled_details(rex: Exchange) -> None:
    cmd = with_filled_part(rex)
    assert assert_rejected(rex, cmd, R.INVALID_QUANTITY).details == {"filled": 1_000}


def test_rejection_inside_a_busy_book_changes_nothing(rex: Exchange) -> None:
    """A rejected command after lots of activity (positions, resting and reduce-only orders,
    recent orders, trades on two markets) still leaves everything as it was."""
    open_position(rex, "alice", BUY, 2 * ONE_BTC)
    rest(rex, "alice", SELL, ONE_BTC, 610_000, reduce_only=True, client_id="ro")
    rest(rex, "bob", BUY, 3 * ONE_BTC, 595_000)
    rest(rex, "carol", SELL, ONE_BTC, 605_000)
    open_position(rex, "bob", SELL, 100, 300_000, market=ETH, counterparty="carol")
    before = snapshot(rex)
    for command, code in [
        (limit("alice", BUY, 5 * ONE_BTC, 605_000, tif=TimeInForce.FOK), R.FOK_NOT_FILLABLE),
        (limit("alice", BUY, ONE_BTC, 605_000, tif=TimeInForce.POST_ONLY), R.POST_ONLY_WOULD_TAKE),
        (limit("alice", SELL, ONE_BTC, 610_000, client_id="ro"), R.DUPLICATE_CLIENT_ORDER_ID),
        (AmendOrder("alice", BTC, client_id="ro", price=700_000), R.PRICE_OUT_OF_BAND),
        (limit("bob", BUY, 1_000_000, 595_000), R.INSUFFICIENT_MARGIN),
        (SetLeverage("bob", ETH, 0), R.INVALID_LEVERAGE),
        (Withdraw("carol", usdt(2_000_000)), R.WITHDRAWAL_EXCEEDS_AVAILABLE),
        (CancelOrder("carol", BTC, client_id="ro"), R.UNKNOWN_ORDER),
    ]:
        assert_rejected(rex, command, code)
    assert snapshot(rex) == before


@pytest.mark.parametrize("kind", ["cancel", "amend"])
def test_unhashable_client_id_is_rejected_not_raised(rex: Exchange, kind: str) -> None:
    # Regression (fails on e11b3bf): dict lookup of a list raised TypeError out of submit().
    rest(rex, "alice", BUY, ONE_BTC, 590_000, client_id="a-1")
    bad: Any = ["a-1"]
    cmd: Command = (
        CancelOrder("alice", BTC, client_id=bad)
        if kind == "cancel"
        else AmendOrder("alice", BTC, client_id=bad, qty=500)
    )
    before = snapshot(rex)
    events = rex.submit(cmd)
    assert len(events) == 1 and isinstance(events[0], Rejected)
    assert events[0].code in (R.UNKNOWN_ORDER, R.INVALID_CLIENT_ORDER_ID)
    assert snapshot(rex) == before


@pytest.mark.parametrize("bad", [["spot-a"], {"spot-a": 1}], ids=["list", "dict"])
def test_unhashable_index_source_is_rejected_not_raised(rex: Exchange, bad: Any) -> None:
    before = snapshot(rex)
    events = rex.submit(UpdateIndexSource(BTC, bad, BTC_MARK))
    assert len(events) == 1 and isinstance(events[0], Rejected)
    assert events[0].code is R.UNKNOWN_INDEX_SOURCE
    assert snapshot(rex) == before


# -- boundary conversions (decimal -> engine units) ----------------------------------------------
BTC_INSTRUMENT = default_instruments()[0]


@pytest.mark.parametrize(
    ("value", "ticks"),
    [
        ("60000", 600_000),
        ("60000.1", 600_001),
        ("0.1", 1),
        (Decimal("59999.9"), 599_999),
        (60000, 600_000),
        ("6E+4", 600_000),
    ],
)
def test_price_to_ticks_exact(value: Any, ticks: int) -> None:
    assert BTC_INSTRUMENT.price_to_ticks(value) == ticks
    assert BTC_INSTRUMENT.price_to_decimal(ticks) == Decimal(value)


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        "60000.05",
        "-1",
        "-0.1",
        "abc",
        "",
        0,
        "0",
        "-0",
        True,
        1.5,
        None,
        Decimal("NaN"),
    ],
)
def test_price_to_ticks_refuses(value: Any) -> None:
    with pytest.raises(EngineError) as info:
        BTC_INSTRUMENT.price_to_ticks(value)
    assert info.value.code is R.INVALID_PRICE


@pytest.mark.parametrize(
    ("value", "lots"), [("1", 1_000), ("0.001", 1), ("1.5", 1_500), (2, 2_000)]
)
def test_qty_to_lots_exact(value: Any, lots: int) -> None:
    assert BTC_INSTRUMENT.qty_to_lots(value) == lots
    assert BTC_INSTRUMENT.qty_to_decimal(lots) == Decimal(value)


@pytest.mark.parametrize(
    "value",
    ["NaN", "Infinity", "0.0005", "60000.0001", "-1", "abc", 0, "0", True, 1.0, None],
)
def test_qty_to_lots_refuses(value: Any) -> None:
    with pytest.raises(EngineError) as info:
        BTC_INSTRUMENT.qty_to_lots(value)
    assert info.value.code is R.INVALID_QUANTITY


@pytest.mark.parametrize(
    ("value", "units"),
    [
        ("1", 100_000_000),
        ("0.00000001", 1),
        ("60000.05", 6_000_005_000_000),
        (Decimal("2.5"), 250_000_000),
        (3, 300_000_000),
    ],
)
def test_money_units_exact(value: Any, units: int) -> None:
    assert money_units(value) == units


def test_money_units_is_signed_and_the_engine_refuses_non_positive(rex: Exchange) -> None:
    # money_units converts exactly; it is Deposit/Withdraw that refuse amounts <= 0
    assert money_units("-1") == -100_000_000
    assert money_units(0) == 0
    assert_rejected(rex, Deposit("alice", money_units("-1")), R.INVALID_AMOUNT)
    assert_rejected(rex, Withdraw("alice", money_units("0")), R.INVALID_AMOUNT)


@pytest.mark.parametrize(
    "value",
    ["NaN", "Infinity", "-Infinity", "abc", "", "0.000000001", "1.123456789", True, 1.5, None],
)
def test_money_units_refuses(value: Any) -> None:
    with pytest.raises(EngineError) as info:
        money_units(value)
    assert info.value.code is R.INVALID_AMOUNT


# Regressions (fail on e11b3bf): with more than 28 significant digits the decimal context
# rounded the quotient/product, so an off-tick or over-precise value was silently accepted.
def test_price_to_ticks_refuses_off_tick_beyond_28_digits() -> None:
    # 60000 + 1e-26 is off the 0.1 tick; 32 significant digits
    with pytest.raises(EngineError):
        BTC_INSTRUMENT.price_to_ticks("60000.00000000000000000000000001")


def test_qty_to_lots_refuses_off_lot_beyond_28_digits() -> None:
    with pytest.raises(EngineError):
        BTC_INSTRUMENT.qty_to_lots("1.0000000000000000000000000001")


def test_money_units_refuses_over_precise_beyond_28_digits() -> None:
    with pytest.raises(EngineError):
        money_units("1.000000000000000000000000000001")


def test_instrument_create_refuses_inexact_settings() -> None:
    base: dict[str, Any] = dict(
        tick_size="0.1",
        lot_size="0.001",
        min_qty="0.001",
        max_qty="1000",
        market_max_qty="120",
        min_notional="100",
        initial_price="60000",
    )
    Instrument.create("OK-PERP", **base)
    for bad in (
        {"initial_price": "60000.05"},
        {"min_qty": "0.0015"},
        {"tick_size": "0"},
        {"maker_fee": "0.000000001"},
        {"min_notional": "0.000000001"},
        {"market_max_qty": "1001"},  # market max above max
        {"default_leverage": 126},
        {"tick_size": "0.00001", "lot_size": "0.00001"},  # tick*lot not whole money units
    ):
        with pytest.raises(ValueError):
            Instrument.create("BAD-PERP", **{**base, **bad})


def test_insurance_fund_accounts_accept_deposits_only(rex: Exchange) -> None:
    fund = insurance_fund(BTC)
    for command in (
        Withdraw(fund, 1),
        PlaceOrder(fund, BTC, BUY, ONE_BTC, price=BTC_MARK),
        CancelAll(fund),
        SetLeverage(fund, BTC, 10),
    ):
        assert_rejected(rex, command, RejectCode.RESERVED_ACCOUNT)
    before = rex.accounts[fund].collateral
    ok(rex.submit(Deposit(fund, 5)))  # an operator may top the fund up
    assert rex.accounts[fund].collateral == before + 5


@pytest.mark.parametrize("bad_id", [["alice"], {"id": 1}, None, 7])
def test_an_account_id_that_is_not_a_string_is_a_typed_rejection(
    rex: Exchange, bad_id: Any
) -> None:
    """Even unhashable ones: the insurance-fund check must not raise TypeError first."""
    for command, code in [
        (PlaceOrder(bad_id, BTC, BUY, ONE_BTC, 600_000), R.UNKNOWN_ACCOUNT),
        (CancelOrder(bad_id, BTC, order_id=1), R.UNKNOWN_ACCOUNT),
        (CancelAll(bad_id, BTC), R.UNKNOWN_ACCOUNT),
        (Withdraw(bad_id, usdt(1)), R.UNKNOWN_ACCOUNT),
        (Deposit(bad_id, usdt(1)), R.INVALID_ACCOUNT_ID),
    ]:
        assert_rejected(rex, command, code)

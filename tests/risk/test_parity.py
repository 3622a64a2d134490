"""Parity: for portfolios built by driving the real sandbox engine, the checker's "before"
numbers (equity, MM, IM, order margin, available, margin ratio, cross liquidation prices) equal
``Exchange.account_view`` / ``Exchange.liquidation_price`` to the unit."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from perpbot.models import Account as AccountModel
from perpbot.models import Order as OrderModel
from perpbot.risk import (
    OpenOrderSnapshot,
    Portfolio,
    PositionSnapshot,
    RiskChecker,
    RiskLimits,
)
from perpbot.risk.margin import money_to_decimal, rate_to_decimal
from sandbox.engine import (
    Deposit,
    Exchange,
    ManualClock,
    PlaceOrder,
    SetLeverage,
    SetMarkPrice,
    Side,
    TimeInForce,
    default_instruments,
)
from sandbox.server.wire import account_json, order_json
from tests.risk import engine_rules

INSTRUMENTS = default_instruments()
BY_SYMBOL = {i.symbol: i for i in INSTRUMENTS}
SYMBOLS = tuple(BY_SYMBOL)
ACCOUNTS = ("alice", "bob")
CHECKER = RiskChecker(engine_rules(INSTRUMENTS), RiskLimits())


def _trade(ex: Exchange, account: str, symbol: str, side: Side, lots: int, offset: int) -> None:
    """``mm`` rests the opposite side at mark + offset (per-mille), ``account`` takes it."""
    market = ex.markets[symbol]
    price = max(1, market.mark * (1000 + offset) // 1000)
    ex.submit(PlaceOrder("mm", symbol, Side(-side), lots, price))
    ex.submit(PlaceOrder(account, symbol, side, lots, price, tif=TimeInForce.IOC))


trade = st.tuples(
    st.just("trade"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(SYMBOLS),
    st.sampled_from((Side.BUY, Side.SELL)),
    st.integers(1, 800),
    st.integers(-40, 40),
)
step = st.one_of(
    trade,
    trade,
    trade,
    st.tuples(
        st.just("rest"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(SYMBOLS),
        st.sampled_from((Side.BUY, Side.SELL)),
        st.integers(1, 3000),
        st.integers(5, 45),
    ),
    st.tuples(
        st.just("leverage"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(SYMBOLS),
        st.integers(1, 100),
    ),
    st.tuples(st.just("mark"), st.sampled_from(SYMBOLS), st.integers(-250, 250)),
)


def _apply(ex: Exchange, action: tuple[object, ...]) -> None:
    kind = action[0]
    if kind == "trade":
        _, account, symbol, side, lots, offset = action
        assert isinstance(account, str) and isinstance(symbol, str)
        assert isinstance(side, Side) and isinstance(lots, int) and isinstance(offset, int)
        _trade(ex, account, symbol, side, lots, offset)
    elif kind == "rest":  # a resting order away from the mark (does not cross the maker's)
        _, account, symbol, side, lots, offset = action
        assert isinstance(account, str) and isinstance(symbol, str)
        assert isinstance(side, Side) and isinstance(lots, int) and isinstance(offset, int)
        mark = ex.markets[symbol].mark
        price = mark * (1000 - side * offset) // 1000
        ex.submit(PlaceOrder(account, symbol, side, lots, max(1, price)))
    elif kind == "leverage":
        _, account, symbol, leverage = action
        assert isinstance(account, str) and isinstance(symbol, str) and isinstance(leverage, int)
        ex.submit(SetLeverage(account, symbol, leverage))
    else:
        _, symbol, move = action
        assert isinstance(symbol, str) and isinstance(move, int)
        mark = ex.markets[symbol].mark
        ex.submit(SetMarkPrice(symbol, max(1, mark * (1000 + move) // 1000)))


def _portfolio(ex: Exchange, account_id: str) -> Portfolio:
    """The account straight from engine state, converted with the instruments' scales."""
    account = ex.accounts[account_id]
    positions = []
    leverage = {}
    for symbol, pos in account.positions.items():
        inst = BY_SYMBOL[symbol]
        leverage[symbol] = pos.leverage
        if pos.size:
            size = inst.qty_to_decimal(pos.size)
            cost = money_to_decimal(pos.cost)
            positions.append(PositionSnapshot(symbol, size, cost / size, pos.leverage, cost))
    orders = tuple(
        OpenOrderSnapshot(
            o.market,
            "BUY" if o.side > 0 else "SELL",
            BY_SYMBOL[o.market].qty_to_decimal(o.remaining),
            BY_SYMBOL[o.market].price_to_decimal(o.price),
            o.reduce_only,
        )
        for o in ex.open_orders(account_id)
    )
    return Portfolio(money_to_decimal(account.collateral), tuple(positions), orders, leverage)


def _marks(ex: Exchange) -> dict[str, Decimal]:
    return {s: BY_SYMBOL[s].price_to_decimal(m.mark) for s, m in ex.markets.items()}


def _assert_parity(ex: Exchange, account_id: str, portfolio: Portfolio) -> None:
    view = ex.account_view(account_id)
    state = CHECKER.evaluate(portfolio, marks=_marks(ex))
    m = state.metrics
    assert m.equity == money_to_decimal(view.equity)
    assert m.maintenance_margin == money_to_decimal(view.maintenance_margin)
    assert m.initial_margin == money_to_decimal(view.position_margin)
    assert m.order_margin == money_to_decimal(view.order_margin)
    assert m.available == money_to_decimal(view.available)
    expected_ratio = None if view.margin_ratio is None else rate_to_decimal(view.margin_ratio)
    assert m.margin_ratio == expected_ratio
    for pv in view.positions:
        if not pv.size:
            continue
        ticks = ex.liquidation_price(account_id, pv.market)
        expected = None if ticks is None else BY_SYMBOL[pv.market].price_to_decimal(ticks)
        assert state.liquidation_prices[pv.market] == expected, pv.market


@given(
    deposits=st.tuples(st.integers(200, 200_000), st.integers(200, 200_000)),
    steps=st.lists(step, min_size=3, max_size=30),
)
def test_checker_matches_engine(deposits: tuple[int, int], steps: list[tuple[object, ...]]) -> None:
    ex = Exchange(INSTRUMENTS, clock=ManualClock(1_700_000_000_000))
    ex.submit(Deposit("mm", 10**9 * 10**8))
    for account, usdt in zip(ACCOUNTS, deposits, strict=True):
        ex.submit(Deposit(account, usdt * 10**8))
    for action in steps:
        _apply(ex, action)
    for account in ACCOUNTS:
        _assert_parity(ex, account, _portfolio(ex, account))


@given(steps=st.lists(step, min_size=1, max_size=15))
def test_from_models_matches_engine(steps: list[tuple[object, ...]]) -> None:
    """The same parity through the wire: ``Portfolio.from_models`` on the JSON the server sends."""
    ex = Exchange(INSTRUMENTS, clock=ManualClock(1_700_000_000_000))
    ex.submit(Deposit("mm", 10**9 * 10**8))
    for account in ACCOUNTS:
        ex.submit(Deposit(account, 20_000 * 10**8))
    for action in steps:
        _apply(ex, action)
    for account in ACCOUNTS:
        model = AccountModel.model_validate(account_json(BY_SYMBOL, ex.account_view(account)))
        orders = [
            OrderModel.model_validate(order_json(BY_SYMBOL[o.market], o))
            for o in ex.open_orders(account)
        ]
        _assert_parity(ex, account, Portfolio.from_models(model, orders))


@given(
    size=st.integers(-(10**6), 10**6).filter(bool),
    mark=st.integers(1, 10**7),
    other_equity=st.integers(-(10**14), 10**16),
    other_mm=st.integers(0, 10**13),
    entry=st.integers(1, 10**7),
    symbol=st.sampled_from(SYMBOLS),
)
def test_closed_form_liquidation_price_matches_bisection(
    size: int, mark: int, other_equity: int, other_mm: int, entry: int, symbol: str
) -> None:
    """The checker's per-bracket closed form equals the shared bisection across every bracket
    (positions far larger than the sandbox allows included)."""
    from perpbot.risk.checker import _liquidation, _Market, _Pos, _Totals
    from perpbot.risk.margin import liquidation_price, maintenance_margin

    market = _Market(CHECKER.rules[symbol])
    pos = _Pos(market, 20, mark)
    pos.size, pos.cost = size, size * entry * market.factor
    value = size * mark * market.factor
    mm = other_mm + maintenance_margin(market.brackets, abs(value))
    totals = _Totals(other_equity + value - pos.cost, 0, 0, mm, 0)
    expected = liquidation_price(
        size, pos.cost, market.factor, market.brackets, other_equity, other_mm, mark
    )
    assert _liquidation(pos, totals) == expected

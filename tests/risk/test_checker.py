"""Hand-computed checks of :class:`perpbot.risk.RiskChecker`: the worked example of the module
docstring, every reason code, resize, liquidation bands and distances."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from perpbot.models import MarketInfo, OrderBook
from perpbot.risk import (
    REASON_CODES,
    OpenOrderSnapshot,
    Portfolio,
    PositionSnapshot,
    ProposedOrder,
    RiskChecker,
    RiskLimits,
    RiskReport,
)
from tests.risk import engine_rules

D = Decimal
BTC, ETH = "BTC-PERP", "ETH-PERP"
RULES = engine_rules()
MARKS = {BTC: D(59000), ETH: D(3000), "SOL-PERP": D(150)}
# 10,000 USDT, long 1 BTC from 60,000 at 10x; mark 59,000 (docs in perpbot/risk/checker.py).
LONG = Portfolio(D(10000), (PositionSnapshot(BTC, D(1), D(60000), 10),), (), {BTC: 10})


def check(
    limits: RiskLimits,
    order: ProposedOrder,
    portfolio: Portfolio = LONG,
    **kwargs: object,
) -> RiskReport:
    report = RiskChecker(RULES, limits).check(portfolio, order, marks=MARKS, **kwargs)  # type: ignore[arg-type]
    return report


def codes(report: RiskReport) -> list[str]:
    return [r.code for r in report.reasons]


def book(asks: list[tuple[str, str]], bids: list[tuple[str, str]] = ()) -> OrderBook:  # type: ignore[assignment]
    return OrderBook(market=BTC, seq=1, ts=0, asks=asks, bids=list(bids))


def test_worked_example() -> None:
    report = check(RiskLimits(), ProposedOrder(BTC, "BUY", D("0.2")))
    assert report.decision == "allow" and report.allowed_qty == D("0.2") and not report.reasons
    b, a = report.before, report.after
    assert (b.equity, b.initial_margin, b.maintenance_margin) == (D(9000), D(5900), D(245))
    assert (b.available, b.margin_ratio) == (D(3100), D("0.02722223"))
    assert report.order_margin_required == D(1239)  # 0.2 x 61,950 / 10
    assert report.fees == D("5.9") and report.expected_fill == D(59000)
    assert (a.equity, a.initial_margin, a.maintenance_margin) == (D("8994.1"), D(7080), D(304))
    assert (a.available, a.margin_ratio) == (D("1914.1"), D("0.03379994"))
    assert report.liquidation_prices == {BTC: D("51721.8")}
    dist = report.distance[BTC]
    assert dist.price_gap == D("7278.2") and dist.relative == D("7278.2") / D(59000)
    state = RiskChecker(RULES, RiskLimits()).evaluate(LONG, marks=MARKS)
    assert state.liquidation_prices == {BTC: D("50201.0")}

    resized = check(RiskLimits(min_available=D(2000)), ProposedOrder(BTC, "BUY", D("0.2")))
    assert resized.decision == "resize" and resized.allowed_qty == D("0.185")
    assert codes(resized) == ["AVAILABLE_BELOW_MIN"]
    assert resized.reasons[0].details == {"available": "1914.10000000", "limit": "2000"}
    assert resized.after.available == D("2003.0425")


def test_closing_orders_always_pass_and_reduce_only_is_capped() -> None:
    strict = RiskLimits(max_margin_ratio=D("0.0001"), min_available=D(10**9))
    closing = check(strict, ProposedOrder(BTC, "SELL", D("0.5"), D(59000)))
    assert closing.decision == "allow"
    # no book: a limit order is a maker; 9,000 - 0.02% x 29,500 (the loss was already in equity)
    assert closing.after.equity == D("8994.1") and closing.fees == D("5.9")
    capped = check(RiskLimits(), ProposedOrder(BTC, "SELL", D(3), reduce_only=True))
    assert capped.decision == "resize" and capped.allowed_qty == D(1)
    assert codes(capped) == ["REDUCE_ONLY_WOULD_INCREASE_POSITION"]
    wrong_way = check(RiskLimits(), ProposedOrder(BTC, "BUY", D(1), reduce_only=True))
    assert wrong_way.decision == "reject" and wrong_way.allowed_qty == 0
    # a flip past zero: the closing part always passes, the rest is limited
    flip = check(RiskLimits(min_available=D(2000)), ProposedOrder(BTC, "SELL", D(3)))
    assert flip.decision == "resize" and D(1) <= flip.allowed_qty < D(3)


@pytest.mark.parametrize(
    ("order", "code"),
    [
        (ProposedOrder("DOGE-PERP", "BUY", D(1)), "UNKNOWN_MARKET"),
        (ProposedOrder(BTC, "LONG", D(1)), "INVALID_SIDE"),
        (ProposedOrder(BTC, "BUY", D("0.0005")), "INVALID_QUANTITY"),
        (ProposedOrder(BTC, "BUY", D("0.1"), D("59000.05")), "INVALID_PRICE"),
        (ProposedOrder(BTC, "BUY", D("0.001"), D(59000)), "NOTIONAL_BELOW_MIN"),
        (ProposedOrder(BTC, "BUY", D(1), reduce_only=True), "REDUCE_ONLY_WOULD_INCREASE_POSITION"),
    ],
)
def test_order_errors_reject(order: ProposedOrder, code: str) -> None:
    report = check(RiskLimits(), order)
    assert report.decision == "reject" and codes(report) == [code]
    assert report.after == report.before


def test_missing_mark_and_min_qty() -> None:
    checker = RiskChecker(RULES, RiskLimits())
    report = checker.check(LONG, ProposedOrder(ETH, "BUY", D(1)), marks={BTC: D(59000)})
    assert codes(report) == ["MISSING_MARK"]
    rules = dict(RULES)
    rules[ETH] = replace(rules[ETH], min_qty=D("0.01"))
    report = RiskChecker(rules, RiskLimits()).check(
        LONG, ProposedOrder(ETH, "BUY", D("0.009")), marks=MARKS
    )
    assert codes(report) == ["QTY_BELOW_MIN"]


def test_engine_entry_checks() -> None:
    # 1 BTC more needs 1 x 61,950 / 10 = 6,195 > 3,100 available: resized, as the engine would
    report = check(RiskLimits(), ProposedOrder(BTC, "BUY", D(1)))
    assert codes(report)[0] == "INSUFFICIENT_MARGIN"
    assert report.reasons[0].details == {"required": "6195.00000000", "available": "3100.00000000"}
    assert report.decision == "resize" and report.allowed_qty == D("0.500")  # 0.5 x 6,195 = 3,097.5
    rich = Portfolio(D(10**7), (), (), {BTC: 125})
    capped = check(RiskLimits(), ProposedOrder(BTC, "BUY", D(1)), rich)  # 125x: cap 50,000
    assert codes(capped) == ["MAX_POSITION_EXCEEDED"]
    assert capped.reasons[0].details["max_notional"] == "50000.00000000"
    assert capped.allowed_qty == D("0.847")  # 0.847 x 59,000 = 49,973 <= 50,000


def test_limit_codes() -> None:
    order = ProposedOrder(BTC, "BUY", D("0.2"))
    assert codes(check(RiskLimits(max_margin_ratio=D("0.03")), order)) == [
        "MARGIN_RATIO_EXCEEDS_MAX"
    ]
    lev = check(RiskLimits(max_leverage=D(7)), order)  # 70,800 / 8,994.1 = 7.87
    assert codes(lev) == ["LEVERAGE_EXCEEDS_MAX"] and lev.decision == "resize"
    close = check(RiskLimits(min_liquidation_distance=D("0.13")), order)  # 7278.2/59000 = 0.1234
    assert codes(close) == ["LIQUIDATION_TOO_CLOSE"]
    assert close.reasons[0].details["market"] == BTC
    vol = {BTC: D("0.8")}  # 24 h sigma: 0.8 x sqrt(1/365) = 4.19%; ln(59000/51721.8) / it = 3.15
    sig = check(RiskLimits(min_liquidation_sigmas=D("3.2")), order, volatility=vol)
    assert codes(sig) == ["LIQUIDATION_WITHIN_SIGMAS"]
    assert D("3.1") < D(sig.reasons[0].details["sigmas"]) < D("3.2")
    ok = check(RiskLimits(min_liquidation_sigmas=D(3)), order, volatility=vol)
    assert ok.decision == "allow" and ok.distance[BTC].sigmas is not None


def test_book_slippage_and_liquidity() -> None:
    asks = [("59000", "0.1"), ("59100", "0.1"), ("59300", "1")]
    report = check(RiskLimits(), ProposedOrder(BTC, "BUY", D("0.3")), books={BTC: book(asks)})
    # (5,900 + 5,910 + 5,930) / 0.3 = 59,133.33...; slippage 133.33 / 59,000
    assert report.expected_fill is not None and D("59133.33") < report.expected_fill < D("59133.34")
    assert report.slippage is not None and D("0.00225") < report.slippage < D("0.00226")
    # the after state fills at the tick rounded against the buyer: 59,133.4
    assert report.fees == D("8.87001")  # 0.3 x 59,133.4 = 17,740.02 x 0.05%
    slip = check(
        RiskLimits(max_slippage=D("0.002")),
        ProposedOrder(BTC, "BUY", D("0.3")),
        books={BTC: book(asks)},
    )
    assert codes(slip) == ["SLIPPAGE_EXCEEDS_MAX"]
    thin = check(RiskLimits(), ProposedOrder(BTC, "BUY", D(5)), books={BTC: book(asks)})
    assert codes(thin) == ["INSUFFICIENT_LIQUIDITY"] and thin.decision == "reject"


def test_funding_cost_over_horizon() -> None:
    limits = RiskLimits(funding_horizon_hours=D(24))
    report = check(limits, ProposedOrder(BTC, "BUY", D("0.2")), funding_rates={BTC: D("0.0001")})
    # 70,800 notional x 0.01% x 3 intervals = 21.24 paid by the long
    assert report.funding_cost == D("21.24")


def test_open_orders_hold_margin() -> None:
    portfolio = Portfolio(
        D(10000),
        LONG.positions,
        (OpenOrderSnapshot(BTC, "BUY", D("0.1"), D(58000)),),
        {BTC: 10},
    )
    report = check(RiskLimits(), ProposedOrder(BTC, "BUY", D("0.1"), D(57000)), portfolio)
    assert report.before.order_margin == D(580)  # 0.1 x 58,000 / 10
    assert report.before.available == D(2520)
    # resting both: ceil((5,800 + 5,700) x 0.2 / (0.2 x 10)) = 1,150; 570 more needed
    assert report.order_margin_required == D(570)


@pytest.mark.parametrize("limit", ["0.03", "0.05", "0.2"])
def test_resize_is_the_largest_passing_quantity(limit: str) -> None:
    limits = RiskLimits(max_margin_ratio=D(limit), min_available=D(0))
    checker = RiskChecker(RULES, limits)
    order = ProposedOrder(BTC, "BUY", D(3))
    report = checker.check(LONG, order, marks=MARKS)
    allowed = report.allowed_qty

    def passes(qty: Decimal) -> bool:
        return checker.check(LONG, ProposedOrder(BTC, "BUY", qty), marks=MARKS).decision == "allow"

    assert report.decision in ("resize", "reject")
    if allowed:
        assert passes(allowed)
    assert not passes(allowed + D("0.001"))
    assert all(
        passes(D(q) / 1000) for q in range(2, int(allowed * 1000), 37)
    )  # 0.001 < min notional


def _ratio_at(portfolio: Portfolio, symbol: str, mark: Decimal) -> Decimal | None:
    marks = dict(MARKS)
    marks[symbol] = mark
    return RiskChecker(RULES, RiskLimits()).evaluate(portfolio, marks=marks).metrics.margin_ratio


@pytest.mark.parametrize("size", [D(1), D(-1)])
def test_liquidation_band_edges(size: Decimal) -> None:
    two = Portfolio(
        D(6000),
        (PositionSnapshot(BTC, size, D(59000), 20), PositionSnapshot(ETH, D(-5), D(3000), 20)),
        (),
        {},
    )
    band = RiskChecker(RULES, RiskLimits()).evaluate(two, marks=MARKS).bands[BTC]
    assert band.pressure_price is not None and band.liquidation_price is not None
    tick = D("0.1") if size > 0 else D("-0.1")  # one tick towards safety
    at_call = _ratio_at(two, BTC, band.pressure_price)
    assert at_call is not None and at_call >= D("0.8")
    safer = _ratio_at(two, BTC, band.pressure_price + tick)
    assert safer is not None and safer < D("0.8")
    at_liq = _ratio_at(two, BTC, band.liquidation_price)
    assert at_liq is None or at_liq >= 1
    after = _ratio_at(two, BTC, band.liquidation_price + tick)
    assert after is not None and after < 1
    # the band lies between the mark and the liquidation price
    lo, hi = sorted((band.liquidation_price, D(59000)))
    assert lo <= band.pressure_price <= hi


def test_market_rules_from_market_info() -> None:
    info = MarketInfo.model_validate(
        {
            "symbol": BTC,
            "tick_size": "0.1",
            "lot_size": "0.001",
            "min_qty": "0.001",
            "max_qty": "1000",
            "market_max_qty": "120",
            "min_notional": "100",
            "price_band": "0.05",
            "market_band": "0.05",
            "maker_fee": "0.0002",
            "taker_fee": "0.0005",
            "default_leverage": 20,
            "funding_interval_ms": 28_800_000,
            "liquidation_mode": "INCREMENTAL",
            "brackets": [
                {
                    "notional_cap": c,
                    "max_leverage": lev,
                    "maintenance_rate": r,
                    "maintenance_amount": "0",
                }
                for c, lev, r in (
                    ("50000", 125, "0.004"),
                    ("600000", 100, "0.005"),
                    ("3000000", 75, "0.0065"),
                    ("12000000", 50, "0.01"),
                    ("70000000", 25, "0.02"),
                    ("100000000", 20, "0.025"),
                )
            ],
        }
    )
    from perpbot.risk import MarketRules

    assert MarketRules.from_market_info(info) == RULES[BTC]


def test_every_reason_code_has_a_case() -> None:
    """Each code of REASON_CODES, produced by one minimal case (self-contained: xdist-safe)."""
    order = ProposedOrder(BTC, "BUY", D("0.2"))
    asks = [("59000", "0.1"), ("59100", "0.1"), ("59300", "1")]
    hedge = Portfolio(
        D(9000),
        (PositionSnapshot(BTC, D(1), D(60000), 20), PositionSnapshot(ETH, D(-20), D(3000), 20)),
    )
    checker = RiskChecker(RULES, RiskLimits())
    reports = [
        check(RiskLimits(), ProposedOrder("DOGE-PERP", "BUY", D(1))),
        checker.check(LONG, ProposedOrder(ETH, "BUY", D(1)), marks={BTC: D(59000)}),
        check(RiskLimits(), ProposedOrder(BTC, "LONG", D(1))),
        check(RiskLimits(), ProposedOrder(BTC, "BUY", D("0.0005"))),
        check(RiskLimits(), ProposedOrder(BTC, "BUY", D("0.1"), D("59000.05"))),
        RiskChecker({**RULES, BTC: replace(RULES[BTC], min_qty=D("0.01"))}, RiskLimits()).check(
            LONG, ProposedOrder(BTC, "BUY", D("0.005")), marks=MARKS
        ),
        check(RiskLimits(), ProposedOrder(BTC, "BUY", D("0.001"), D(59000))),
        check(RiskLimits(), ProposedOrder(BTC, "BUY", D(5)), books={BTC: book(asks)}),
        check(RiskLimits(), ProposedOrder(BTC, "SELL", D(2), reduce_only=True)),
        check(RiskLimits(), ProposedOrder(BTC, "BUY", D(1))),
        check(
            RiskLimits(), ProposedOrder(BTC, "BUY", D(1)), Portfolio(D(10**7), (), (), {BTC: 125})
        ),
        check(RiskLimits(max_margin_ratio=D("0.03")), order),
        check(RiskLimits(min_available=D(2000)), order),
        check(RiskLimits(max_leverage=D(7)), order),
        check(
            RiskLimits(max_slippage=D("0.002")),
            ProposedOrder(BTC, "BUY", D("0.3")),
            books={BTC: book(asks)},
        ),
        check(RiskLimits(min_liquidation_distance=D("0.13")), order),
        check(RiskLimits(min_liquidation_sigmas=D("3.2")), order, volatility={BTC: D("0.8")}),
        check(RiskLimits(survive_stress=True), ProposedOrder(BTC, "BUY", D("0.002")), hedge),
    ]
    produced = [r.reasons[0].code if r.reasons else r.decision for r in reports]
    assert produced == list(REASON_CODES)
    for report in reports:
        assert all(isinstance(v, str) for r in report.reasons for v in r.details.values())


def test_repeated_checks_share_the_before_state_without_leaking() -> None:
    """One checker, one portfolio, many orders (a ladder): each report equals a fresh
    checker's, including an order in a market the portfolio holds nothing in, and a change of
    marks in the same dict object is seen."""
    shared = RiskChecker(RULES, RiskLimits(min_available=D(2000)))
    marks = dict(MARKS)
    orders = [
        ProposedOrder(ETH, "SELL", D("1")),
        ProposedOrder(BTC, "BUY", D("0.2")),
        ProposedOrder(BTC, "SELL", D("0.5"), D(59100)),
        ProposedOrder(ETH, "SELL", D("1")),
    ]
    for order in orders:
        got = shared.check(LONG, order, marks=marks)
        fresh = RiskChecker(RULES, RiskLimits(min_available=D(2000))).check(
            LONG, order, marks=dict(marks)
        )
        assert (got.decision, got.allowed_qty, got.before, got.after) == (
            fresh.decision,
            fresh.allowed_qty,
            fresh.before,
            fresh.after,
        )
        assert dict(got.liquidation_prices) == dict(fresh.liquidation_prices)
    marks[BTC] = D(58000)  # the same dict, new mark: the cached state must not be reused
    moved = shared.check(LONG, orders[1], marks=marks)
    assert moved.before.equity == D(9000) - D(1000)


@pytest.mark.parametrize("seed", range(6))
def test_distance_screen_equals_solving_every_liquidation_price(seed: int) -> None:
    """The one-evaluation distance screen agrees with solving each liquidation price exactly
    and comparing, for positions not already liquidatable."""
    import random

    from perpbot.risk import OpenOrderSnapshot, PositionSnapshot
    from perpbot.risk import checker as impl

    rng = random.Random(seed)
    checker = RiskChecker(RULES, RiskLimits())
    for _ in range(40):
        positions = []
        for symbol, mark in MARKS.items():
            lots = rng.choice([-1, 1]) * rng.randint(1, 3000)
            lot = D("0.01") if symbol == "SOL-PERP" else D("0.001")
            entry = (mark * D(rng.uniform(0.9, 1.1))).quantize(D("0.1"))
            positions.append(PositionSnapshot(symbol, lot * lots, entry, rng.randint(1, 20)))
        orders = (OpenOrderSnapshot(BTC, "BUY", D("0.1"), D(58000)),)
        portfolio = Portfolio(D(rng.randint(2_000, 60_000)), tuple(positions), orders, {})
        collateral, book = checker._book(portfolio, MARKS)
        t = impl._totals(collateral, book)
        for _ in range(5):
            num, den = rng.randint(1, 300), 1000
            for pos in book.values():
                liq = impl._liquidation(pos, t)
                if liq is None:
                    expected = False
                elif (pos.size > 0 and liq >= pos.mark) or (pos.size < 0 and liq <= pos.mark):
                    continue  # already liquidatable: the screen (rightly) calls it close
                else:
                    expected = abs(pos.mark - liq) * den < num * pos.mark
                assert impl._within(pos, t, num, den) == expected
            # the cheap slack screen in front of _within never drops a close position
            exact = {s for s, pos in book.items() if impl._within(pos, t, num, den)}
            assert {s for s, _ in impl._near(book, t, num, den)} == exact


@pytest.mark.parametrize("bad", [D("NaN"), D("sNaN"), D("Infinity"), 1.5])
def test_snapshots_refuse_non_finite_or_float_numbers(bad: object) -> None:
    from perpbot.risk import OpenOrderSnapshot, PositionSnapshot

    with pytest.raises(ValueError, match="finite Decimal"):
        PositionSnapshot(BTC, bad, D(60000), 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite Decimal"):
        OpenOrderSnapshot(BTC, "BUY", D("0.1"), bad)  # type: ignore[arg-type]


def test_fresh_equal_snapshots_convert_once_and_match() -> None:
    """Equal position snapshots inside new Portfolio objects reuse their conversion; the
    result equals a checker that never saw them."""
    from dataclasses import replace

    order = ProposedOrder(BTC, "BUY", D("0.1"))
    warm = RiskChecker(RULES, RiskLimits(min_liquidation_distance=D("0.05")))
    warm.check(LONG, order, marks=MARKS)
    fresh = replace(LONG, collateral=LONG.collateral + D("0.01"))
    memo_size = len(warm._memo)
    got = warm.check(fresh, order, marks=MARKS)
    assert len(warm._memo) == memo_size  # nothing converted again
    cold = RiskChecker(RULES, RiskLimits(min_liquidation_distance=D("0.05")))
    want = cold.check(fresh, order, marks=MARKS)
    assert (got.decision, got.before, got.after) == (want.decision, want.before, want.after)
    assert got.after.equity == want.after.equity and got.before.collateral == LONG.collateral + D(
        "0.01"
    )

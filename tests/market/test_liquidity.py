"""Liquidity agents against a real Exchange: accepted commands, book shape, incremental
requoting, inventory and exposure limits, and staying clear of other accounts' orders.

BTC-PERP units: 1 tick = 0.1 USDT (60000 USDT = 600_000 ticks, 1 bp = 60 ticks), 1 lot = 0.001
BTC. THICK at 60000: levels 60, 81, 109, 148, ... ticks from the centre, 33, 88, 155, ... lots.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from itertools import pairwise

import pytest

from perpbot.risk.margin import MONEY_SCALE, RATE_SCALE, max_notional_at
from sandbox.engine import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    Event,
    Exchange,
    Instrument,
    ManualClock,
    OrderType,
    PlaceOrder,
    Rejected,
    SetMarkPrice,
    Side,
    Tick,
    TimeInForce,
    UpdateIndexSource,
    default_instruments,
)
from sandbox.engine.book import Order
from sandbox.market import (
    DEFAULT_AGENT_COLLATERAL,
    PROFILES,
    THICK,
    THIN,
    LiquidityAgent,
    LiquidityProfile,
    funding_commands,
)

START_MS = 1_700_000_000_000
BTC = "BTC-PERP"
TAKER = "taker"
USDT = MONEY_SCALE


def instrument(symbol: str = BTC) -> Instrument:
    return next(i for i in default_instruments() if i.symbol == symbol)


def setup(
    *agents_of: LiquidityAgent, inst: Instrument | None = None
) -> tuple[Exchange, ManualClock]:
    """An exchange with ``inst`` (BTC), the agents funded and a taker with 10M USDT."""
    clock = ManualClock(START_MS)
    ex = Exchange([inst or instrument()], clock=clock)
    submit(ex, [*funding_commands(agents_of), Deposit(TAKER, 10_000_000 * USDT)])
    return ex, clock


def submit(ex: Exchange, commands: Iterable[Command]) -> list[Event]:
    """Submit in order; every command must be accepted."""
    events: list[Event] = []
    for command in commands:
        out = ex.submit(command)
        rejected = [e for e in out if isinstance(e, Rejected)]
        assert not rejected, (command, rejected)
        events.extend(out)
    return events


def set_index(ex: Exchange, clock: ManualClock, symbol: str, price: int) -> None:
    """Every source of ``symbol`` at ``price``, then a Tick a second later: index = mark."""
    clock.advance(1_000)
    sources = ex.markets[symbol].instrument.mechanics.index.weights
    submit(ex, [UpdateIndexSource(symbol, s, price) for s in sources])
    submit(ex, [Tick()])
    assert ex.prices(symbol).index == price


def quote(ex: Exchange, agent: LiquidityAgent) -> list[Command]:
    """Ask the agent and submit its commands; return them."""
    commands = agent.commands(ex)
    submit(ex, commands)
    return commands


def sides(orders: Sequence[Order]) -> tuple[list[Order], list[Order]]:
    """Bids best (highest) first, asks best (lowest) first."""
    bids = sorted((o for o in orders if o.side > 0), key=lambda o: -o.price)
    asks = sorted((o for o in orders if o.side < 0), key=lambda o: o.price)
    return bids, asks


def assert_uncrossed(ex: Exchange, symbol: str = BTC) -> None:
    book = ex.book_snapshot(symbol, depth=1)
    if book.bids and book.asks:
        assert book.bids[0][0] < book.asks[0][0]


def size_of(ex: Exchange, account: str, symbol: str = BTC) -> int:
    return next((p.size for p in ex.account_view(account).positions if p.market == symbol), 0)


def cash_conserved(ex: Exchange) -> bool:
    """sum(collateral - position cost) + fees == deposits - withdrawals (tests/engine idiom)."""
    total = ex.fees_collected + sum(
        a.collateral - sum(p.cost for p in a.positions.values()) for a in ex.accounts.values()
    )
    return total == ex.total_deposits - ex.total_withdrawals


def market_order(account: str, side: Side, qty: int, symbol: str = BTC) -> PlaceOrder:
    return PlaceOrder(account, symbol, side, qty, order_type=OrderType.MARKET)


# -- the profile -----------------------------------------------------------------------------------
def test_profiles_are_nonlinear_and_thin_is_thinner() -> None:
    inst = instrument()
    for profile in PROFILES.values():
        offsets = profile.offsets(600_000)
        gaps = [b - a for a, b in pairwise(offsets)]
        assert offsets[0] >= 1 and all(g > 0 for g in gaps)
        assert all(b >= a for a, b in pairwise(gaps))
        assert gaps[-1] > 3 * gaps[0]  # spacing grows geometrically, not linearly
        sizes = profile.sizes(inst, 600_000)
        assert all(b > a for a, b in pairwise(sizes))
        steps = [b - a for a, b in pairwise(sizes)]
        assert steps[-1] > steps[0]  # convex: size grows faster than linearly
    assert THICK.offsets(600_000)[:4] == [60, 81, 109, 148]
    assert THICK.sizes(inst, 600_000)[:3] == [33, 88, 155]
    assert THIN.levels < THICK.levels
    assert THIN.offsets(600_000)[0] > THICK.offsets(600_000)[0]
    thin, thick = THIN.sizes(inst, 600_000), THICK.sizes(inst, 600_000)
    assert thin[0] < thick[0] and sum(thin) < sum(thick) / 5


def test_profile_validation() -> None:
    for bad in (
        {"levels": 0},
        {"levels": 100},
        {"first_gap_bps": 0.0},
        {"gap_growth": 0.9},
        {"size_exponent": -1.0},
        {"base_notional": Decimal(0)},
        {"max_inventory_notional": Decimal(-1)},
        {"skew_bps": -1.0},
        {"requote_fraction": 1.0},
        {"refill_fraction": 1.5},
    ):
        with pytest.raises(ValueError):
            replace(THICK, **bad)


def test_funding_commands_one_deposit_per_account() -> None:
    inst = instrument()
    a, b = LiquidityAgent(inst), LiquidityAgent(inst, THIN, account="mm:other")
    assert funding_commands([a, b, a]) == [
        Deposit("mm:BTC-PERP", DEFAULT_AGENT_COLLATERAL),
        Deposit("mm:other", DEFAULT_AGENT_COLLATERAL),
    ]
    assert funding_commands([a], 5) == [Deposit("mm:BTC-PERP", 5)]


# -- a fresh book ----------------------------------------------------------------------------------
def test_first_quotes_build_a_symmetric_nonlinear_book() -> None:
    agent = LiquidityAgent(instrument())
    ex, _ = setup(agent)
    commands = quote(ex, agent)
    assert len(commands) == 2 * THICK.levels
    assert all(isinstance(c, PlaceOrder) for c in commands)
    for c in commands:
        assert isinstance(c, PlaceOrder)
        assert c.tif is TimeInForce.POST_ONLY and c.client_id and c.account == "mm:BTC-PERP"
    book = ex.book_snapshot(BTC, depth=100)
    offsets, sizes = THICK.offsets(600_000), THICK.sizes(instrument(), 600_000)
    assert book.bids == [(600_000 - d, q) for d, q in zip(offsets, sizes, strict=True)]
    assert book.asks == [(600_000 + d, q) for d, q in zip(offsets, sizes, strict=True)]
    for levels in (book.bids, book.asks):
        prices = [p for p, _ in levels]
        gaps = [abs(b - a) for a, b in pairwise(prices)]
        assert all(b >= a for a, b in pairwise(gaps)) and gaps[-1] > gaps[0]
        qtys = [q for _, q in levels]
        assert all(b > a for a, b in pairwise(qtys))
    assert agent.planned_quotes == (600_000 - 60, 600_000 + 60)


def test_nothing_changed_nothing_sent() -> None:
    agent = LiquidityAgent(instrument())
    ex, clock = setup(agent)
    quote(ex, agent)
    assert agent.commands(ex) == []
    set_index(ex, clock, BTC, 600_000)  # time passes, same index
    assert agent.commands(ex) == []


def test_an_unfunded_agent_does_nothing() -> None:
    clock = ManualClock(START_MS)
    ex = Exchange([instrument()], clock=clock)
    agent = LiquidityAgent(instrument())
    assert agent.commands(ex) == []


# -- incremental requoting -------------------------------------------------------------------------
def test_a_small_move_requotes_only_the_levels_it_moved_past_their_threshold() -> None:
    agent = LiquidityAgent(instrument())
    ex, clock = setup(agent)
    quote(ex, agent)
    set_index(ex, clock, BTC, 600_010)  # 1/6 bp: under every threshold (>= 15 ticks)
    assert agent.commands(ex) == []
    set_index(ex, clock, BTC, 600_030)  # 0.5 bp: past levels 0-2 (thresholds 15, 20, 27)
    commands = quote(ex, agent)
    assert all(isinstance(c, AmendOrder) and c.qty is None for c in commands)
    orders = {o.id: o for o in ex.open_orders(agent.account)}
    levels = sorted({(orders[c.order_id].client_id or "")[:2] for c in commands})  # type: ignore[union-attr,index]
    assert levels == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert agent.commands(ex) == []


def test_a_filled_level_is_refilled_alone() -> None:
    agent = LiquidityAgent(instrument())
    ex, _ = setup(agent)
    quote(ex, agent)
    best_ask = ex.book_snapshot(BTC).asks[0]
    submit(ex, [market_order(TAKER, Side.BUY, 10)])
    assert agent.commands(ex) == []  # 23 of 33 left: above the refill fraction
    submit(ex, [market_order(TAKER, Side.BUY, 10)])
    (amend,) = quote(ex, agent)  # 13 left: back to 33 remaining (total 20 filled + 33)
    assert isinstance(amend, AmendOrder) and amend.price is None and amend.qty == 53
    submit(ex, [market_order(TAKER, Side.BUY, 33)])
    (place,) = quote(ex, agent)
    assert isinstance(place, PlaceOrder) and place.side is Side.SELL and place.qty == 33
    assert place.client_id and place.client_id.startswith("a0-")
    assert place.price is not None
    assert abs(place.price - best_ask[0]) <= 1  # a 53-lot short skews the centre ~1 tick
    assert agent.commands(ex) == []


def test_a_big_jump_moves_every_level_without_crossing_itself() -> None:
    """+3%: every new bid is above every old ask, so asks must move first; then -3%."""
    agent = LiquidityAgent(instrument())
    ex, clock = setup(agent)
    quote(ex, agent)
    for price in (618_000, 600_000):
        set_index(ex, clock, BTC, price)
        commands = quote(ex, agent)
        assert len(commands) == 2 * THICK.levels
        assert_uncrossed(ex)
        bids, asks = sides(ex.open_orders(agent.account))
        assert bids[0].price < price < asks[0].price
    assert agent.commands(ex) == []


# -- staying acceptable ----------------------------------------------------------------------------
def test_quotes_back_off_from_other_accounts_orders() -> None:
    agent = LiquidityAgent(instrument())
    ex, clock = setup(agent)
    quote(ex, agent)
    # The taker rests an ask inside the agent's spread; then the index rises past it.
    submit(ex, [PlaceOrder(TAKER, BTC, Side.SELL, 5, 599_980)])
    set_index(ex, clock, BTC, 600_090)  # agent's top bid target: 600_030 > 599_980
    quote(ex, agent)
    assert_uncrossed(ex)
    bids, asks = sides(ex.open_orders(agent.account))
    assert bids[0].price == 599_979  # the whole side shifted just below the taker's ask
    assert bids[0].price - bids[1].price == 81 - 60  # (kept its shape)
    assert asks[0].price == 600_090 + 60
    # Other agents' planned quotes (not in the book yet) are avoided the same way.
    other = LiquidityAgent(instrument(), THIN, account="mm:other")
    submit(ex, funding_commands([other]))
    commands = other.commands(ex, others=(599_000, 599_500))
    submit(ex, commands)
    assert_uncrossed(ex)
    bids, asks = sides(ex.open_orders(other.account))
    assert bids[0].price < 599_500 and asks[0].price > 599_000


def test_orders_stay_inside_the_price_band() -> None:
    """Mark 4.7% under the index: the band's top (mark + 5%) is 6.5 bp over the index, so
    only the asks up to 6.5 bp are placed; the resting asks beyond it are cancelled."""
    agent = LiquidityAgent(instrument())
    ex, _ = setup(agent)
    quote(ex, agent)
    mark = 571_800
    submit(ex, [SetMarkPrice(BTC, mark)])
    commands = quote(ex, agent)
    assert all(isinstance(c, CancelOrder) for c in commands)
    high = mark * (RATE_SCALE + instrument().price_band) // RATE_SCALE
    bids, asks = sides(ex.open_orders(agent.account))
    assert len(bids) == THICK.levels
    assert asks and all(o.price <= high for o in asks)
    assert len(asks) == sum(600_000 + d <= high for d in THICK.offsets(600_000))
    # From an empty book, only in-band levels are placed.
    fresh = LiquidityAgent(instrument(), account="mm:fresh")
    submit(ex, funding_commands([fresh]))
    placed = quote(ex, fresh)
    assert all(isinstance(c, PlaceOrder) and c.price and c.price <= high for c in placed)


def test_sizes_grow_to_meet_the_minimum_notional() -> None:
    inst = Instrument.create(
        "BIG-PERP",
        tick_size="0.1",
        lot_size="0.001",
        min_qty="0.001",
        max_qty="1000",
        market_max_qty="100",
        min_notional="5000",
        initial_price="60000",
    )
    agent = LiquidityAgent(inst, THIN)
    ex, _ = setup(agent, inst=inst)
    commands = quote(ex, agent)
    assert len(commands) == 2 * THIN.levels
    for order in ex.open_orders(agent.account):
        assert inst.notional(order.price, order.remaining) >= inst.min_notional


def test_foreign_and_duplicate_orders_in_the_agent_account_are_cancelled() -> None:
    agent = LiquidityAgent(instrument())
    ex, _ = setup(agent)
    quote(ex, agent)
    foreign = PlaceOrder(agent.account, BTC, Side.BUY, 5, 590_000, client_id="manual")
    duplicate = PlaceOrder(agent.account, BTC, Side.BUY, 33, 595_000, client_id="b0-999999")
    submit(ex, [foreign, duplicate])
    commands = quote(ex, agent)
    assert len(commands) == 2 and all(isinstance(c, CancelOrder) for c in commands)
    assert len(ex.open_orders(agent.account)) == 2 * THICK.levels


# -- inventory and exposure ------------------------------------------------------------------------
def test_inventory_stays_bounded_when_a_taker_keeps_selling() -> None:
    agent = LiquidityAgent(instrument())
    ex, clock = setup(agent)
    limit = agent.max_inventory
    assert limit == 8_333  # 500,000 USDT at 60,000
    peak = 0
    for _ in range(60):
        quote(ex, agent)
        submit(ex, [market_order(TAKER, Side.SELL, 400)])
        size = size_of(ex, agent.account)
        resting_bids = sum(o.remaining for o in ex.open_orders(agent.account) if o.side > 0)
        assert 0 <= size <= limit
        assert size + resting_bids <= limit  # what fills can still add never passes the limit
        peak = max(peak, size)
        clock.advance(1_000)
        submit(ex, [Tick()])
        assert_uncrossed(ex)
    assert peak >= 0.95 * limit
    _, asks = sides(ex.open_orders(agent.account))
    assert len(asks) == THICK.levels  # the reducing side stays fully quoted ...
    index = ex.prices(BTC).index
    assert asks[0].price < index  # ... and skewed down to sell the inventory
    assert cash_conserved(ex)


def test_quotes_respect_the_engines_position_limit() -> None:
    """SOL at 20x allows 1M USDT of worst-case position; this profile wants ~3.6M a side."""
    inst = instrument("SOL-PERP")
    huge = replace(
        THICK,
        levels=8,
        base_notional=Decimal(100_000),
        size_exponent=1.0,
        max_inventory_notional=Decimal(10_000_000),
    )
    agent = LiquidityAgent(inst, huge)
    ex, clock = setup(agent, inst=inst)
    cap = max_notional_at(inst.brackets, inst.default_leverage)
    assert cap == 1_000_000 * USDT
    for step in range(20):
        quote(ex, agent)
        side = Side.SELL if step % 4 < 3 else Side.BUY
        submit(ex, [market_order(TAKER, side, 20_000, "SOL-PERP")])  # 200 SOL
        size = size_of(ex, agent.account, "SOL-PERP")
        orders = ex.open_orders(agent.account)
        buys = sum(o.remaining for o in orders if o.side > 0)
        sells = sum(o.remaining for o in orders if o.side < 0)
        mark = ex.prices("SOL-PERP").mark
        assert max(abs(size + buys), abs(size - sells)) * mark * inst.notional_factor <= cap
        clock.advance(1_000)
        submit(ex, [Tick()])
    assert size_of(ex, agent.account, "SOL-PERP") != 0
    assert cash_conserved(ex)


# -- several agents in one market ------------------------------------------------------------------
def test_two_agents_in_one_market_never_cross_each_other() -> None:
    """Both compute from the same book before either submits (as MarketSimulator does); the
    thin one skews hard (60 bp at a 20k USDT inventory), so without ``others`` its asks
    would land under the thick agent's bids."""
    inst = instrument()
    thick = LiquidityAgent(inst)
    skewed = LiquidityAgent(
        inst, replace(THIN, skew_bps=60.0, max_inventory_notional=Decimal(20_000)), account="mm:2"
    )
    ex, clock = setup(thick, skewed)
    price = 600_000
    peak = 0
    skewed_led = False
    for step in range(80):
        first = thick.commands(ex)
        second = skewed.commands(ex, thick.planned_quotes)
        submit(ex, first + second)
        assert_uncrossed(ex)
        best_ask = ex.book_snapshot(BTC, depth=1).asks[0][0]
        skewed_led |= any(o.price == best_ask for o in ex.open_orders(skewed.account))
        # Sweep through the thick agent's top levels into the thin one's (1,500 lots ~ 5 bp).
        taker = Side.SELL if step % 5 else Side.BUY
        submit(ex, [market_order(TAKER, taker, 1_500 if taker is Side.SELL else 700)])
        peak = max(peak, size_of(ex, skewed.account))
        price += (37, -23, 11, -61, 5)[step % 5]
        set_index(ex, clock, BTC, price)
    assert peak > 0.5 * skewed.max_inventory
    assert skewed_led  # its skew made it the best offer, right above the thick agent's bid
    assert cash_conserved(ex)


@pytest.mark.parametrize(
    ("symbol", "profile"),
    [
        ("BTC-PERP", THICK),
        ("ETH-PERP", THIN),
        # far past SOL's 1M USDT position limit: mark moves make the resting orders exceed it
        (
            "SOL-PERP",
            replace(
                THICK,
                levels=8,
                base_notional=Decimal(100_000),
                size_exponent=1.0,
                max_inventory_notional=Decimal(10_000_000),
            ),
        ),
    ],
)
def test_random_flow_never_gets_an_agent_command_rejected(
    symbol: str, profile: LiquidityProfile
) -> None:
    """Seeded random flow: market orders of every size, resting orders inside the spread,
    cancels, index moves up to 0.3% a step and marks set up to 4% off the index, with a
    second, hard-skewing agent in the market. Not one agent command may be refused."""
    rng = random.Random(2024)
    inst = instrument(symbol)
    main = LiquidityAgent(inst, profile)
    second = LiquidityAgent(
        inst, replace(THIN, skew_bps=40.0, max_inventory_notional=Decimal(30_000)), account="mm:2"
    )
    ex, clock = setup(main, second, inst=inst)
    price = inst.initial_price
    for _ in range(150):
        commands = main.commands(ex)
        commands += second.commands(ex, main.planned_quotes)
        submit(ex, commands)
        assert_uncrossed(ex, symbol)
        roll = rng.random()
        side = rng.choice([Side.BUY, Side.SELL])
        if roll < 0.4:
            qty = rng.randint(1, 20) * inst.min_qty * rng.choice([1, 10, 100])
            ex.submit(market_order(TAKER, side, qty, symbol))
        elif roll < 0.55:
            offset = rng.randint(-30, 30) * price // 100_000
            ex.submit(PlaceOrder(TAKER, symbol, side, 50 * inst.min_qty, price + offset))
        elif roll < 0.6:
            ex.submit(CancelAll(TAKER))
        elif roll < 0.65:
            submit(ex, [SetMarkPrice(symbol, int(price * rng.uniform(0.96, 1.04)))])
            continue
        move = rng.choice([0, 0, 1, 2, 5, 10, 50, 300]) * price // 100_000
        price += rng.choice([-1, 1]) * move
        set_index(ex, clock, symbol, price)
    for agent in (main, second):
        assert abs(size_of(ex, agent.account, symbol)) <= agent.max_inventory
    assert cash_conserved(ex)


def test_an_underfunded_agent_quotes_what_its_margin_allows() -> None:
    """3,000 USDT at 20x carries 60k USDT of orders a side; THICK wants ~350k. The levels that
    do not fit are skipped (never sent to be rejected), best first."""
    agent = LiquidityAgent(instrument())
    ex, clock = setup()
    submit(ex, funding_commands([agent], 3_000 * USDT))
    price = 600_000
    for step in range(30):
        quote(ex, agent)
        bids, asks = sides(ex.open_orders(agent.account))
        assert bids and asks
        assert len(bids) < THICK.levels and len(asks) < THICK.levels
        assert ex.account_view(agent.account).available >= 0
        if step % 3 == 0:
            submit(ex, [market_order(TAKER, Side.SELL if step % 2 else Side.BUY, 100)])
        price += (120, -90, 40)[step % 3]
        set_index(ex, clock, BTC, price)
    assert cash_conserved(ex)

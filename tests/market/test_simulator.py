"""MarketSimulator driving a real Exchange on a ManualClock: the loop a server runs.

Each step: advance the clock, submit ``sim.step(exchange, dt)`` in order, then ``Tick()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest

from perpbot.risk.margin import MONEY_SCALE
from sandbox.engine import (
    Command,
    Deposit,
    Exchange,
    Instrument,
    ManualClock,
    OrderType,
    PlaceOrder,
    Rejected,
    Side,
    Tick,
    UpdateIndexSource,
    default_instruments,
)
from sandbox.market import (
    DEFAULT_AGENT_COLLATERAL,
    THICK,
    THIN,
    YEAR_MS,
    MarketSimulator,
    SimulatorConfig,
    default_path_configs,
)

START_MS = 1_700_000_000_000
SYMBOLS = ("BTC-PERP", "ETH-PERP", "SOL-PERP")
TAKER = "taker"


@dataclass
class Run:
    """What a run of the loop observed."""

    exchange: Exchange
    commands: list[list[Command]] = field(default_factory=list)
    rejected: list[tuple[Command, Rejected]] = field(default_factory=list)
    crossed: list[tuple[int, str]] = field(default_factory=list)
    one_sided: list[tuple[int, str]] = field(default_factory=list)


def start(sim: MarketSimulator, instruments: Sequence[Instrument] | None = None) -> Exchange:
    ex = Exchange(instruments or default_instruments(), clock=ManualClock(START_MS))
    for command in [*sim.bootstrap_commands(), Deposit(TAKER, 10_000_000 * MONEY_SCALE)]:
        assert not any(isinstance(e, Rejected) for e in ex.submit(command))
    return ex


def run(
    sim: MarketSimulator,
    ex: Exchange,
    steps: int,
    dt_ms: int = 500,
    taker: Sequence[PlaceOrder] = (),
) -> Run:
    """``steps`` loop iterations; ``taker`` orders (cycled) are sent after each step's Tick."""
    assert isinstance(ex.clock, ManualClock)
    out = Run(ex)
    for i in range(steps):
        ex.clock.advance(dt_ms)
        commands = sim.step(ex, dt_ms)
        out.commands.append(commands)
        for command in commands:
            for event in ex.submit(command):
                if isinstance(event, Rejected):
                    out.rejected.append((command, event))
        ex.submit(Tick())
        for symbol in ex.markets:
            book = ex.book_snapshot(symbol, depth=1)
            if book.bids and book.asks and book.bids[0][0] >= book.asks[0][0]:
                out.crossed.append((i, symbol))
            if sim.agents[symbol] and not (book.bids and book.asks):
                out.one_sided.append((i, symbol))
        if taker:
            ex.submit(taker[i % len(taker)])
    return out


def cash_conserved(ex: Exchange) -> bool:
    """sum(collateral - position cost) + fees == deposits - withdrawals (tests/engine idiom)."""
    total = ex.fees_collected + sum(
        a.collateral - sum(p.cost for p in a.positions.values()) for a in ex.accounts.values()
    )
    return total == ex.total_deposits - ex.total_withdrawals


def size_of(ex: Exchange, account: str, symbol: str) -> int:
    return next((p.size for p in ex.account_view(account).positions if p.market == symbol), 0)


def market(side: Side, qty: int, symbol: str = "BTC-PERP") -> PlaceOrder:
    return PlaceOrder(TAKER, symbol, side, qty, order_type=OrderType.MARKET)


# -- the default market ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_run() -> Run:
    """Default paths, correlations and one THICK agent per market, 400 half-second steps
    (200 s), with a taker trading every market now and then."""
    sim = MarketSimulator(default_instruments(), seed=7)
    ex = start(sim)
    flow = [
        market(Side.BUY, 150),
        market(Side.SELL, 400, "ETH-PERP"),
        market(Side.SELL, 90),
        market(Side.BUY, 3_000, "SOL-PERP"),
        market(Side.SELL, 1_000, "SOL-PERP"),
    ]
    return run(sim, ex, 400, taker=flow)


def test_the_default_market_runs_without_a_single_rejection(default_run: Run) -> None:
    assert default_run.rejected == []
    assert default_run.crossed == []
    assert default_run.one_sided == []
    ex = default_run.exchange
    for symbol in SYMBOLS:
        prices = ex.prices(symbol)
        assert not prices.index_degraded
        book = ex.book_snapshot(symbol, depth=100)
        assert len(book.bids) >= THICK.levels - 2 and len(book.asks) >= THICK.levels - 2
        assert ex.markets[symbol].trade_id > 0  # the taker traded with the agents
    assert cash_conserved(ex)


def test_steps_send_every_source_then_the_agents(default_run: Run) -> None:
    weights = {
        s: list(default_run.exchange.markets[s].instrument.mechanics.index.weights) for s in SYMBOLS
    }
    for commands in default_run.commands:
        updates = [c for c in commands[:9] if isinstance(c, UpdateIndexSource)]
        assert [(c.market, c.source) for c in updates] == [
            (s, source) for s in SYMBOLS for source in weights[s]
        ]
        assert not any(isinstance(c, UpdateIndexSource) for c in commands[9:])


def test_requoting_is_incremental() -> None:
    """No taker: the engine recomputes the index once a second, every other half-second step,
    and only then do targets move. Steps in between send nothing; the others touch a part of
    the 72 resting orders (the top levels, whose thresholds are a fraction of a bp)."""
    sim = MarketSimulator(default_instruments(), seed=21)
    result = run(sim, start(sim), 200)
    assert result.rejected == [] and result.crossed == [] and result.one_sided == []
    per_step = [len(c) - 9 for c in result.commands]
    assert per_step[0] == 3 * 2 * THICK.levels  # the first book
    later = per_step[2:]
    assert all(n == 0 for n in later[1::2])  # no new index: nothing to do
    moving = later[::2]
    assert sum(moving) / len(moving) < 0.5 * 3 * 2 * THICK.levels
    assert max(moving) < 3 * 2 * THICK.levels


def test_a_market_that_does_not_move_gets_no_agent_commands() -> None:
    still = [
        replace(p, volatility=0.0, jump_intensity=0.0, basis_noise=0.0)
        for p in default_path_configs()
    ]
    sim = MarketSimulator(default_instruments(), seed=1, paths=still)
    ex = start(sim)
    warm = run(sim, ex, 4)
    assert sum(len(c) - 9 for c in warm.commands) == 3 * 2 * THICK.levels  # the first book
    books = [(ex.book_snapshot(s, 100).bids, ex.book_snapshot(s, 100).asks) for s in SYMBOLS]
    later = run(sim, ex, 20)
    assert all(len(c) == 9 for c in later.commands)  # the source updates only
    assert [
        (ex.book_snapshot(s, 100).bids, ex.book_snapshot(s, 100).asks) for s in SYMBOLS
    ] == books


def test_jumps_every_few_seconds_are_absorbed() -> None:
    """A jump (stdev 5%) every ~5 s in every market, with a taker trading: the agents move
    their whole ladders without a rejection, a crossed book or an empty side."""
    jumpy = [
        replace(p, jump_intensity=0.1 * YEAR_MS / 500, jump_stdev=0.05)
        for p in default_path_configs()
    ]
    sim = MarketSimulator(default_instruments(), seed=2, paths=jumpy)
    result = run(sim, start(sim), 200, taker=[market(Side.BUY, 300), market(Side.SELL, 300)])
    assert result.rejected == [] and result.crossed == [] and result.one_sided == []
    assert all(sim.index.jump_count(s) >= 5 for s in SYMBOLS)
    assert cash_conserved(result.exchange)


# -- determinism -----------------------------------------------------------------------------------
def test_same_seed_same_commands_different_seed_different() -> None:
    def commands(seed: int) -> list[list[Command]]:
        sim = MarketSimulator(default_instruments(), seed=seed)
        return run(sim, start(sim), 60, taker=[market(Side.BUY, 200)]).commands

    first = commands(3)
    assert first == commands(3)
    assert first != commands(4)


# -- inventory -------------------------------------------------------------------------------------
def test_inventory_stays_bounded_under_one_sided_flow() -> None:
    """A taker sells 0.5 BTC (30k USDT) every half second for 150 s: 4.5M USDT against an
    agent whose inventory is capped at 500k USDT."""
    sim = MarketSimulator(
        [i for i in default_instruments() if i.symbol == "BTC-PERP"],
        seed=5,
        paths=[p for p in default_path_configs() if p.symbol == "BTC-PERP"],
    )
    (agent,) = sim.agents["BTC-PERP"]
    ex = start(sim, [i for i in default_instruments() if i.symbol == "BTC-PERP"])
    peak = 0
    for _ in range(30):
        result = run(sim, ex, 10, taker=[market(Side.SELL, 500)])
        assert result.rejected == [] and result.crossed == []
        size = size_of(ex, agent.account, "BTC-PERP")
        assert 0 <= size <= agent.max_inventory
        peak = max(peak, size)
    assert peak > 0.9 * agent.max_inventory
    assert cash_conserved(ex)


# -- several agents --------------------------------------------------------------------------------
def test_several_agents_per_market() -> None:
    sim = MarketSimulator(
        default_instruments(),
        seed=9,
        agents={"BTC-PERP": (THICK, THIN), "ETH-PERP": (THIN,)},
        config=SimulatorConfig(agent_collateral=50_000_000 * MONEY_SCALE),
    )
    assert sim.accounts == ("mm:BTC-PERP", "mm:BTC-PERP:2", "mm:ETH-PERP")
    assert sim.agents["SOL-PERP"] == ()
    assert sim.bootstrap_commands() == [
        Deposit(account, 50_000_000 * MONEY_SCALE) for account in sim.accounts
    ]
    ex = start(sim)
    flow = [market(Side.SELL, 1_500), market(Side.BUY, 1_500), market(Side.SELL, 800, "ETH-PERP")]
    flow.append(market(Side.BUY, 800, "ETH-PERP"))
    result = run(sim, ex, 200, taker=flow)
    assert result.rejected == [] and result.crossed == [] and result.one_sided == []
    assert ex.book_snapshot("SOL-PERP").bids == []  # no agent there
    assert size_of(ex, "mm:BTC-PERP", "BTC-PERP") != 0
    assert cash_conserved(ex)


# -- configuration errors --------------------------------------------------------------------------
def test_configuration_is_validated() -> None:
    instruments = default_instruments()
    paths = default_path_configs()
    with pytest.raises(ValueError, match="one path per instrument"):
        MarketSimulator(instruments, seed=0, paths=paths[:2])
    with pytest.raises(ValueError, match="not in the index"):
        MarketSimulator(
            instruments,
            seed=0,
            paths=[replace(paths[0], sources=("venue-a", "spot-b")), *paths[1:]],
        )
    with pytest.raises(ValueError, match="unknown markets"):
        MarketSimulator(instruments, seed=0, agents={"DOGE-PERP": (THIN,)})
    with pytest.raises(ValueError, match="not positive definite"):
        MarketSimulator(
            instruments, seed=0, correlation=[[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]]
        )
    with pytest.raises(ValueError, match="not a valid account id"):
        MarketSimulator(instruments, seed=0, config=SimulatorConfig(account_prefix="market maker"))
    with pytest.raises(ValueError, match="agent_collateral"):
        SimulatorConfig(agent_collateral=0)
    assert SimulatorConfig().agent_collateral == DEFAULT_AGENT_COLLATERAL

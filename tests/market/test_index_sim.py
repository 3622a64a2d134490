"""The seeded index paths: determinism, correlation, jumps, validation and tick outputs."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from itertools import pairwise

import pytest

from sandbox.engine import default_instruments
from sandbox.market import (
    DEFAULT_CORRELATIONS,
    YEAR_MS,
    IndexPathConfig,
    IndexSimulator,
    cholesky,
    correlation_matrix,
    default_path_configs,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
SYMBOLS = ("BTC-PERP", "ETH-PERP", "SOL-PERP")


def default_sim(seed: int) -> IndexSimulator:
    paths = default_path_configs()
    return IndexSimulator(paths, correlation_matrix([p.symbol for p in paths]), seed)


def run(sim: IndexSimulator, steps: int, dt_ms: int) -> list[list[tuple[str, str, int]]]:
    return [sim.step(dt_ms) for _ in range(steps)]


def pearson(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy)


# -- defaults --------------------------------------------------------------------------------------
def test_defaults_match_the_engine_instruments() -> None:
    for inst, path in zip(default_instruments(), default_path_configs(), strict=True):
        assert path.symbol == inst.symbol
        assert path.start_ticks == inst.initial_price
        assert path.tick_size == inst.tick_size
        assert path.sources == tuple(inst.mechanics.index.weights)
        assert len(path.sources) >= 3
        assert 0.5 <= path.volatility <= 0.9
        assert path.jump_intensity > 0
    matrix = correlation_matrix(SYMBOLS)
    assert matrix[0][1] == matrix[1][0] == DEFAULT_CORRELATIONS[("BTC-PERP", "ETH-PERP")] == 0.8
    assert matrix[0][2] == 0.7 and matrix[1][2] == 0.75
    cholesky(matrix)  # valid


def test_first_quotes_are_the_start_prices() -> None:
    sim = default_sim(1)
    quotes = sim.step(0)
    assert [(s, p) for s, _, p in quotes] == [
        (inst.symbol, inst.initial_price) for inst in default_instruments() for _ in range(3)
    ]
    assert sim.elapsed_ms == 0
    assert sim.step(0) == quotes  # dt 0 moves nothing


# -- determinism -----------------------------------------------------------------------------------
def test_same_seed_same_path_different_seed_differs() -> None:
    a = run(default_sim(42), 500, 1_000)
    b = run(default_sim(42), 500, 1_000)
    c = run(default_sim(43), 500, 1_000)
    assert a == b
    assert a != c
    assert len({p for _, _, p in a[-1]}) > 3  # the paths moved apart


def test_the_sources_differ_but_track_their_market() -> None:
    sim = default_sim(5)
    for _ in range(300):
        quotes = sim.step(1_000)
        for symbol in SYMBOLS:
            prices = [p for s, _, p in quotes if s == symbol]
            fair = sim.fair_ticks(symbol)
            # basis stdev 2 bp: 25 bp is > 12 sigma, and well inside the index's outlier band
            assert all(abs(p - fair) <= fair * 0.0025 for p in prices)
    last = sim.quotes()
    assert len({p for s, _, p in last if s == "BTC-PERP"}) == 3


# -- statistics ------------------------------------------------------------------------------------
def test_log_returns_have_the_configured_correlation_and_volatility() -> None:
    """Hourly steps, jumps off: 6,000 returns. The standard error of a sample correlation is
    about (1 - rho^2) / sqrt(n) <= 0.013, so 0.04 is a > 3 sigma band that a correct
    simulator passes for any seed (and this one is fixed); the basis noise (2 bp) and tick
    rounding are negligible against a 0.5-1% hourly move. Volatility: the relative standard
    error of a stdev estimate is 1 / sqrt(2n) ~ 0.9%, so 5% is > 5 sigma."""
    paths = [replace(p, jump_intensity=0.0) for p in default_path_configs()]
    matrix = correlation_matrix([p.symbol for p in paths])
    sim = IndexSimulator(paths, matrix, seed=7)
    steps = 6_000
    series = {s: [float(sim.fair_ticks(s))] for s in SYMBOLS}
    for _ in range(steps):
        quotes = sim.step(HOUR_MS)
        for symbol in SYMBOLS:
            prices = [p for s, _, p in quotes if s == symbol]
            series[symbol].append(sum(prices) / len(prices))  # the index the engine would see
    returns = {s: [math.log(b / a) for a, b in pairwise(v)] for s, v in series.items()}
    for i, a in enumerate(SYMBOLS):
        for j, b in enumerate(SYMBOLS):
            if i < j:
                assert pearson(returns[a], returns[b]) == pytest.approx(matrix[i][j], abs=0.04)
    for path in paths:
        r = returns[path.symbol]
        mean = sum(r) / len(r)
        stdev = math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1))
        annual = stdev * math.sqrt(YEAR_MS / HOUR_MS)
        assert annual == pytest.approx(path.volatility, rel=0.05)


def test_jumps_arrive_at_the_configured_rate_and_move_the_price() -> None:
    """100 jumps a year for 20 years in daily steps: 2,000 expected, Poisson stdev ~45, so a
    10% band is > 4 sigma. Each jump is ~+5% against a daily diffusion of 0.05%, so the days
    with a jump are exactly the days the path rose by more than ~1% (the compensator pulls
    every day down by lambda * k * dt ~ 1.4%)."""
    cfg = IndexPathConfig(
        symbol="JMP-PERP",
        start_price=Decimal("1000"),
        tick_size=Decimal("0.01"),
        volatility=0.01,
        jump_intensity=100.0,
        jump_mean=0.05,
        jump_stdev=0.005,
    )
    sim = IndexSimulator([cfg], seed=11)
    days = 20 * 365
    jump_days = rising_days = 0
    growth = 0.0
    for _ in range(days):
        before, jumps = sim.fair_ticks("JMP-PERP"), sim.jump_count("JMP-PERP")
        sim.step(DAY_MS)
        ret = math.log(sim.fair_ticks("JMP-PERP") / before)
        jumped = sim.jump_count("JMP-PERP") > jumps
        assert jumped == (ret > 0.011)
        jump_days += jumped
        rising_days += ret > 0
        growth += math.exp(ret)
    expected = cfg.jump_intensity * days / 365
    assert sim.jump_count("JMP-PERP") == pytest.approx(expected, rel=0.10)
    assert jump_days == rising_days
    # The jumps are compensated: with drift 0 the price is a martingale, E[S1/S0] = 1 per step
    # (stdev of one step's ratio ~0.022, so the mean of 7,300 has a standard error ~0.00026).
    assert growth / days == pytest.approx(1.0, abs=0.002)


# -- ticks -----------------------------------------------------------------------------------------
def test_prices_are_whole_ticks_and_never_below_one() -> None:
    crash = IndexPathConfig(
        symbol="DIP-PERP",
        start_price=Decimal("0.003"),
        tick_size=Decimal("0.001"),
        volatility=3.0,
        drift=-50.0,
        jump_intensity=50.0,
        jump_mean=-0.5,
        jump_stdev=0.3,
    )
    sim = IndexSimulator([crash], seed=3)
    seen = set()
    for quotes in run(sim, 2_000, HOUR_MS):
        for _, _, price in quotes:
            assert type(price) is int and price >= 1
            seen.add(price)
    assert min(seen) == 1
    assert sim.fair_ticks("DIP-PERP") == 1


def test_prices_round_to_the_configured_tick() -> None:
    cfg = IndexPathConfig(
        symbol="X", start_price=Decimal("123.456"), tick_size=Decimal("0.01"), basis_noise=0.0
    )
    assert cfg.start_ticks == 12_346
    sim = IndexSimulator([cfg], seed=0)
    assert {p for _, _, p in sim.step(0)} == {12_346}


# -- validation ------------------------------------------------------------------------------------
ONE = IndexPathConfig(symbol="A", start_price=Decimal(100), tick_size=Decimal("0.1"))
TWO = replace(ONE, symbol="B")
THREE = replace(ONE, symbol="C")


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([], "empty"),
        ([[1.0, 0.5], [0.5]], "not square"),
        ([[1.0, 0.5], [0.4, 1.0]], "not symmetric"),
        ([[1.0, 0.5], [0.5, 0.9]], "diagonal"),
        ([[1.0, 1.5], [1.5, 1.0]], "outside"),
        ([[1.0, math.nan], [math.nan, 1.0]], "not finite"),
        ([[1.0, 1.0], [1.0, 1.0]], "not positive definite"),
    ],
)
def test_invalid_correlation_matrices_raise(matrix: list[list[float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cholesky(matrix)


def test_a_matrix_that_is_not_positive_definite_is_refused_by_the_simulator() -> None:
    # pairwise plausible, jointly impossible: A~B and B~C strongly, A~C strongly negative
    bad = [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]
    with pytest.raises(ValueError, match="not positive definite"):
        IndexSimulator([ONE, TWO, THREE], bad, seed=0)
    with pytest.raises(ValueError, match="2 rows for 3 markets"):
        IndexSimulator([ONE, TWO, THREE], [[1.0, 0.0], [0.0, 1.0]], seed=0)


def test_cholesky_factor_reproduces_the_matrix() -> None:
    matrix = correlation_matrix(SYMBOLS)
    lower = cholesky(matrix)
    for i in range(3):
        for j in range(3):
            value = sum(lower[i][k] * lower[j][k] for k in range(3))
            assert value == pytest.approx(matrix[i][j], abs=1e-12)
            if j > i:
                assert lower[i][j] == 0.0


def test_invalid_configs_raise() -> None:
    with pytest.raises(ValueError, match="at least one market"):
        IndexSimulator([], seed=0)
    with pytest.raises(ValueError, match="duplicate"):
        IndexSimulator([ONE, ONE], seed=0)
    with pytest.raises(ValueError, match="dt_ms"):
        IndexSimulator([ONE], seed=0).step(-1)
    for bad in (
        {"start_price": Decimal("0.01")},
        {"tick_size": Decimal(0)},
        {"volatility": -0.1},
        {"jump_stdev": math.inf},
        {"basis_noise": -1.0},
        {"basis_halflife_ms": 0},
        {"sources": ()},
        {"sources": ("a", "a")},
    ):
        with pytest.raises(ValueError):
            replace(ONE, **bad)

"""Seeded spot-price paths for the engine's index: correlated jump-diffusions, several sources.

Each market follows a Merton jump-diffusion in log space,

    d ln S = (mu - sigma^2 / 2 - lambda * k) dt + sigma dW + J dN,    k = E[e^J] - 1,

with ``dN`` a Poisson process of rate ``lambda`` per year and ``J ~ Normal(jump_mean,
jump_stdev)``; the ``-lambda * k`` term compensates the jumps so ``drift`` stays the expected
return. The diffusions ``dW`` of the markets are correlated through the Cholesky factor of a
validated correlation matrix; jumps arrive independently per market.

A market's sources (spot venues) follow its common path times ``exp(b)``, where each source's
log basis ``b`` is an independent Ornstein-Uhlenbeck process with stationary stdev
``basis_noise``: sources differ slightly and persistently, as real venues do, so the engine's
weighted index has several distinct inputs.

The path is simulated in floats (it is not money); the outputs are whole ticks, at least one.
Only ``random.Random(seed)`` is used: the same seed and the same ``dt_ms`` sequence give the
same prices on every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sandbox.engine.instruments import Instrument, default_instruments
from sandbox.engine.mechanics import DEFAULT_INDEX_SOURCES

__all__ = [
    "DEFAULT_CORRELATIONS",
    "DEFAULT_PATH_PARAMS",
    "DEFAULT_SOURCES",
    "YEAR_MS",
    "IndexPathConfig",
    "IndexSimulator",
    "cholesky",
    "correlation_matrix",
    "default_path_configs",
]

YEAR_MS = 365 * 24 * 3_600_000
"""Milliseconds in a year (crypto trades every day): annual rates are per this span."""

DEFAULT_SOURCES: tuple[str, ...] = tuple(DEFAULT_INDEX_SOURCES)
"""The engine's default index sources (``spot-a``, ``spot-b``, ``spot-c``)."""

DEFAULT_CORRELATIONS: Mapping[tuple[str, str], float] = {
    ("BTC-PERP", "ETH-PERP"): 0.80,
    ("BTC-PERP", "SOL-PERP"): 0.70,
    ("ETH-PERP", "SOL-PERP"): 0.75,
}
"""Pairwise diffusion correlations of the default markets (pairs not listed: 0)."""

DEFAULT_PATH_PARAMS: Mapping[str, tuple[float, float, float, float]] = {
    # symbol: (volatility, jumps per year, jump mean, jump stdev), log units
    "BTC-PERP": (0.55, 8.0, 0.0, 0.03),
    "ETH-PERP": (0.70, 10.0, 0.0, 0.04),
    "SOL-PERP": (0.90, 12.0, 0.0, 0.05),
}
"""Default dynamics per symbol; other symbols get (0.80, 10, 0, 0.04)."""
_FALLBACK_PARAMS = (0.80, 10.0, 0.0, 0.04)
_LOG_LIMIT = 700.0  # exp() overflows a float beyond ~709: clamp the log price far below it


@dataclass(frozen=True, slots=True)
class IndexPathConfig:
    """One market's simulated spot path and its sources.

    ``start_price`` and ``tick_size`` are decimals (outputs are ``round(price / tick)`` ticks).
    ``volatility`` and ``drift`` are annualised (log returns); ``jump_intensity`` is the
    expected number of jumps per year, each a log-return ``Normal(jump_mean, jump_stdev)``.
    ``basis_noise`` is the stationary stdev of each source's log basis to the common path and
    ``basis_halflife_ms`` how fast a basis reverts to 0.
    """

    symbol: str
    start_price: Decimal
    tick_size: Decimal
    volatility: float = 0.6
    drift: float = 0.0
    jump_intensity: float = 0.0
    jump_mean: float = 0.0
    jump_stdev: float = 0.0
    sources: tuple[str, ...] = DEFAULT_SOURCES
    basis_noise: float = 0.0002
    basis_halflife_ms: int = 30_000

    def __post_init__(self) -> None:
        name = self.symbol
        if not self.tick_size.is_finite() or self.tick_size <= 0:
            raise ValueError(f"{name}: tick_size must be positive")
        if not self.start_price.is_finite() or self.start_price < self.tick_size:
            raise ValueError(f"{name}: start_price must be at least one tick")
        for field_name in ("volatility", "drift", "jump_intensity", "jump_mean", "jump_stdev"):
            if not math.isfinite(getattr(self, field_name)):
                raise ValueError(f"{name}: {field_name} must be finite")
        if self.volatility < 0 or self.jump_intensity < 0 or self.jump_stdev < 0:
            raise ValueError(f"{name}: volatility, jump_intensity and jump_stdev must be >= 0")
        if not math.isfinite(self.basis_noise) or self.basis_noise < 0:
            raise ValueError(f"{name}: basis_noise must be finite and >= 0")
        if self.basis_halflife_ms <= 0:
            raise ValueError(f"{name}: basis_halflife_ms must be positive")
        if not self.sources or len(set(self.sources)) != len(self.sources):
            raise ValueError(f"{name}: need at least one source, names unique")

    @property
    def start_ticks(self) -> int:
        """The start price in whole ticks (rounded, at least 1)."""
        return max(1, round(self.start_price / self.tick_size))

    @classmethod
    def for_instrument(cls, instrument: Instrument) -> IndexPathConfig:
        """The default path of ``instrument``: its initial price and tick, the sources of its
        index, and :data:`DEFAULT_PATH_PARAMS` for its symbol. Adjust with
        ``dataclasses.replace``."""
        vol, intensity, jump_mean, jump_stdev = DEFAULT_PATH_PARAMS.get(
            instrument.symbol, _FALLBACK_PARAMS
        )
        return cls(
            symbol=instrument.symbol,
            start_price=instrument.price_to_decimal(instrument.initial_price),
            tick_size=instrument.tick_size,
            volatility=vol,
            jump_intensity=intensity,
            jump_mean=jump_mean,
            jump_stdev=jump_stdev,
            sources=tuple(instrument.mechanics.index.weights),
        )


def default_path_configs(
    instruments: Iterable[Instrument] | None = None,
) -> tuple[IndexPathConfig, ...]:
    """:meth:`IndexPathConfig.for_instrument` of each instrument (default: BTC, ETH, SOL)."""
    chosen = default_instruments() if instruments is None else instruments
    return tuple(IndexPathConfig.for_instrument(inst) for inst in chosen)


def correlation_matrix(
    symbols: Sequence[str], pairs: Mapping[tuple[str, str], float] = DEFAULT_CORRELATIONS
) -> tuple[tuple[float, ...], ...]:
    """The matrix for ``symbols`` from pairwise correlations (either key order; absent: 0)."""
    n = len(symbols)
    rows = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for i, a in enumerate(symbols):
        for j, b in enumerate(symbols):
            if i != j:
                rows[i][j] = float(pairs.get((a, b), pairs.get((b, a), 0.0)))
    return tuple(tuple(row) for row in rows)


def cholesky(matrix: Sequence[Sequence[float]], *, tolerance: float = 1e-9) -> list[list[float]]:
    """Validate a correlation matrix and return its lower Cholesky factor ``L`` (``L L^T = C``).

    Raises ``ValueError`` unless the matrix is non-empty, square, finite, symmetric (within
    ``tolerance``), has a unit diagonal, entries in [-1, 1], and is positive definite.
    """
    n = len(matrix)
    if n == 0:
        raise ValueError("correlation matrix is empty")
    for i, row in enumerate(matrix):
        if len(row) != n:
            raise ValueError(f"correlation matrix is not square: row {i} has {len(row)} of {n}")
    for i in range(n):
        for j in range(n):
            value = matrix[i][j]
            if not math.isfinite(value):
                raise ValueError(f"correlation matrix entry [{i}][{j}] is not finite")
            if abs(value) > 1.0 + tolerance:
                raise ValueError(
                    f"correlation matrix entry [{i}][{j}] = {value} is outside [-1, 1]"
                )
            if abs(value - matrix[j][i]) > tolerance:
                raise ValueError(
                    f"correlation matrix is not symmetric: [{i}][{j}] = {value}, "
                    f"[{j}][{i}] = {matrix[j][i]}"
                )
        if abs(matrix[i][i] - 1.0) > tolerance:
            raise ValueError(f"correlation matrix diagonal [{i}][{i}] = {matrix[i][i]}, not 1")
    lower = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            acc = sum(lower[i][k] * lower[j][k] for k in range(j))
            if i == j:
                pivot = matrix[i][i] - acc
                if pivot <= tolerance:
                    raise ValueError(
                        f"correlation matrix is not positive definite (pivot {i} is {pivot:.3g})"
                    )
                lower[i][i] = math.sqrt(pivot)
            else:
                lower[i][j] = (matrix[i][j] - acc) / lower[j][j]
    return lower


class _Path:
    """Mutable state of one market's path (log price relative to the start, source bases)."""

    __slots__ = ("bases", "config", "jumps", "log_price", "start")

    def __init__(self, config: IndexPathConfig) -> None:
        self.config = config
        self.start = float(config.start_ticks)
        self.log_price = 0.0
        self.bases = [0.0] * len(config.sources)
        self.jumps = 0

    def ticks(self, log_offset: float) -> int:
        x = min(max(self.log_price + log_offset, -_LOG_LIMIT), _LOG_LIMIT)
        return max(1, round(self.start * math.exp(x)))


class IndexSimulator:
    """Correlated jump-diffusion paths for several markets, each quoted by several sources.

    ``configs`` lists the markets (symbols unique); ``correlation`` is their diffusion
    correlation matrix in the same order (``None``: independent). ``step(dt_ms)`` advances
    every path and returns each source's price in ticks.
    """

    def __init__(
        self,
        configs: Sequence[IndexPathConfig],
        correlation: Sequence[Sequence[float]] | None = None,
        seed: int = 0,
    ) -> None:
        if not configs:
            raise ValueError("IndexSimulator needs at least one market")
        symbols = [c.symbol for c in configs]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"duplicate symbols in {symbols}")
        n = len(configs)
        if correlation is None:
            correlation = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
        if len(correlation) != n:
            raise ValueError(f"correlation matrix has {len(correlation)} rows for {n} markets")
        self._chol = cholesky(correlation)
        self._paths = [_Path(c) for c in configs]
        self._by_symbol = {p.config.symbol: p for p in self._paths}
        self._rng = random.Random(seed)
        self._elapsed_ms = 0

    @property
    def symbols(self) -> tuple[str, ...]:
        """The markets, in configuration order."""
        return tuple(p.config.symbol for p in self._paths)

    @property
    def elapsed_ms(self) -> int:
        """Simulated time since the start."""
        return self._elapsed_ms

    def config(self, symbol: str) -> IndexPathConfig:
        """The configuration of ``symbol``'s path."""
        return self._by_symbol[symbol].config

    def fair_ticks(self, symbol: str) -> int:
        """``symbol``'s common path (no source basis) in ticks."""
        return self._by_symbol[symbol].ticks(0.0)

    def jump_count(self, symbol: str) -> int:
        """How many jumps ``symbol``'s path has taken so far."""
        return self._by_symbol[symbol].jumps

    def quotes(self) -> list[tuple[str, str, int]]:
        """``(symbol, source, price_ticks)`` of every source now, in configuration order."""
        return [
            (p.config.symbol, source, p.ticks(basis))
            for p in self._paths
            for source, basis in zip(p.config.sources, p.bases, strict=True)
        ]

    def step(self, dt_ms: int) -> list[tuple[str, str, int]]:
        """Advance every path by ``dt_ms`` (0: no move) and return :meth:`quotes`.

        Random draws per step, in this order: one normal per market (diffusion), then per
        market a Poisson jump count, its jump sizes, and one normal per source (basis).
        """
        if dt_ms < 0:
            raise ValueError("dt_ms must be >= 0")
        if dt_ms:
            self._advance(dt_ms)
        return self.quotes()

    def _advance(self, dt_ms: int) -> None:
        rng = self._rng
        dt = dt_ms / YEAR_MS
        root_dt = math.sqrt(dt)
        independent = [rng.gauss(0.0, 1.0) for _ in self._paths]
        for i, path in enumerate(self._paths):
            cfg = path.config
            row = self._chol[i]
            shock = sum(row[k] * independent[k] for k in range(i + 1))
            sigma = cfg.volatility
            compensator = cfg.jump_intensity * (
                math.exp(cfg.jump_mean + 0.5 * cfg.jump_stdev**2) - 1.0
            )
            move = (cfg.drift - 0.5 * sigma * sigma - compensator) * dt + sigma * root_dt * shock
            count = _poisson(rng, cfg.jump_intensity * dt)
            for _ in range(count):
                move += rng.gauss(cfg.jump_mean, cfg.jump_stdev)
            path.jumps += count
            path.log_price += move
            keep = 0.5 ** (dt_ms / cfg.basis_halflife_ms)
            spread = cfg.basis_noise * math.sqrt(1.0 - keep * keep)
            path.bases = [keep * b + spread * rng.gauss(0.0, 1.0) for b in path.bases]
        self._elapsed_ms += dt_ms


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw by Knuth's product of uniforms, in chunks of mean <= 30 (no underflow)."""
    count = 0
    while mean > 0.0:
        chunk = min(mean, 30.0)
        mean -= chunk
        limit = math.exp(-chunk)
        product = rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
    return count

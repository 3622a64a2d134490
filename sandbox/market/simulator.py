"""The simulated market: index sources plus background liquidity, as engine commands.

:class:`MarketSimulator` owns an :class:`~sandbox.market.index_sim.IndexSimulator` and the
:class:`~sandbox.market.liquidity.LiquidityAgent` s of every market. It never submits anything:
``step(exchange, dt_ms)`` returns the commands for the caller to submit in order (and the caller
submits ``Tick()`` itself), so the server keeps one place that changes the exchange. Pure and
seeded: the same seed, exchange history and ``dt_ms`` sequence give the same commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sandbox.engine.commands import Command, Deposit, UpdateIndexSource
from sandbox.engine.exchange import CLIENT_ID_PATTERN, Exchange
from sandbox.engine.instruments import Instrument

from .index_sim import (
    DEFAULT_CORRELATIONS,
    IndexPathConfig,
    IndexSimulator,
    correlation_matrix,
    default_path_configs,
)
from .liquidity import (
    DEFAULT_AGENT_COLLATERAL,
    NO_QUOTES,
    THICK,
    LiquidityAgent,
    LiquidityProfile,
    Quotes,
    funding_commands,
    tighter_quotes,
)

__all__ = ["MarketSimulator", "SimulatorConfig", "agent_account"]


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Settings of the agents' accounts.

    ``agent_collateral``: money units each agent account receives from
    :meth:`MarketSimulator.bootstrap_commands`. ``account_prefix``: agent accounts are
    ``<prefix>:<symbol>``, then ``<prefix>:<symbol>:2``, ... for further agents in a market.
    ``default_profile``: the profile of the one agent per market when none are given.
    """

    agent_collateral: int = DEFAULT_AGENT_COLLATERAL
    account_prefix: str = "mm"
    default_profile: LiquidityProfile = THICK

    def __post_init__(self) -> None:
        if self.agent_collateral <= 0:
            raise ValueError("agent_collateral must be positive")


def agent_account(prefix: str, symbol: str, index: int) -> str:
    """The account id of the ``index``-th (0-based) agent of ``symbol``."""
    base = f"{prefix}:{symbol}"
    return base if index == 0 else f"{base}:{index + 1}"


class MarketSimulator:
    """Index paths and liquidity agents for a set of instruments.

    ``paths`` default to :func:`~sandbox.market.index_sim.default_path_configs` of the
    instruments; their sources must be sources of the instrument's index. ``correlation``
    (same order as the paths) defaults to :data:`~sandbox.market.index_sim.DEFAULT_CORRELATIONS`.
    ``agents`` maps a symbol to the profiles of its agents (default: one
    ``config.default_profile`` agent per market; a symbol left out gets none).
    """

    def __init__(
        self,
        instruments: Iterable[Instrument],
        seed: int,
        *,
        paths: Sequence[IndexPathConfig] | None = None,
        correlation: Sequence[Sequence[float]] | None = None,
        agents: Mapping[str, Sequence[LiquidityProfile]] | None = None,
        config: SimulatorConfig | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.instruments = {inst.symbol: inst for inst in instruments}
        chosen = default_path_configs(self.instruments.values()) if paths is None else paths
        symbols = [p.symbol for p in chosen]
        if sorted(symbols) != sorted(self.instruments):
            raise ValueError(
                f"need exactly one path per instrument: paths {symbols}, "
                f"instruments {list(self.instruments)}"
            )
        for path in chosen:
            weights = self.instruments[path.symbol].mechanics.index.weights
            unknown = [s for s in path.sources if s not in weights]
            if unknown:
                raise ValueError(
                    f"{path.symbol}: sources {unknown} are not in the index {sorted(weights)}"
                )
        if correlation is None:
            correlation = correlation_matrix(symbols, DEFAULT_CORRELATIONS)
        self.index = IndexSimulator(chosen, correlation, seed)
        if agents is None:
            agents = {symbol: (self.config.default_profile,) for symbol in self.instruments}
        unknown_markets = [s for s in agents if s not in self.instruments]
        if unknown_markets:
            raise ValueError(f"agents for unknown markets {unknown_markets}")
        self.agents: dict[str, tuple[LiquidityAgent, ...]] = {
            symbol: tuple(
                LiquidityAgent(
                    self.instruments[symbol],
                    profile,
                    account=agent_account(self.config.account_prefix, symbol, i),
                )
                for i, profile in enumerate(agents.get(symbol, ()))
            )
            for symbol in self.instruments
        }
        for account in self.accounts:
            if not CLIENT_ID_PATTERN.fullmatch(account):
                raise ValueError(f"agent account id {account!r} is not a valid account id")

    @property
    def accounts(self) -> tuple[str, ...]:
        """Every agent account, market by market."""
        return tuple(a.account for agents in self.agents.values() for a in agents)

    def bootstrap_commands(self) -> list[Deposit]:
        """The deposits that fund every agent account (submit once, before the first step)."""
        return funding_commands(
            (a for agents in self.agents.values() for a in agents), self.config.agent_collateral
        )

    def step(self, exchange: Exchange, dt_ms: int) -> list[Command]:
        """Advance the index paths by ``dt_ms`` and return, in this order, one
        ``UpdateIndexSource`` per source, then each market's agents' commands (markets in
        instrument order, agents in configured order). Submit them in that order: each agent
        avoids the quotes its market's earlier agents will have placed."""
        out: list[Command] = [
            UpdateIndexSource(symbol, source, price)
            for symbol, source, price in self.index.step(dt_ms)
        ]
        for agents in self.agents.values():
            planned: Quotes = NO_QUOTES
            for agent in agents:
                out.extend(agent.commands(exchange, planned))
                planned = tighter_quotes(planned, agent.planned_quotes)
        return out

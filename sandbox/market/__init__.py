"""The simulated market around the engine: seeded index sources and background liquidity.

Pure and synchronous like the engine (no asyncio, no wall clock, no I/O): everything here
reads the exchange through its query methods and answers with commands for the caller to
submit.
"""

from .flow import FlowConfig, NoiseFlow
from .index_sim import (
    DEFAULT_CORRELATIONS,
    DEFAULT_PATH_PARAMS,
    DEFAULT_SOURCES,
    YEAR_MS,
    IndexPathConfig,
    IndexSimulator,
    cholesky,
    correlation_matrix,
    default_path_configs,
)
from .liquidity import (
    DEFAULT_AGENT_COLLATERAL,
    NO_QUOTES,
    PROFILES,
    THICK,
    THIN,
    LiquidityAgent,
    LiquidityProfile,
    Quotes,
    funding_commands,
    tighter_quotes,
)
from .simulator import MarketSimulator, SimulatorConfig, agent_account

__all__ = [
    "DEFAULT_AGENT_COLLATERAL",
    "DEFAULT_CORRELATIONS",
    "DEFAULT_PATH_PARAMS",
    "DEFAULT_SOURCES",
    "NO_QUOTES",
    "PROFILES",
    "THICK",
    "THIN",
    "YEAR_MS",
    "FlowConfig",
    "IndexPathConfig",
    "IndexSimulator",
    "LiquidityAgent",
    "LiquidityProfile",
    "MarketSimulator",
    "NoiseFlow",
    "Quotes",
    "SimulatorConfig",
    "agent_account",
    "cholesky",
    "correlation_matrix",
    "default_path_configs",
    "funding_commands",
    "tighter_quotes",
]

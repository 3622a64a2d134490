"""Background order flow: small seeded market orders, so the simulated market trades.

Liquidity agents only quote; without takers there is no last price, no candles and no volume.
:class:`NoiseFlow` sends market orders at a Poisson rate per market (in simulated time), sized
around a notional, leaning against its own position so its inventory mean-reverts. Pure and
seeded like the rest of ``sandbox.market``: it reads the exchange and returns commands.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sandbox.engine.commands import Command, Deposit, OrderType, PlaceOrder, Side
from sandbox.engine.exchange import Exchange
from sandbox.engine.instruments import Instrument

MAX_ORDERS_PER_STEP = 4  # per market


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """``orders_per_minute`` per market (simulated time); each of about ``notional`` USDT
    (uniform 0.2x..1.8x), never above ``max_position_notional`` of inventory."""

    orders_per_minute: float = 6.0
    notional: Decimal = Decimal("3000")
    max_position_notional: Decimal = Decimal("100000")
    collateral: int = 10_000_000 * 10**8  # money units per flow account
    account_prefix: str = "flow"

    def __post_init__(self) -> None:
        if self.orders_per_minute < 0 or self.notional <= 0 or self.max_position_notional <= 0:
            raise ValueError("flow rate, notional and position limit must be positive")


class NoiseFlow:
    """Market orders from one account per market, at random times and with random sides."""

    def __init__(
        self, instruments: Iterable[Instrument], seed: int, config: FlowConfig | None = None
    ) -> None:
        self.config = config or FlowConfig()
        self.instruments = {i.symbol: i for i in instruments}
        self.rng = random.Random(f"flow:{seed}")
        self._n = 0

    def account(self, symbol: str) -> str:
        return f"{self.config.account_prefix}:{symbol}"

    def bootstrap_commands(self) -> list[Deposit]:
        return [Deposit(self.account(s), self.config.collateral) for s in self.instruments]

    def step(self, exchange: Exchange, dt_ms: int) -> list[Command]:
        """The market orders due in the next ``dt_ms`` of simulated time."""
        cfg = self.config
        rate = cfg.orders_per_minute * dt_ms / 60_000
        out: list[Command] = []
        for symbol, inst in self.instruments.items():
            # At most a few per step: a long jump (an admin advance) must not become a flood.
            count = min(_poisson(self.rng, rate), MAX_ORDERS_PER_STEP)
            if not count:
                continue
            mark = exchange.prices(symbol).mark
            price = inst.price_to_decimal(mark)
            account = exchange.accounts.get(self.account(symbol))
            pos = account.positions.get(symbol) if account is not None else None
            size = pos.size if pos is not None else 0
            limit_lots = int(cfg.max_position_notional / price / inst.lot_size)
            for _ in range(count):
                # Lean against the inventory: P(buy) falls from 1 to 0 as size goes -limit..limit.
                lean = 0.5 - 0.5 * max(-1.0, min(1.0, size / max(limit_lots, 1)))
                side = Side.BUY if self.rng.random() < lean else Side.SELL
                notional = cfg.notional * Decimal(str(round(self.rng.uniform(0.2, 1.8), 3)))
                lots = max(inst.min_qty, int(notional / price / inst.lot_size))
                lots = min(lots, inst.market_max_qty)
                if inst.notional(mark, lots) < inst.min_notional:
                    continue
                self._n += 1
                out.append(
                    PlaceOrder(
                        self.account(symbol),
                        symbol,
                        side,
                        lots,
                        order_type=OrderType.MARKET,
                        client_id=f"flow-{self._n}",
                    )
                )
                size += int(side) * lots
        return out


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw by inversion (small means only: ours are a few per step)."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, mean**0.5)))
    threshold = math.exp(-mean)
    k, p = 0, rng.random()
    while p > threshold:
        k += 1
        p *= rng.random()
    return k

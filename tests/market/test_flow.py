"""NoiseFlow: seeded market orders that make the simulated market trade, inventory bounded."""

from __future__ import annotations

from decimal import Decimal

from sandbox.engine import (
    Exchange,
    ManualClock,
    PlaceOrder,
    Rejected,
    Tick,
    Trade,
    default_instruments,
)
from sandbox.market import FlowConfig, MarketSimulator, NoiseFlow

START_MS = 1_700_000_000_000


def run(seed: int, steps: int, config: FlowConfig | None = None) -> tuple[Exchange, list[object]]:
    clock = ManualClock(START_MS)
    instruments = default_instruments()
    ex = Exchange(instruments, clock=clock)
    sim = MarketSimulator(instruments, seed)
    flow = NoiseFlow(instruments, seed, config)
    for cmd in [*sim.bootstrap_commands(), *flow.bootstrap_commands()]:
        ex.submit(cmd)
    log: list[object] = []
    for _ in range(steps):
        clock.advance(1_000)
        for cmd in sim.step(ex, 1_000):
            ex.submit(cmd)
        for cmd in flow.step(ex, 1_000):
            assert isinstance(cmd, PlaceOrder)
            events = ex.submit(cmd)
            assert not isinstance(events[0], Rejected), events[0]
            log.append((cmd, [e for e in events if isinstance(e, Trade)]))
        ex.submit(Tick())
    return ex, log


def test_flow_trades_at_about_its_rate_and_is_seeded() -> None:
    ex, log = run(seed=5, steps=300)  # 5 simulated minutes, 6 orders/min/market
    assert 55 <= len(log) <= 130  # mean 90 over 3 markets
    assert all(trades for _, trades in log)  # every market order found liquidity
    assert all(ex.prices(s).last is not None for s in ex.markets)
    again = [cmd for cmd, _ in run(seed=5, steps=300)[1]]
    assert again == [cmd for cmd, _ in log]
    assert [cmd for cmd, _ in run(seed=6, steps=300)[1]] != again


def test_flow_inventory_stays_bounded() -> None:
    config = FlowConfig(orders_per_minute=60, max_position_notional=Decimal("20000"))
    ex, _ = run(seed=1, steps=300, config=config)
    for symbol, market in ex.markets.items():
        inst = market.instrument
        pos = ex.accounts[f"flow:{symbol}"].positions[symbol]
        notional = abs(inst.price_to_decimal(market.mark) * inst.qty_to_decimal(pos.size))
        # One order past the limit at most (about 1.8 x 3,000 USDT).
        assert notional <= 20_000 + 1.8 * 3_000 + 1, (symbol, notional)


def test_zero_rate_sends_nothing() -> None:
    _, log = run(seed=2, steps=100, config=FlowConfig(orders_per_minute=0))
    assert log == []

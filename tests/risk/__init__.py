"""Tests of :mod:`perpbot.risk` (the pre-trade checker and stress suite)."""

from __future__ import annotations

from perpbot.risk import MarketRules
from perpbot.risk.margin import money_to_decimal, rate_to_decimal
from sandbox.engine import Instrument, default_instruments


def engine_rules(instruments: tuple[Instrument, ...] | None = None) -> dict[str, MarketRules]:
    """The checker's rules for the sandbox's instruments (defaults: BTC, ETH, SOL)."""
    out = {}
    for inst in instruments or default_instruments():
        out[inst.symbol] = MarketRules(
            symbol=inst.symbol,
            tick_size=inst.tick_size,
            lot_size=inst.lot_size,
            brackets=inst.brackets,
            maker_fee=rate_to_decimal(inst.maker_fee),
            taker_fee=rate_to_decimal(inst.taker_fee),
            min_qty=inst.qty_to_decimal(inst.min_qty),
            min_notional=money_to_decimal(inst.min_notional),
            funding_interval_ms=inst.mechanics.funding.interval_ms,
            default_leverage=inst.default_leverage,
            market_band=rate_to_decimal(inst.market_band),
        )
    return out

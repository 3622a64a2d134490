"""Smoke test of the benchmark harness (bench/bench_engine.py), in-process and untimed.

The engine and the bare book must do the same matching work on the same stream; the engine must
accept every command and give each order the id the generator predicted.
"""

from __future__ import annotations

import pytest

from bench.bench_engine import ADD, CANCEL, generate, instruments_for, measure


@pytest.mark.parametrize("markets", [1, 3])
def test_engine_and_bare_book_agree(markets: int) -> None:
    stream = generate(2_000, seed=7, markets=markets)
    kinds = {op[0] for op in stream}
    assert {ADD, CANCEL} <= kinds and len(kinds) == 4  # adds, cancels, IOC and market orders
    symbols = tuple(i.symbol for i in instruments_for(markets))

    bare = measure("bare", stream, symbols, verify=True)
    engine = measure("engine", stream, symbols, verify=True)

    assert engine["rejected"] == 0
    assert engine["wrong_id"] == 0
    assert engine["traded_qty"] == bare["traded_qty"] > 0
    # per market: trade count, best bid, best ask, open orders, full-depth digest
    assert engine["state"] == bare["state"]


def test_stream_is_deterministic() -> None:
    assert generate(500, seed=3) == generate(500, seed=3)
    assert generate(500, seed=3) != generate(500, seed=4)

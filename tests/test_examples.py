"""The SDK examples run against a live sandbox (simulated market, clock x60) and clean up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from fractions import Fraction

import pytest

from examples import market_maker, trend_follower
from perpbot import AsyncClient
from sandbox.config import DEMO_KEY, DEMO_SECRET, SandboxSettings
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState


@pytest.fixture
async def sandbox_url() -> AsyncIterator[str]:
    state = SandboxState(SandboxSettings(seed=11, speed=Fraction(60)).with_demo_account())
    async with serve(state) as url:
        yield url


async def test_market_maker_quotes_and_leaves_nothing_open(
    sandbox_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await market_maker.main(sandbox_url, DEMO_KEY, DEMO_SECRET, "BTC-PERP", 3.5)
    out = capsys.readouterr().out
    assert "done:" in out
    quotes = int(out.split("done: ")[1].split(" quotes")[0])
    assert quotes >= 4  # two a second, some may miss when the book moves
    async with AsyncClient(sandbox_url, DEMO_KEY, DEMO_SECRET) as client:
        assert await client.open_orders() == []


async def test_trend_follower_trades_and_exits(
    sandbox_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await trend_follower.main(sandbox_url, DEMO_KEY, DEMO_SECRET, "BTC-PERP", 8)
    out = capsys.readouterr().out
    assert "done:" in out and "open positions []" in out, out

"""perpbot's CcxtGuard around an unmodified ccxt binanceusdm talking to the sandbox: the guard
reads the venue's markets, leverage tiers, balance and positions through ccxt and checks orders
exactly as it does for our own client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import pytest

from perpbot.errors import RiskRejected
from perpbot.guard import CcxtGuard, GuardPolicy
from sandbox.engine import PlaceOrder
from sandbox.engine.commands import Side

from .conftest import ALICE, BTC, Sandbox, ccxt_client


@pytest.fixture
async def alice(sandbox: Sandbox) -> AsyncIterator[Any]:
    ex = ccxt_client(ccxt_async, sandbox.url, ALICE)
    try:
        yield ex
    finally:
        await ex.close()


async def test_ccxt_guard_on_the_sandbox(sandbox: Sandbox, alice: Any) -> None:
    state = sandbox.state
    state.apply(PlaceOrder("bob", "BTC-PERP", Side.SELL, 30_000, 600_000))  # 30 BTC @ 60,000
    policy = GuardPolicy.model_validate(
        {"risk": {"max_leverage": "3"}, "resize": "resize", "cache_ttl_s": 0}
    )
    guard = CcxtGuard(alice, policy)
    info = (await guard._markets())[BTC]
    engine_brackets = state.core.instruments["BTC-PERP"].brackets
    # The venue's tiers came through ccxt (fetch_leverage_tiers -> /fapi/v1/leverageBracket).
    assert len(info.brackets) == len(engine_brackets) > 1
    assert [b.max_leverage for b in info.brackets] == [b.max_leverage for b in engine_brackets]

    # 100,000 USDT at most 3x: 4 BTC (240,000) passes, 10 more are cut to what keeps 3x.
    await guard.create_order(BTC, "market", "buy", 4)
    resized = await guard.create_order(BTC, "market", "buy", 10)
    filled = Decimal(str(resized["filled"]))
    assert Decimal(0) < filled < 10
    [pos] = [p for p in await alice.fetch_positions([BTC]) if p["contracts"]]
    assert Decimal(str(pos["contracts"])) == 4 + filled
    assert Decimal(0) < filled < 1  # (300,000 - fees) / 60,000 - 4
    account = state.core.exchange.account_view("alice")
    assert account is not None
    with pytest.raises(RiskRejected) as refused:
        await guard.create_order(BTC, "market", "buy", 5)  # no room left under 3x
    assert refused.value.reason == "LEVERAGE_EXCEEDS_MAX"
    assert state.core.exchange.account_view("alice") == account  # nothing was sent

"""The README's demo runs end to end: sandbox up, bot trades over HTTP and WebSocket, all down."""

from __future__ import annotations

import pytest

from examples import demo


async def test_demo_trades_and_stops(capsys: pytest.CaptureFixture[str]) -> None:
    await demo.main(seconds=2.5)
    out = capsys.readouterr().out
    assert "sandbox on http://127.0.0.1:" in out
    assert "FILL    BUY" in out  # the opening market order filled against simulated liquidity
    assert "order   accepted BUY  0.02" in out  # a post-only quote
    assert "ticker  mark" in out
    assert "Summary" in out and "fills, fees" in out
    # A quote may still be refused if the book moves under it (a 4xx the bot prints); a 5xx
    # would be a bug.
    assert not [line for line in out.splitlines() if line.strip().startswith("!") and ": 5" in line]
    assert out.rstrip().endswith("everything the demo started has exited")

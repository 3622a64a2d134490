"""The README's demo tells its story end to end: sandbox up, two bots over HTTP and WebSocket,
a crash, the unguarded bot liquidated step by step, the guarded one intact, the report written,
everything stopped."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from examples import demo


async def test_demo_story(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks_before = set(asyncio.all_tasks())
    story = await demo.main(seconds=0, out=tmp_path)
    out = capsys.readouterr().out
    assert "sandbox on http://127.0.0.1:" in out
    # the unguarded bot is partially liquidated in several steps, each printed with its numbers
    assert len(story.steps) >= 2
    assert story.steps[0].remaining > 0  # the first step left part of the position open
    printed = re.findall(r"LIQUIDATION step (\d+) \(unguarded\): closed ([\d.]+) BTC", out)
    assert [int(n) for n, _ in printed] == [s.number for s in story.steps]
    assert [q for _, q in printed] == [str(s.qty) for s in story.steps]
    # the guarded bot was resized, refused, stopped by its kill switch, and never liquidated
    assert story.entry["guarded"] < story.entry["unguarded"]
    assert story.guarded_steps == 0 and story.final_size["guarded"] == story.entry["guarded"]
    assert story.kill_switch is not None and "KILL SWITCH tripped" in out
    assert story.final_equity["guarded"] > story.final_equity["unguarded"]
    # the report and its charts
    report = tmp_path / "report.md"
    assert report.exists() and "| liquidation steps | " in report.read_text()
    for name in ("prices.png", "bots.png", "liquidation_steps.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert f"report: {report}" in out
    assert "everything the demo started has exited" in out
    # nothing left running
    assert set(asyncio.all_tasks()) - tasks_before == set()

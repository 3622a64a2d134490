"""The README's bot snippet runs as printed, against a real sandbox server."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.config import SandboxSettings
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    """A sandbox (simulated market, demo account) on a free port, in a thread of its own."""
    ready = threading.Event()
    url: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def run() -> None:
        state = SandboxState(SandboxSettings(seed=3).with_demo_account())
        async with serve(state) as base:
            url.append(base)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(30), "the sandbox did not start"
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def test_readme_bot_runs(sandbox_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README lost its python example"
    code = blocks[0].replace('"http://127.0.0.1:8765"', repr(sandbox_url))
    assert code != blocks[0], "the snippet no longer names the default URL"
    assert len(blocks[0].strip().splitlines()) <= 22
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^book \d+(\.\d)? / \d+(\.\d)? seq \d+$", out, flags=re.M), out
    assert re.search(r"^filled 0\.0\d+ @ 6\d{4}(\.\d)? fee 0\.\d+$", out, flags=re.M), out
    assert re.search(r"^resting SELL 0\.01 @ \d+(\.\d)? NEW$", out, flags=re.M), out
    assert "canceled: CANCELED" in out
    assert re.search(r"^equity 99\d{3}(\.\d+)? USDT$", out, flags=re.M), out

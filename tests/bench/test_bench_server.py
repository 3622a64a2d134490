"""Smoke tests of bench/bench_server.py.

In the default suite (about a second, no sockets): the requests the benchmark feeds to wrk are
valid HTTP, signed, unique and each accepted once by the sandbox app (a replay is refused), and
the IOC orders leave nothing resting. Opt-in (``slow``, about 15 s, needs wrk): a ``--quick``
run end to end, checking that it prints every row with sane figures.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.bench_server import (
    HTTP_ACCOUNT,
    SYMBOL,
    _drive_asgi,
    _loop_factory,
    bench_settings,
    write_pool,
)
from sandbox.server.app import create_app
from sandbox.server.state import SandboxState

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_server.py"


def read_pool(path: Path) -> list[bytes]:
    """The pool file format of bench/wrk_orders.lua: ``<length>\\n<raw request>`` repeated."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        size = int(data[pos:nl])
        out.append(data[nl + 1 : nl + 1 + size])
        pos = nl + 1 + size
    return out


def as_asgi(raw: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("ascii").split("\r\n")
    method, path, version = request_line.split(" ")
    assert version == "HTTP/1.1"
    headers = [tuple(line.split(": ", 1)) for line in header_lines]
    lengths = [int(v) for k, v in headers if k.lower() == "content-length"]
    assert lengths == [len(body)]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    return scope, body


def test_request_pool_is_accepted_once_and_leaves_nothing_resting(tmp_path: Path) -> None:
    write_pool(tmp_path / "pool", 2, 40, "t", "127.0.0.1:1")
    slices = [read_pool(tmp_path / f"pool.{k}") for k in (1, 2)]
    requests = [raw for s in slices for raw in s]
    assert [len(s) for s in slices] == [40, 40]
    assert len(set(requests)) == 80  # every request unique, no overlap between threads
    state = SandboxState(bench_settings())
    app = create_app(state, background=False)
    parsed = [as_asgi(raw) for raw in requests]
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        assert runner.run(_drive_asgi(app, parsed)) == 0  # all 200
        assert runner.run(_drive_asgi(app, parsed[:3])) == 3  # replays are refused
    exchange = state.core.exchange
    account = HTTP_ACCOUNT[2]
    assert list(exchange.open_orders(account, SYMBOL)) == []
    assert len(exchange.accounts[account].recent) == 80  # all expired (IOC, empty book)
    assert all(o.status == "EXPIRED" for o in exchange.accounts[account].recent.values())


def _rows(out: str) -> dict[tuple[int, str], tuple[float, float, float, float]]:
    pattern = r"^\s*(\d+)\s+(echo|orders)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
    return {
        (int(c), app): (float(rps.replace(",", "")), float(p50), float(p99), float(cpu))
        for c, app, rps, p50, p99, cpu in re.findall(pattern, out, re.M)
    }


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_quick_run_prints_every_row_with_sane_figures() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    out = proc.stdout
    assert "server failed to start" not in proc.stderr
    assert proc.returncode == 0, out + proc.stderr
    rows = _rows(out)
    assert set(rows) == {(1, "echo"), (1, "orders"), (16, "echo"), (16, "orders")}
    for rps, p50, p99, cpu in rows.values():
        assert rps > 0 and 0 < p50 <= p99 and cpu > 0
    assert re.search(r"^ratio orders/echo @16 conns: \d+\.\d+x", out, re.M)
    assert re.search(r"clients subscribed / failed\s+50 / 0$", out, re.M)
    assert re.search(r"clients dropped \(close codes\)\s+0$", out, re.M)
    delivered = re.search(r"diffs delivered / expected\s+([\d,]+) / ([\d,]+)", out)
    assert delivered and delivered.group(1) == delivered.group(2) != "0"
    rate = re.search(r"delivered messages/s\s+([\d,]+)", out)
    assert rate and int(rate.group(1).replace(",", "")) > 0
    assert out.rstrip().splitlines()[-1].startswith("summary: orders vs echo")

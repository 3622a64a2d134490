"""What the SDK adds to the transport: order round trips through ``perpbot.AsyncClient`` vs a
bare ``httpx.AsyncClient`` sending the same hand-signed requests, in the same run.

    .venv/bin/python bench/bench_sdk.py [--orders N] [--repeat R] [--quick]

The sandbox runs in its own process pinned to CPU 0 (the ``bench_server.py`` child: simulation
off, throttling out of the way); this process is pinned to CPU 1. Each order is an IOC LIMIT BUY
of 0.002 BTC-PERP at 59,000 on an empty book (accepted, expires: a full trip through the order
path, no resting state) with a unique client order id. The bare client builds the JSON with
orjson, signs it with ``perpbot.signing`` and parses the answer with orjson; the SDK does what it
does for a user (client-id generation, signing, retry wrapper, the typed ``OrderResult`` model).

Reported, best of ``--repeat`` (bare and SDK alternate): sequential round trips (orders/s, p50,
p99) and throughput with 16 concurrent tasks on one client, and the ratio SDK/bare (goal >= 0.9x:
the SDK adds almost nothing to the transport).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import orjson

from bench.bench_server import HTTP_ACCOUNT, ServerProc, pin
from perpbot import AsyncClient
from perpbot.retry import RetryPolicy
from perpbot.signing import signed_headers

PRICE = "59000"
QTY = "0.002"


class Bare:
    """The baseline: hand-built, hand-signed requests on a bare httpx client."""

    def __init__(self, url: str) -> None:
        key, secret, _ = HTTP_ACCOUNT
        self.key, self.secret = key, secret
        self.http = httpx.AsyncClient(base_url=url, timeout=10)
        self.n = 0

    async def order(self) -> None:
        self.n += 1
        body = orjson.dumps(
            {
                "market": "BTC-PERP",
                "side": "BUY",
                "type": "LIMIT",
                "qty": QTY,
                "price": PRICE,
                "tif": "IOC",
                "client_order_id": f"bare-{time.monotonic_ns()}-{self.n}",
            }
        )
        headers = signed_headers(
            self.key, self.secret, "POST", "/v1/orders", body, time.time_ns() // 1_000_000
        )
        r = await self.http.post("/v1/orders", content=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"bare order refused: {r.status_code} {r.text}")
        orjson.loads(r.content)

    async def aclose(self) -> None:
        await self.http.aclose()


class Sdk:
    def __init__(self, url: str) -> None:
        key, secret, _ = HTTP_ACCOUNT
        self.client = AsyncClient(url, key, secret, retry=RetryPolicy())

    async def order(self) -> None:
        await self.client.create_order("BTC-PERP", "BUY", QTY, PRICE, tif="IOC")

    async def aclose(self) -> None:
        await self.client.aclose()


async def sequential(order: Callable[[], Awaitable[None]], n: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        await order()
        latencies.append(time.perf_counter() - t0)
    return n / (time.perf_counter() - start), latencies


async def concurrent(order: Callable[[], Awaitable[None]], n: int, tasks: int) -> float:
    per_task = n // tasks

    async def worker() -> None:
        for _ in range(per_task):
            await order()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return per_task * tasks / (time.perf_counter() - start)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(url: str, orders: int, repeat: int) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for name, make in (("bare", Bare), ("sdk", Sdk)):
            impl = make(url)
            try:
                for _ in range(50):  # warm up connections and caches
                    await impl.order()
                rate, lat = await sequential(impl.order, orders)
                rate16 = await concurrent(impl.order, orders, 16)
            finally:
                await impl.aclose()
            row = {
                "seq": rate,
                "p50": pct(lat, 0.5),
                "p99": pct(lat, 0.99),
                "mean": statistics.fmean(lat) * 1000,
                "c16": rate16,
            }
            old = best.get(name)
            if old is None:
                best[name] = row
            else:
                old["seq"] = max(old["seq"], row["seq"])
                old["c16"] = max(old["c16"], row["c16"])
                if row["p50"] < old["p50"]:
                    old["p50"], old["p99"], old["mean"] = row["p50"], row["p99"], row["mean"]
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3000, help="orders per run and mode")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a few-second version")
    args = parser.parse_args(argv)
    if args.quick:
        args.orders, args.repeat = 300, 1
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProc("sandbox", 0, Path(tmp))
        server.start()
        try:
            pin(1)
            best = asyncio.run(measure(server.url, args.orders, args.repeat))
        finally:
            server.stop()
    bare, sdk = best["bare"], best["sdk"]
    print(
        f"SDK vs bare httpx: {args.orders} IOC orders per mode and run, best of {args.repeat}; "
        "sandbox on CPU 0, clients on CPU 1"
    )
    print(f"{'client':<8}{'seq orders/s':>14}{'p50 ms':>9}{'p99 ms':>9}{'16 tasks orders/s':>20}")
    for name, row in (("bare", bare), ("sdk", sdk)):
        print(
            f"{name:<8}{row['seq']:>14,.0f}{row['p50']:>9.3f}{row['p99']:>9.3f}{row['c16']:>20,.0f}"
        )
    seq_ratio, c16_ratio = sdk["seq"] / bare["seq"], sdk["c16"] / bare["c16"]
    print(
        f"ratio sdk/bare: sequential {seq_ratio:.3f}x, 16 tasks {c16_ratio:.3f}x (goal >= 0.9x); "
        f"SDK overhead per order ~{(1 / sdk['seq'] - 1 / bare['seq']) * 1e6:.0f} µs"
    )
    print(
        f"summary: sdk {sdk['seq']:,.0f} vs bare {bare['seq']:,.0f} orders/s sequential "
        f"({seq_ratio:.2f}x), {sdk['c16']:,.0f} vs {bare['c16']:,.0f} with 16 tasks "
        f"({c16_ratio:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

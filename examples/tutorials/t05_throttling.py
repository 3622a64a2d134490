"""Tutorial 5 — Throttling: naive retries get banned; backoff with jitter and client-side
limits survive.

Run: ``python -m examples.tutorials.t05_throttling`` (real server over HTTP, seconds).

**What you will see.** The real sandbox server on a loopback port, its rate limits tightened
through the admin API (``POST /v1/admin/limits``: 5 orders per 10 s, 3 strikes to a ban) so
the story takes a minute instead of an hour. Two bots each want to rest 20 orders:

* the **naive bot** — signed requests on a bare ``httpx`` client — retries at once whenever
  it is refused. Its sixth order gets ``429 RATE_LIMITED`` with a ``Retry-After``; it keeps
  sending, every refused request is a strike, and the third strike earns ``418 BANNED`` for
  10 s, then 20 s, then 40 s: it spends most of the run banned and finishes far later;
* the **SDK bot** — ``AsyncClient`` with ``perpbot.retry.RetryPolicy`` (full-jitter backoff
  that honours ``Retry-After``) and ``perpbot.limits.RateLimiter.from_rules(await
  client.rate_limits())`` — waits for room before sending. It never sees a 429 and places all
  20 orders at the pace the exchange allows.

The server, its throttle and both bots share one virtual clock (``VirtualTime`` in
``common.py``): time passes only when someone waits, so a minute of throttling runs in about a
second, with the same requests and answers as in real time.

**Why.** docs/api.md "Rate limits": a request over budget is refused with 429 and consumes
nothing, but until the window ends every further request of that key or IP is refused as well
*and counts as a strike*; 5 strikes (3 here) earn a ban that doubles each time. Retrying at
once does not get the order in sooner, it only turns a throttle into a ban.

**What to do in a bot.** Never retry a 429 before its ``Retry-After``; never retry a 418 at
all. Mirror the exchange's budgets on the client (``RateLimiter``), read the used-weight
headers, and share one limiter between all tasks of a key. The SDK does all of this by default
except the limiter, which you opt into with ``limiter=``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import httpx
import orjson

from perpbot import AsyncClient
from perpbot.errors import PerpbotError
from perpbot.limits import RateLimiter
from perpbot.retry import RetryPolicy
from perpbot.signing import signed_headers
from sandbox.charts import Chart, Marker, Panel, Series, save_chart
from sandbox.config import AccountSeed, SandboxSettings
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState

from .common import ADMIN_TOKEN, Admin, VirtualTime, out_dir

KEY, SECRET = "bot-key-0001", "bot-secret-0123456789"
MARKET = "BTC-PERP"
LATENCY_S = 0.25  # virtual time each request takes
LIMITS = {"order_limit": 5, "strikes_to_ban": 3}


@dataclass
class Log:
    """Every HTTP answer a bot got: (virtual seconds since start, status)."""

    start: float
    answers: list[tuple[float, int]] = field(default_factory=list)
    placed: list[float] = field(default_factory=list)

    def count(self, status: int) -> int:
        return sum(1 for _, s in self.answers if s == status)

    def bans(self) -> list[float]:
        """When each ban began (the first 418 after a non-418 answer)."""
        out: list[float] = []
        previous = 0
        for t, status in self.answers:
            if status == 418 and previous != 418:
                out.append(t)
            previous = status
        return out


@dataclass(frozen=True, slots=True)
class BotResult:
    placed: int
    requests: int
    throttled_429: int
    banned_418: int
    bans: int
    seconds: float  # virtual seconds the bot ran


@dataclass(frozen=True, slots=True)
class Findings:
    naive: BotResult
    sdk: BotResult
    target: int
    charts: tuple[Path, ...]


class Recording(httpx.AsyncBaseTransport):
    """An HTTP transport that logs each answer's status and charges the virtual latency."""

    def __init__(self, vt: VirtualTime, log: Log) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.vt = vt
        self.log = log

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.vt.spend(LATENCY_S)
        if request.url.path.startswith("/v1/orders"):
            self.log.answers.append((self.vt.now - self.log.start, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.asynccontextmanager
async def venue(vt: VirtualTime) -> AsyncIterator[str]:
    """A fresh sandbox (no simulated market, manual clock) on the virtual wall clock, with the
    limits tightened through the admin API."""
    settings = SandboxSettings(
        speed=Fraction(0),
        simulate=False,
        admin_token=ADMIN_TOKEN,
        accounts=(AccountSeed(KEY, SECRET, "100000", "bot"),),
    )
    state = SandboxState(settings, now_wall_ms=vt.wall_ms)
    async with serve(state) as url:
        admin = Admin(url)
        try:
            await admin.limits(**LIMITS)
        finally:
            await admin.aclose()
        yield url


def order_body(i: int) -> bytes:
    price = 59000 - i  # distinct resting bids, far from the mark, inside the price band
    return orjson.dumps(
        {
            "market": MARKET,
            "side": "BUY",
            "type": "LIMIT",
            "qty": "0.002",
            "price": str(price),
            "client_order_id": f"naive-{i}",
        }
    )


async def naive_bot(url: str, vt: VirtualTime, target: int, budget_s: float) -> Log:
    """Sends the next order until it is accepted; on any refusal, sends it again at once."""
    log = Log(vt.now)
    async with httpx.AsyncClient(base_url=url, transport=Recording(vt, log)) as http:
        i = 0
        while i < target and vt.now - log.start < budget_s:
            body = order_body(i)
            headers = signed_headers(KEY, SECRET, "POST", "/v1/orders", body, vt.wall_ms())
            headers["Content-Type"] = "application/json"
            response = await http.post("/v1/orders", content=body, headers=headers)
            if response.status_code == 200:
                log.placed.append(vt.now - log.start)
                i += 1
    return log


async def sdk_bot(url: str, vt: VirtualTime, target: int, budget_s: float) -> Log:
    """The SDK with retries (full jitter, Retry-After) and a limiter built from the exchange's
    own rules."""
    log = Log(vt.now)
    retry = RetryPolicy(sleep=vt.sleep, monotonic=vt.monotonic)
    async with AsyncClient(
        url, KEY, SECRET, transport=Recording(vt, log), retry=retry, clock=vt.time
    ) as probe:
        rules = await probe.rate_limits()
    limiter = RateLimiter.from_rules(rules, clock=vt.monotonic, wall=vt.time, sleep=vt.sleep)
    async with AsyncClient(
        url,
        KEY,
        SECRET,
        transport=Recording(vt, log),
        retry=retry,
        limiter=limiter,
        clock=vt.time,
    ) as client:
        for i in range(target):
            if vt.now - log.start >= budget_s:
                break
            try:
                await client.create_order(
                    MARKET, "BUY", "0.002", str(59000 - i), client_order_id=f"sdk-{i}"
                )
            except PerpbotError:
                continue  # counted in the log; the bot moves on
            log.placed.append(vt.now - log.start)
    return log


def result(log: Log, vt: VirtualTime) -> BotResult:
    return BotResult(
        placed=len(log.placed),
        requests=len(log.answers),
        throttled_429=log.count(429),
        banned_418=log.count(418),
        bans=len(log.bans()),
        seconds=round(vt.now - log.start, 1),
    )


async def run_async(out: Path, *, quick: bool = False) -> Findings:
    target = 12 if quick else 20
    budget = 60.0 if quick else 120.0
    vt_naive, vt_sdk = VirtualTime(), VirtualTime()
    async with venue(vt_naive) as url:
        naive = await naive_bot(url, vt_naive, target, budget)
    async with venue(vt_sdk) as url:
        sdk = await sdk_bot(url, vt_sdk, target, budget)

    def placed_series(name: str, log: Log) -> Series:
        xs = [0.0, *log.placed]
        return Series(name, xs, list(range(len(xs))), kind="step")

    def statuses(log: Log) -> list[float]:
        return [float(s) for _, s in log.answers]

    chart = save_chart(
        Chart(
            f"Tutorial 5: {target} orders, a naive retry loop vs the SDK (5 orders / 10 s)",
            [
                Panel(
                    "Orders placed",
                    "orders",
                    [placed_series("naive bot", naive), placed_series("SDK bot", sdk)],
                    [Marker(t, "naive bot banned (418)") for t in naive.bans()],
                ),
                Panel(
                    "HTTP status of every order request",
                    "status",
                    [
                        Series(
                            "naive bot",
                            [t for t, _ in naive.answers],
                            statuses(naive),
                            kind="scatter",
                        ),
                        Series(
                            "SDK bot", [t for t, _ in sdk.answers], statuses(sdk), kind="scatter"
                        ),
                    ],
                ),
            ],
            xlabel="seconds (virtual clock shared by server and bots)",
        ),
        out / "throttling.png",
    )
    return Findings(result(naive, vt_naive), result(sdk, vt_sdk), target, (chart,))


def run(out: Path, *, quick: bool = False) -> Findings:
    """Both bots against fresh servers; the chart goes to ``out``. Must not be called from a
    running event loop (use :func:`run_async` there)."""
    return asyncio.run(run_async(out, quick=quick))


def main() -> None:
    f = run(out_dir(5))
    print(f"Tutorial 5: two bots each want to rest {f.target} orders; limit 5 orders per 10 s")
    for name, r in (("naive bot", f.naive), ("SDK bot", f.sdk)):
        print(
            f"  {name:<9} placed {r.placed:>2}/{f.target} in {r.seconds:>5} s with "
            f"{r.requests:>4} requests: {r.throttled_429} x 429, {r.banned_418} x 418 "
            f"({r.bans} bans)"
        )
    for path in f.charts:
        print(f"  chart: {path}")


if __name__ == "__main__":
    main()

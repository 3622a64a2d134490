"""Throttling storm: the limits tighten live; a naive retrying bot is banned, the SDK is not.

A ``tighten_limits`` fault cuts the per-key request weight to ``key_weight_limit`` per
``window_ms`` (and bans after ``strikes_to_ban`` refused requests) while the simulated clock
stands still. Two bots then each want ``requests`` reads of their leverage (weight 1):

* the naive bot signs its own requests with httpx and polls without pause, resending at once
  after a 429 and ignoring ``Retry-After``: every resend while throttled is a strike, and it
  earns a ``418`` ban (it stops there, or after ``naive_max_sends``);
* the SDK bot (``perpbot.AsyncClient`` with its default ``RetryPolicy``) waits out
  ``Retry-After`` after a 429 and sends nothing meanwhile: it finishes and is never banned.

Then the window closes and the limits in force are the original ones again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import httpx

from perpbot.errors import Banned
from perpbot.signing import signed_headers

from .base import Outcome, Scenario, Venue
from .runner import Context


@dataclass(frozen=True, slots=True)
class Params:
    market: str = "BTC-PERP"
    key_weight_limit: int = 10
    window_ms: int = 1_000
    strikes_to_ban: int = 5
    requests: int = 30
    naive_max_sends: int = 200
    storm_sim_ms: int = 60_000


# Each bot connects from its own loopback address: a ban covers the key *and* its IP, and the
# observer (prices, admin) stays on 127.0.0.1.
NAIVE_IP = "127.0.0.2"
SDK_IP = "127.0.0.3"

FULL = Params()
QUICK = replace(FULL, requests=15)


def duration_ms(p: Params) -> int:
    return p.storm_sim_ms + 10_000


async def _naive(url: str, key: str, secret: str, p: Params) -> dict[str, Any]:
    """Poll without pause and resend at once on a 429 (the classic mistake); stop when banned.

    It does not stop after ``requests`` successes: a bot that happened to finish inside one
    weight window would escape its ban by luck of timing, not by behaving."""
    path = f"/v1/leverage?market={p.market}"
    counts = {"ok": 0, "throttled_429": 0, "banned_418": 0, "sent": 0}
    last_ts = 0
    transport = httpx.AsyncHTTPTransport(local_address=NAIVE_IP)
    async with httpx.AsyncClient(base_url=url, timeout=10, transport=transport) as http:
        while counts["sent"] < p.naive_max_sends:
            last_ts = max(last_ts + 1, int(time.time() * 1000))
            headers = signed_headers(key, secret, "GET", path, b"", last_ts)
            response = await http.get(path, headers=headers)
            counts["sent"] += 1
            if response.status_code == 200:
                counts["ok"] += 1
            elif response.status_code == 429:
                counts["throttled_429"] += 1  # and straight back in
            elif response.status_code == 418:
                counts["banned_418"] += 1
                break
            else:
                raise RuntimeError(f"naive bot: unexpected {response.status_code}")
    return counts


async def script(ctx: Context, p: Params) -> Outcome:
    import asyncio

    m = p.market
    await ctx.actor("naive", "1000", track=False)
    sdk = await ctx.actor("sdk", "1000", track=False, local_address=SDK_IP)
    limits = {
        "key_weight_limit": p.key_weight_limit,
        "weight_window_ms": p.window_ms,
        "strikes_to_ban": p.strikes_to_ban,
    }
    await ctx.fault_plan([{"kind": "tighten_limits", "limits": limits, "end_ms": p.storm_sim_ms}])
    tightened = (await sdk.rate_limits()).model_dump()
    ctx.note(f"limits tightened to {p.key_weight_limit} weight per {p.window_ms} ms per key")

    async def sdk_bot() -> dict[str, Any]:
        done, banned = 0, False
        try:
            for _ in range(p.requests):
                await sdk.leverage(m)
                done += 1
        except Banned:
            banned = True
        return {"ok": done, "banned": banned}

    started = time.monotonic()
    naive_counts, sdk_counts = await asyncio.gather(
        _naive(ctx.url, "naive-key-00000", "naive-secret-0123456789", p), sdk_bot()
    )
    storm_wall = time.monotonic() - started
    await ctx.advance(p.storm_sim_ms + 10_000, step_ms=10_000)
    ctx.note("window over: limits restored")
    restored = (await sdk.rate_limits()).model_dump()

    def key_limit(rules: dict[str, Any]) -> int:
        for r in rules["rate_limits"]:
            if r["type"] == "REQUEST_WEIGHT" and r["scope"] == "API_KEY":
                return int(r["limit"])
        raise AssertionError("no key weight limit")

    findings = {
        "naive_sent": naive_counts["sent"],
        "naive_ok": naive_counts["ok"],
        "naive_429": naive_counts["throttled_429"],
        "naive_418": naive_counts["banned_418"],
        "sdk_ok": sdk_counts["ok"],
        "sdk_banned": sdk_counts["banned"],
        "key_limit_in_storm": key_limit(tightened),
        "key_limit_after": key_limit(restored),
        "storm_wall_seconds": round(storm_wall, 2),
    }
    checks = {
        "naive_bot_banned": naive_counts["banned_418"] > 0,
        "sdk_bot_not_banned": not sdk_counts["banned"],
        "sdk_bot_finished": sdk_counts["ok"] == p.requests,
        "limits_restored": key_limit(restored) > p.key_weight_limit,
    }
    return Outcome(findings, checks)


SCENARIO = Scenario(
    name="throttling_storm",
    title="Throttling storm",
    description=(__doc__ or "").strip(),
    full=FULL,
    quick=QUICK,
    venue=lambda p: Venue(markets=(p.market,), depth="thick"),
    duration_ms=duration_ms,
    script=script,
    expectations={
        "naive_bot_banned": "the bot that resends at once after a 429 gets a 418 ban",
        "sdk_bot_not_banned": "the SDK's backoff honours Retry-After and is never banned",
        "sdk_bot_finished": "the SDK bot completes all its requests",
        "limits_restored": "after the fault window the original limits are back",
    },
)

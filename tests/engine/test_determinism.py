"""Same seed and commands -> byte-identical event log."""

from __future__ import annotations

import hashlib
import random

from perpbot.risk.margin import MONEY_SCALE
from sandbox.engine import (
    CancelOrder,
    Command,
    Deposit,
    Exchange,
    ManualClock,
    OrderType,
    PlaceOrder,
    SetMarkPrice,
    Side,
    TimeInForce,
    default_instruments,
    encode_event,
)


def _commands(seed: int, n: int) -> list[tuple[int, Command]]:
    """A seeded stream of (clock step ms, command)."""
    rng = random.Random(seed)
    accounts = [f"acct{i}" for i in range(6)]
    out: list[tuple[int, Command]] = [(0, Deposit(a, 1_000_000 * MONEY_SCALE)) for a in accounts]
    for i in range(n):
        roll = rng.random()
        account = rng.choice(accounts)
        side = rng.choice((Side.BUY, Side.SELL))
        if roll < 0.6:
            price = 600_000 + rng.randint(-50, 50)
            tif = rng.choice((TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC))
            cmd: Command = PlaceOrder(
                account,
                "BTC-PERP",
                side,
                rng.randint(1, 30),
                price=price,
                tif=tif,
                client_id=f"c{i}",
            )
        elif roll < 0.85:
            cmd = CancelOrder(account, "BTC-PERP", order_id=rng.randint(1, i + 1))
        elif roll < 0.97:
            cmd = PlaceOrder(
                account, "BTC-PERP", side, rng.randint(1, 30), order_type=OrderType.MARKET
            )
        else:
            cmd = SetMarkPrice("BTC-PERP", 600_000 + rng.randint(-100, 100))
        out.append((rng.randint(0, 500), cmd))
    return out


def _run(commands: list[tuple[int, Command]]) -> bytes:
    clock = ManualClock(1_700_000_000_000)
    ex = Exchange(default_instruments(), clock=clock)
    log = bytearray()
    for step, cmd in commands:
        clock.advance(step)
        for event in ex.submit(cmd):
            log += encode_event(event) + b"\n"
    return bytes(log)


def test_same_seed_same_bytes() -> None:
    first = _run(_commands(7, 3000))
    second = _run(_commands(7, 3000))
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    assert b'"type":"Trade"' in first and b'"type":"Rejected"' in first


def test_different_seed_different_bytes() -> None:
    assert _run(_commands(7, 500)) != _run(_commands(8, 500))

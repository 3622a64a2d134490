"""Fixtures for the SDK: a sandbox app in-process (manual clock, fake wall clock), clients for
two funded accounts over ``httpx.ASGITransport``, and fake time so retries never really sleep.

The sandbox and the clients share one fake wall clock (auth windows, throttle windows, request
timestamps); :class:`FakeTime` moves it, and a fake monotonic clock, by exactly what the SDK
asked to sleep.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from perpbot import AsyncClient, RetryPolicy
from sandbox.clock import SimClock
from sandbox.config import AccountSeed, SandboxSettings
from sandbox.server.app import create_app
from sandbox.server.state import SandboxState

START_MS = 1_700_000_000_000
ADMIN = "admin-token-for-sdk-tests"
ALICE = ("alice-key", "alice-secret-0123456789")
BOB = ("bob-key", "bob-secret-0123456789")


class FakeWall:
    """Wall-clock milliseconds for the sandbox (auth, throttle, faults) and the client."""

    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def seconds(self) -> float:
        """The client's ``clock``: wall seconds."""
        return self.now / 1000


class FakeTime:
    """An injected ``sleep`` that records each wait and moves both clocks by it."""

    def __init__(self, wall: FakeWall) -> None:
        self.wall = wall
        self.now = 1_000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)  # other tasks run "meanwhile"
        self.now += seconds
        self.wall.now += math.ceil(seconds * 1000)
        if self.on_sleep is not None:
            self.on_sleep()

    def policy(self, **options: Any) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, monotonic=self.monotonic, **options)


def make_state(now_wall_ms: Callable[[], int], **overrides: Any) -> SandboxState:
    fields: dict[str, Any] = {
        "simulate": False,
        "admin_token": ADMIN,
        "accounts": (
            AccountSeed(*ALICE, "100000", "alice"),
            AccountSeed(*BOB, "100000", "bob"),
        ),
    }
    settings = SandboxSettings(**{**fields, **overrides})
    return SandboxState(
        settings, clock=SimClock(start_ms=START_MS, speed=0), now_wall_ms=now_wall_ms
    )


@pytest.fixture
def wall() -> FakeWall:
    return FakeWall()


@pytest.fixture
def fake_time(wall: FakeWall) -> FakeTime:
    return FakeTime(wall)


@pytest.fixture
def state(wall: FakeWall) -> SandboxState:
    return make_state(wall)


@pytest.fixture
def app(state: SandboxState) -> FastAPI:
    return create_app(state, background=False)


def asgi(app: FastAPI) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))


@pytest.fixture
def connect(app: FastAPI, wall: FakeWall, fake_time: FakeTime) -> Callable[..., AsyncClient]:
    """``connect(ALICE, **options)``: an AsyncClient on the in-process sandbox, fake time."""

    def make(creds: tuple[str, str] | None = ALICE, **options: Any) -> AsyncClient:
        options.setdefault("transport", asgi(app))
        options.setdefault("retry", fake_time.policy())
        key, secret = creds if creds is not None else (None, None)
        return AsyncClient("http://sandbox", key, secret, clock=wall.seconds, **options)

    return make


@pytest.fixture
async def alice(connect: Callable[..., AsyncClient]) -> AsyncIterator[AsyncClient]:
    async with connect(ALICE) as client:
        yield client


@pytest.fixture
async def bob(connect: Callable[..., AsyncClient]) -> AsyncIterator[AsyncClient]:
    async with connect(BOB) as client:
        yield client


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The sandbox's admin API (``X-PB-ADMIN-TOKEN``), in-process."""
    headers = {"X-PB-ADMIN-TOKEN": ADMIN}
    async with httpx.AsyncClient(
        transport=asgi(app), base_url="http://sandbox", headers=headers
    ) as http:
        yield http

"""Fixtures for the HTTP API: a sandbox on a manual clock, driven in-process through httpx's
ASGI transport (no sockets), and a signer that makes every request unique."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from perpbot.signing import signed_headers
from sandbox.clock import SimClock
from sandbox.config import AccountSeed, SandboxSettings
from sandbox.server.app import create_app
from sandbox.server.state import SandboxState

START_MS = 1_700_000_000_000
ADMIN = "admin-token-for-tests"


class FakeWall:
    """Wall-clock ms for auth and throttling; moves only when told to."""

    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Api:
    """A signed client for one account over an in-process ASGI transport."""

    http: httpx.AsyncClient
    wall: FakeWall
    key: str
    secret: str
    _n: int = 0

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        # Distinct timestamps keep identical requests from looking like replays.
        self._n += 1
        return signed_headers(self.key, self.secret, method, path, body, self.wall.now - self._n)

    async def request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        body = b"" if json is None else orjson.dumps(json)
        return await self.http.request(
            method, path, content=body or None, headers=self.headers(method, path, body)
        )

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path)

    async def post(self, path: str, json: Any) -> httpx.Response:
        return await self.request("POST", path, json)

    async def patch(self, path: str, json: Any) -> httpx.Response:
        return await self.request("PATCH", path, json)

    async def delete(self, path: str) -> httpx.Response:
        return await self.request("DELETE", path)

    async def order(self, **fields: Any) -> httpx.Response:
        body = {"market": "BTC-PERP", **fields}
        return await self.post("/v1/orders", body)


def make_state(wall: FakeWall, **overrides: Any) -> SandboxState:
    fields: dict[str, Any] = {
        "simulate": False,
        "admin_token": ADMIN,
        "accounts": (
            AccountSeed("alice-key", "alice-secret-0123456789", "100000", "alice"),
            AccountSeed("bob-key", "bob-secret-0123456789", "100000", "bob"),
        ),
    }
    settings = SandboxSettings(**{**fields, **overrides})
    clock = SimClock(start_ms=START_MS, speed=0)
    return SandboxState(settings, clock=clock, now_wall_ms=wall)


@pytest.fixture
def wall() -> FakeWall:
    return FakeWall()


@pytest.fixture
def state(wall: FakeWall) -> SandboxState:
    return make_state(wall)


@pytest.fixture
async def http(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(state, background=False)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


@pytest.fixture
def alice(http: httpx.AsyncClient, wall: FakeWall) -> Api:
    return Api(http, wall, "alice-key", "alice-secret-0123456789")


@pytest.fixture
def bob(http: httpx.AsyncClient, wall: FakeWall) -> Api:
    return Api(http, wall, "bob-key", "bob-secret-0123456789")


def admin_headers() -> dict[str, str]:
    return {"X-PB-ADMIN-TOKEN": ADMIN}

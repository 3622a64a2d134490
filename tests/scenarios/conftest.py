"""Fixtures: a sandbox on a manual clock and fake wall time, driven in-process over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import httpx
import orjson
import pytest

from perpbot.signing import signed_headers
from sandbox.config import AccountSeed, SandboxSettings
from sandbox.server.app import create_app
from sandbox.server.state import SandboxState

START_MS = 1_700_000_000_000
ADMIN = "fault-admin-token"
KEY, SECRET = "alice-key-0001", "alice-secret-0123456789"


class Wall:
    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


def make_state(*, simulate: bool = False, seed: int = 3, **extra: Any) -> SandboxState:
    settings = SandboxSettings(
        seed=seed,
        speed=Fraction(0),
        admin_token=ADMIN,
        simulate=simulate,
        start_ms=START_MS,
        accounts=(AccountSeed(KEY, SECRET, "100000", "alice"),),
        **extra,
    )
    return SandboxState(settings, now_wall_ms=Wall())


@dataclass
class Api:
    state: SandboxState
    http: httpx.AsyncClient
    n: int = 0

    async def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.http.request(method, path, json=body, headers={"X-PB-ADMIN-TOKEN": ADMIN})

    async def plan(self, faults: list[dict[str, Any]], seed: int | None = None) -> Any:
        body: dict[str, Any] = {"faults": faults}
        if seed is not None:
            body["seed"] = seed
        r = await self.admin("POST", "/v1/admin/fault-plan", body)
        assert r.status_code == 200, r.text
        return r.json()["details"]

    async def advance(self, ms: int) -> None:
        r = await self.admin("POST", "/v1/admin/clock", {"action": "advance", "ms": ms})
        assert r.status_code == 200, r.text

    async def signed(self, method: str, path: str, json: Any = None) -> httpx.Response:
        body = b"" if json is None else orjson.dumps(json)
        self.n += 1
        wall = self.state.wall_ms()
        headers = signed_headers(KEY, SECRET, method, path, body, wall - self.n)
        if body:
            headers["Content-Type"] = "application/json"
        return await self.http.request(method, path, content=body or None, headers=headers)


@pytest.fixture
def api_factory() -> Callable[..., Any]:
    """``async with api_factory(simulate=...) as api`` (several per test allowed)."""
    import contextlib

    @contextlib.asynccontextmanager
    async def factory(**kwargs: Any) -> AsyncIterator[Api]:
        state = make_state(**kwargs)
        app = create_app(state, background=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
            yield Api(state, http)

    return factory

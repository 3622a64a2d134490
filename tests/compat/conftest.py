"""Unmodified ccxt and python-binance against a sandbox on a free loopback port.

Every URL a client could use is pointed at 127.0.0.1 (the Binance futures ones at the sandbox,
everything else at a dead loopback path), and :func:`assert_loopback` refuses to run a test if
any URL still names another host: nothing here may ever reach a real venue.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from sandbox.clients import assert_local, configure_ccxt
from sandbox.server.runner import serve
from sandbox.server.state import SandboxState, wall_ms
from tests.server.conftest import FakeWall, make_state

LOOPBACK = "127.0.0.1"
ALICE = ("alice-key", "alice-secret-0123456789")
BOB = ("bob-key", "bob-secret-0123456789")
BTC = "BTC/USDT:USDT"


class Wall(FakeWall):
    """Real wall time plus an adjustable offset (to age listen keys in tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0

    def __call__(self) -> int:
        return wall_ms() + self.offset


def assert_loopback(urls: Any, where: str = "urls") -> None:
    """Fail loudly unless every URL in ``urls`` (nested dicts/lists) is on 127.0.0.1."""
    assert_local(urls, LOOPBACK, where)


def ccxt_client(module: Any, base: str, key: tuple[str, str]) -> Any:
    """An unmodified ``binanceusdm`` with the documented configuration."""
    exchange = module.binanceusdm({"apiKey": key[0], "secret": key[1], "enableRateLimit": False})
    return configure_ccxt(exchange, base)


_LOOPBACK_HOSTS = frozenset({LOOPBACK, "localhost", "::1"})


def _check_address(address: Any) -> None:
    if isinstance(address, tuple) and address and str(address[0]) not in _LOOPBACK_HOSTS:
        raise RuntimeError(f"refusing to connect to {address!r}: these tests stay on loopback")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A second, independent guard: name lookups and socket connects beyond loopback raise
    (whatever a client library does with its URLs)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in _LOOPBACK_HOSTS:
            raise RuntimeError(f"refusing to resolve {name!r}: these tests stay on loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        _check_address(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check_address(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield


@dataclass
class Sandbox:
    state: SandboxState
    url: str
    wall: Wall


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    wall = Wall()
    state = make_state(wall)
    async with serve(state) as url:
        assert urlsplit(url).hostname == LOOPBACK
        yield Sandbox(state, url, wall)


def signed_query(secret: str, params: dict[str, Any]) -> str:
    """``params`` url-encoded in the given order with Binance's hex HMAC-SHA256 appended."""
    query = urlencode(params)
    sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={sig}"

"""A Binance USDⓈ-M Futures compatible API over the sandbox (see docs/compat-binance.md).

A thin adapter, not a second exchange: REST under ``/fapi`` and WebSocket streams under
``/fstream`` translate to and from the same engine, records and clock as the sandbox's own
``/v1`` API. ``install(app, state)`` adds the routes and registers the event sinks.
"""

from __future__ import annotations

import weakref

from fastapi import FastAPI
from starlette.websockets import WebSocket

from ..state import SandboxState
from .codec import OrderQuotes, Symbols
from .listen_keys import ListenKeys
from .rest import BinanceRest
from .streams import BinanceStreams

WS_PREFIX = "/fstream"

__all__ = ["WS_PREFIX", "BinanceCompat", "compat_of", "install"]


class BinanceCompat:
    """Everything the compat layer keeps for one sandbox (reachable as ``app.state.binance``)."""

    def __init__(self, state: SandboxState) -> None:
        self.symbols = Symbols(state.core.instruments)
        self.quotes = OrderQuotes()
        self.listen_keys = ListenKeys(state.wall_ms)
        self.streams = BinanceStreams(state.core, self.quotes, self.listen_keys, self.symbols)
        # Order matters: the streams read the traded notional the quote sink has just added.
        state.core.sinks.append(self.quotes)
        state.core.sinks.append(self.streams)
        state.fault_plan.add_ws_target(self.streams)  # ws_drop / ws_reorder / ws_disconnect
        self.rest = BinanceRest(state, self.quotes, self.streams, self.listen_keys, self.symbols)


_INSTALLED: weakref.WeakKeyDictionary[SandboxState, BinanceCompat] = weakref.WeakKeyDictionary()


def install(app: FastAPI, state: SandboxState) -> BinanceCompat:
    """Add ``/fapi/...`` routes and ``/fstream/...`` WebSocket endpoints to ``app``.

    One :class:`BinanceCompat` per state: a second app over the same state shares it (the
    engine sinks are registered once)."""
    compat = _INSTALLED.get(state)
    if compat is None:
        compat = _INSTALLED[state] = BinanceCompat(state)
    compat.rest.install(app)

    async def websocket(ws: WebSocket, tail: str) -> None:
        await compat.streams.serve(ws, tail)

    app.add_api_websocket_route(WS_PREFIX + "/{tail:path}", websocket)
    app.state.binance = compat
    return compat


def compat_of(state: SandboxState) -> BinanceCompat | None:
    """The compat layer installed for ``state`` (None before ``create_app``)."""
    return _INSTALLED.get(state)

"""Fault plans reach the Binance-style streams (/fstream) as they reach /v1/ws: dropped and
reordered data messages (the depth ``U``/``u``/``pu`` ids show it) and injected disconnects."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import websockets

from sandbox.engine import PlaceOrder
from sandbox.engine.commands import Side
from sandbox.server.faults import FAULT_CLOSE_CODE

from .conftest import Sandbox
from .test_ccxt_faults import load_plan
from .test_ws import TIMEOUT, Inbox, ws_url

DEPTH = "/ws/btcusdt@depth@100ms"


def bid(sandbox: Sandbox, price: int) -> None:
    sandbox.state.apply(PlaceOrder("bob", "BTC-PERP", Side.BUY, 10, price))


def is_depth(message: Any) -> bool:
    return isinstance(message, dict) and message.get("e") == "depthUpdate"


async def test_dropped_depth_updates_show_as_a_gap_in_the_update_ids(sandbox: Sandbox) -> None:
    async with websockets.connect(ws_url(sandbox, DEPTH)) as ws:
        inbox = Inbox(ws)
        bid(sandbox, 599_000)
        before = await inbox.next(is_depth)
        await load_plan(sandbox, [{"kind": "ws_drop", "rate": "1"}])
        bid(sandbox, 598_900)  # dropped
        bid(sandbox, 598_800)  # dropped
        await load_plan(sandbox, [])
        bid(sandbox, 598_700)
        after = await inbox.next(is_depth)
    assert after["pu"] != before["u"]  # what a Binance client checks to detect a gap
    assert after["U"] > before["u"] + 2 and after["b"] == [["59870", "0.01"]]


async def test_reordered_depth_updates_arrive_swapped(sandbox: Sandbox) -> None:
    async with websockets.connect(ws_url(sandbox, DEPTH)) as ws:
        inbox = Inbox(ws)
        await load_plan(sandbox, [{"kind": "ws_reorder", "rate": "1"}])
        bid(sandbox, 599_000)  # held back ...
        bid(sandbox, 598_900)  # ... and sent right after this one
        first = await inbox.next(is_depth)
        second = await inbox.next(is_depth)
        await load_plan(sandbox, [])
    assert first["b"] == [["59890", "0.01"]] and second["b"] == [["59900", "0.01"]]
    assert first["pu"] == second["u"]  # the newer update names the older one as its previous


async def test_injected_disconnect_closes_fstream_sockets_with_4009(sandbox: Sandbox) -> None:
    async with websockets.connect(ws_url(sandbox, DEPTH)) as ws:
        await load_plan(sandbox, [{"kind": "ws_disconnect", "fraction": "1", "rate": "0"}])
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    orjson.loads(await ws.recv())
    assert closed.value.rcvd is not None and closed.value.rcvd.code == FAULT_CLOSE_CODE
    assert any("closed 1 sockets" in event.what for event in sandbox.state.fault_plan.events)

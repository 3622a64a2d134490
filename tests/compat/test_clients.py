"""sandbox.clients: every URL of a client object ends up on the sandbox's host, or it refuses."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.clients import assert_local, configure_ccxt, point_binance_at


def fake_ccxt() -> Any:
    return SimpleNamespace(
        urls={
            "api": {
                "fapiPublic": "https://fapi.binance.com/fapi/v1",
                "fapiPrivateV2": "https://fapi.binance.com/fapi/v2",
                "public": "https://api.binance.com/api/v3",
                "sapi": {"v1": "https://api.binance.com/sapi/v1"},
                "ws": {
                    "spot": "wss://stream.binance.com/ws",
                    "linear": "wss://fstream.binance.com",
                },
            },
            "test": {"fapiPublic": "https://testnet.binancefuture.com/fapi/v1"},
        },
        options={},
        exceptions={"exact": {"-1": "A"}, "broad": {}, "linear": {"exact": {"-2019": "Funds"}}},
    )


def test_configure_ccxt_points_every_url_at_the_sandbox() -> None:
    ex = configure_ccxt(fake_ccxt(), "http://127.0.0.1:5555")
    api = ex.urls["api"]
    assert api["fapiPublic"] == "http://127.0.0.1:5555/fapi/v1"
    assert api["fapiPrivateV2"] == "http://127.0.0.1:5555/fapi/v2"
    assert api["public"].startswith("http://127.0.0.1:9/")  # not ours: a dead end
    assert api["sapi"]["v1"].startswith("http://127.0.0.1:9/")
    assert api["ws"] == {
        "spot": "ws://127.0.0.1:9/unsupported",
        "linear": "ws://127.0.0.1:5555/fstream/ws",
    }
    assert ex.urls["test"]["fapiPublic"] == "http://127.0.0.1:5555/fapi/v1"
    assert ex.options["fetchCurrencies"] is False
    assert ex.exceptions["exact"] == {"-1": "A", "-2019": "Funds"}


def test_refuses_what_it_cannot_rewrite() -> None:
    with pytest.raises(RuntimeError, match=r"not on 127\.0\.0\.1"):
        assert_local({"a": ["http://127.0.0.1/x", "https://fapi.binance.com/fapi/v1"]})
    ex = fake_ccxt()
    ex.urls["api"]["odd"] = ["https://api.binance.com/x"]  # a shape the rewriter does not know
    with pytest.raises(RuntimeError, match="odd"):
        configure_ccxt(ex, "http://127.0.0.1:5555")
    with pytest.raises(ValueError, match="http://"):
        configure_ccxt(fake_ccxt(), "https://fapi.binance.com")


def test_point_binance_at() -> None:
    client = SimpleNamespace(
        API_URL="https://api.binance.com/api", FUTURES_URL="https://fapi.binance.com/fapi"
    )
    manager = SimpleNamespace(STREAM_URL="wss://stream.binance.com:9443/", FSTREAM_URL="wss://x/")
    point_binance_at(client, "http://127.0.0.1:5555", manager)
    assert client.FUTURES_URL == "http://127.0.0.1:5555/fapi"
    assert client.API_URL.startswith("http://127.0.0.1:9/")
    assert manager.FSTREAM_URL == "ws://127.0.0.1:5555/fstream/"
    assert manager.STREAM_URL.startswith("ws://127.0.0.1:9/")

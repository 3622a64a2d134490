"""Point unmodified third-party clients (ccxt, python-binance) at a local sandbox.

The sandbox speaks Binance USDⓈ-M Futures under ``/fapi`` and ``/fstream``
(docs/compat-binance.md). These helpers rewrite every URL a client object holds: the USDⓈ-M
ones to the sandbox, every other API (spot, margin, coin-M, ...) to a dead loopback port, and
then refuse (``RuntimeError``) if any URL still names a host other than the sandbox's, so a bot
under test can never reach a real venue by accident. Neither library is imported here: the
objects are duck-typed.

    import ccxt.pro
    from sandbox.clients import configure_ccxt

    ex = configure_ccxt(ccxt.pro.binanceusdm({"apiKey": "demo-key",
                                              "secret": "demo-secret-0123456789"}))
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["assert_local", "configure_ccxt", "point_binance_at", "point_ccxt_at"]

DEFAULT_BASE = "http://127.0.0.1:8765"
_DEAD_PORT = 9  # "discard": nothing listens there


def assert_local(urls: Any, host: str = "127.0.0.1", where: str = "urls") -> None:
    """Raise ``RuntimeError`` unless every URL in ``urls`` (nested dicts/lists) is on ``host``."""
    if isinstance(urls, str):
        if "://" in urls and urlsplit(urls).hostname != host:
            raise RuntimeError(f"refusing to run: {where} = {urls!r} is not on {host}")
    elif isinstance(urls, dict):
        for key, value in urls.items():
            assert_local(value, host, f"{where}[{key!r}]")
    elif isinstance(urls, list | tuple):
        for i, value in enumerate(urls):
            assert_local(value, host, f"{where}[{i}]")


def _host(base: str) -> str:
    host = urlsplit(base).hostname
    if not host or not base.startswith("http://"):
        raise ValueError(f"base must be an http:// URL of the sandbox, got {base!r}")
    return host


def _rewrite(table: dict[str, Any], base: str, ws: str, dead: str) -> None:
    dead_ws = dead.replace("http://", "ws://", 1)
    for key, value in list(table.items()):
        if key == "ws" and isinstance(value, dict):
            for wkey, wvalue in list(value.items()):
                if isinstance(wvalue, dict):
                    value[wkey] = {k: dead_ws for k in wvalue}
                else:
                    value[wkey] = dead_ws
            value["linear"] = ws  # ccxt.pro's USDⓈ-M streams
        elif isinstance(value, str):
            if "/fapi/" in value:
                table[key] = base + "/fapi/" + value.split("/fapi/", 1)[1]
            else:
                table[key] = f"{dead}/{key}"
        elif isinstance(value, dict):
            table[key] = {k: f"{dead}/{key}/{k}" for k in value}


def point_ccxt_at(exchange: Any, base: str = DEFAULT_BASE) -> Any:
    """Point every REST and WebSocket URL of a ccxt ``binanceusdm`` (sync, async or pro) at the
    sandbox at ``base``; returns ``exchange``. Do not call ``set_sandbox_mode`` afterwards (it
    puts Binance's testnet URLs back)."""
    host = _host(base)
    base = base.rstrip("/")
    ws = base.replace("http://", "ws://", 1) + "/fstream/ws"
    dead = f"http://{host}:{_DEAD_PORT}/unsupported"
    for name in ("api", "test", "apiBackup"):
        table = exchange.urls.get(name)
        if isinstance(table, dict):
            _rewrite(table, base, ws, dead)
    for name in ("api", "test", "apiBackup"):
        assert_local(exchange.urls.get(name), host, f"urls[{name!r}]")
    return exchange


def configure_ccxt(exchange: Any, base: str = DEFAULT_BASE) -> Any:
    """:func:`point_ccxt_at` plus the settings a ``binanceusdm`` needs against the sandbox:
    no currency fetch (a spot API call), open orders without a symbol allowed, and Binance's
    USDⓈ-M error table (ccxt chooses it by hostname), so ``-2019`` raises
    ``InsufficientFunds`` as on the real venue. Returns ``exchange``."""
    exchange.options["fetchCurrencies"] = False
    exchange.options["fetchOpenOrders"] = {"warnWithoutSymbol": False}
    linear = exchange.exceptions.get("linear") or {}
    exchange.exceptions["exact"] = {**exchange.exceptions["exact"], **linear.get("exact", {})}
    exchange.exceptions["broad"] = {**exchange.exceptions["broad"], **linear.get("broad", {})}
    return point_ccxt_at(exchange, base)


def point_binance_at(client: Any, base: str = DEFAULT_BASE, socket_manager: Any = None) -> Any:
    """Point every ``*_URL`` of a python-binance client at loopback (futures at the sandbox,
    the rest at a dead port), and a ``BinanceSocketManager``'s futures streams at the
    sandbox's ``/fstream/``; returns ``client``."""
    host = _host(base)
    base = base.rstrip("/")
    dead = f"http://{host}:{_DEAD_PORT}/unsupported"
    for name in dir(client):
        if name.endswith("_URL") and isinstance(getattr(client, name), str):
            setattr(client, name, f"{dead}/{name.lower()}")
    client.FUTURES_URL = base + "/fapi"
    for name in dir(client):
        if name.endswith("_URL"):
            assert_local(getattr(client, name), host, name)
    if socket_manager is not None:
        for name in dir(socket_manager):
            if name.endswith("_URL") and isinstance(getattr(socket_manager, name), str):
                setattr(socket_manager, name, f"{dead.replace('http', 'ws', 1)}/{name.lower()}")
        socket_manager.FSTREAM_URL = base.replace("http://", "ws://", 1) + "/fstream/"
        for name in dir(socket_manager):
            if name.endswith("_URL"):
                assert_local(getattr(socket_manager, name), host, name)
    return client

"""``perpbot-sandbox`` / ``python -m sandbox``: run the local exchange.

With no arguments: BTC-PERP, ETH-PERP and SOL-PERP, simulated index sources and liquidity, a
funded demo account, real-time clock, on http://127.0.0.1:8765. See ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sys
from dataclasses import replace
from fractions import Fraction

import uvicorn

from perpbot import _native
from sandbox.config import (
    DEMO_KEY,
    ConfigError,
    SandboxSettings,
    load_config,
    parse_account,
    parse_speed,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perpbot-sandbox",
        description="A local perpetual-futures exchange for developing trading bots.",
        epilog="tools: "
        + "; ".join(f"perpbot-sandbox {n} --help: {h}" for n, (_, h) in SUBCOMMANDS.items()),
    )
    p.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--seed", type=int, help="seed of the simulated market (default 1)")
    p.add_argument(
        "--speed",
        help="clock: 1 = real time, 10 = ten times faster, 'manual' = paused (admin advance)",
    )
    p.add_argument("--config", help="TOML file: markets, fees, brackets, limits, accounts")
    p.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="KEY:SECRET:AMOUNT",
        help="seed an account (API key, secret, USDT collateral); repeatable",
    )
    p.add_argument("--admin-token", help="enable the admin API with this token")
    p.add_argument("--no-simulation", action="store_true", help="no background market")
    p.add_argument("--depth", choices=("thick", "thin"), help="simulated book depth profile")
    p.add_argument("--no-demo-account", action="store_true", help="do not create demo-key")
    return p


def settings_from_args(argv: list[str] | None = None) -> SandboxSettings:
    args = build_parser().parse_args(argv)
    settings = SandboxSettings()
    if args.config:
        settings = load_config(args.config, settings)
    changes: dict[str, object] = {}
    if args.host is not None:
        changes["host"] = args.host
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ConfigError("--port must be in 0..65535")
        changes["port"] = args.port
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.speed is not None:
        changes["speed"] = parse_speed(args.speed)
    if args.admin_token is not None:
        changes["admin_token"] = args.admin_token
    if args.no_simulation:
        changes["simulate"] = False
    if args.depth is not None:
        changes["depth"] = args.depth
    if args.account:
        changes["accounts"] = (*settings.accounts, *(parse_account(a) for a in args.account))
    settings = replace(settings, **changes)  # type: ignore[arg-type]
    if not args.no_demo_account:
        settings = settings.with_demo_account()
    return settings


def banner(settings: SandboxSettings, url: str) -> str:
    speed = settings.speed
    clock = (
        "manual (paused)" if speed == 0 else f"x{speed}" if speed != Fraction(1) else "real time"
    )
    lines = [
        f"perpbot sandbox exchange on {url}",
        f"  markets : {', '.join(i.symbol for i in settings.instruments)}",
        f"  clock   : {clock}; simulated market: {'on' if settings.simulate else 'off'}",
        f"  docs    : {url}/docs  (OpenAPI: {url}/openapi.json)",
        f"  stream  : {url.replace('http', 'ws', 1)}/v1/ws",
        f"  binance : {url}/fapi, {url.replace('http', 'ws', 1)}/fstream (USDⓈ-M compatible)",
        f"  metrics : {url}/metrics; alerts: {url}/v1/alerts",
    ]
    for seed in settings.accounts:
        shown = seed.secret if seed.key == DEMO_KEY else "(as given)"
        lines.append(f"  account : {seed.account_id}  key={seed.key} secret={shown}")
    if settings.admin_token:
        lines.append("  admin   : enabled (X-PB-ADMIN-TOKEN)")
    lines.append(f"  engine  : {_native.describe()}")
    lines.append("Ctrl+C stops it.")
    return "\n".join(lines)


async def _run(settings: SandboxSettings) -> None:
    from sandbox.server.runner import tune_gc, uvicorn_config
    from sandbox.server.state import SandboxState

    state = SandboxState(settings)
    tune_gc()
    server = uvicorn.Server(uvicorn_config(state, settings.host, settings.port))
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        print(banner(settings, f"http://{settings.host}:{port}"), flush=True)
    await task


# ``perpbot-sandbox NAME ...`` hands the rest of the arguments to a tool's own ``main(argv)``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "scenario": ("sandbox.scenarios.cli", "run a scripted scenario and write its report"),
    "bands": ("sandbox.monitor.cli", "chart liquidation bands against book depth"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[args[0]][0])
        return int(module.main(args[1:]))
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"perpbot-sandbox: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

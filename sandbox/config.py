"""Sandbox settings: defaults, a TOML file, and command-line overrides (docs/api.md#config).

A TOML file may set any of these (every key optional)::

    seed = 7
    speed = "10"                  # "1" real time, "10" ten times faster, "manual" (paused)
    admin_token = "change-me"     # enables the admin API
    auth_window_ms = 5000         # accepted clock skew of signed requests
    simulate = true               # background index sources and liquidity
    depth = "thick"               # or "thin": the simulated book's depth profile

    [limits]                      # throttling (see GET /v1/rate-limits)
    weight_limit = 2400
    order_limit = 300

    [[markets]]                   # replaces the default markets when present
    symbol = "BTC-PERP"
    tick_size = "0.1"
    lot_size = "0.001"
    min_qty = "0.001"
    max_qty = "1000"
    market_max_qty = "120"
    min_notional = "100"
    initial_price = "60000"
    maker_fee = "0.0002"
    taker_fee = "0.0005"
    liquidation_mode = "incremental"   # or "market", "auction"
    funding_interval_hours = 8
    brackets = [["50000", 125, "0.004"], ["600000", 100, "0.005"]]

    [[faults]]                    # a fault plan in simulated time (docs/scenarios.md)
    kind = "http_error"
    status = 500
    rate = "0.1"
    route = "/v1/orders*"
    start_ms = 60000
    end_ms = 120000

    [[accounts]]
    key = "demo-key"
    secret = "demo-secret-please-change"
    deposit = "100000"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from sandbox.engine import Instrument, default_instruments
from sandbox.engine.funding import HOUR_MS, FundingConfig
from sandbox.engine.liquidation import LiquidationConfig, LiquidationMode

DEMO_KEY = "demo-key"
DEMO_SECRET = "demo-secret-0123456789"
DEMO_DEPOSIT = "100000"


class ConfigError(ValueError):
    """The configuration is invalid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class AccountSeed:
    key: str
    secret: str
    deposit: str
    account: str = ""

    @property
    def account_id(self) -> str:
        return self.account or self.key


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 1
    speed: Fraction = Fraction(1)  # 0 = manual (paused; moves only by admin advance)
    admin_token: str | None = None
    simulate: bool = True
    depth: str = "thick"
    instruments: tuple[Instrument, ...] = field(default_factory=default_instruments)
    accounts: tuple[AccountSeed, ...] = ()
    limits: dict[str, int] = field(default_factory=dict)
    start_ms: int | None = None
    auth_window_ms: int = 5_000  # accepted clock skew of signed requests (replays refused)
    faults: tuple[dict[str, Any], ...] = ()  # [[faults]]: a fault plan (sandbox/server/faults.py)

    def with_demo_account(self) -> SandboxSettings:
        """Add the demo account unless one with its key is already configured."""
        if any(a.key == DEMO_KEY for a in self.accounts):
            return self
        demo = AccountSeed(DEMO_KEY, DEMO_SECRET, DEMO_DEPOSIT, "demo")
        return replace(self, accounts=(*self.accounts, demo))


def parse_speed(text: str) -> Fraction:
    """``"manual"`` -> 0; ``"1"``, ``"10"``, ``"x10"``, ``"0.5"`` -> that many x real time."""
    value = text.strip().lower().removeprefix("x")
    if value in ("manual", "paused", "0"):
        return Fraction(0)
    try:
        speed = Fraction(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"speed {text!r}: use a number like 1 or 10, or 'manual'") from exc
    if speed <= 0 or speed > 100_000:
        raise ConfigError(f"speed {text!r}: must be in (0, 100000] or 'manual'")
    return speed


def parse_account(text: str) -> AccountSeed:
    """``KEY:SECRET:AMOUNT`` (the account id is the key)."""
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"--account {text!r}: expected KEY:SECRET:AMOUNT")
    return AccountSeed(parts[0], parts[1], parts[2])


_MARKET_KEYS = {
    "symbol",
    "tick_size",
    "lot_size",
    "min_qty",
    "max_qty",
    "market_max_qty",
    "min_notional",
    "initial_price",
    "price_band",
    "market_band",
    "maker_fee",
    "taker_fee",
    "brackets",
    "default_leverage",
    "liquidation_mode",
    "funding_interval_hours",
}


def _instrument(spec: dict[str, Any], where: str) -> Instrument:
    unknown = set(spec) - _MARKET_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    args = {k: v for k, v in spec.items() if k not in _MARKET_KEYS - _CREATE_KEYS}
    try:
        symbol = args.pop("symbol")
        if "brackets" in args:
            args["brackets"] = tuple(tuple(row) for row in args["brackets"])
        inst = Instrument.create(symbol, **{k: _str(v) for k, v in args.items()})
        mode = LiquidationMode(str(spec.get("liquidation_mode", "incremental")).upper())
        hours = int(spec.get("funding_interval_hours", 8))
        if hours not in (1, 2, 4, 8):
            raise ConfigError(f"{where}: funding_interval_hours must be 1, 2, 4 or 8")
        mech = inst.mechanics
        funding = FundingConfig(
            interval_ms=hours * HOUR_MS,
            interest_rate=mech.funding.interest_rate * hours // 8,
            clamp=mech.funding.clamp,
            cap=mech.funding.cap,
        )
        mechanics = replace(mech, funding=funding, liquidation=LiquidationConfig(mode=mode))
        return replace(inst, mechanics=mechanics)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


_CREATE_KEYS = _MARKET_KEYS - {"liquidation_mode", "funding_interval_hours"}


def _str(value: Any) -> Any:
    # TOML numbers arrive as int/float: insist on strings for anything fractional.
    if isinstance(value, float):
        raise ConfigError(f'{value!r}: write decimals as strings, e.g. "0.1"')
    return value


_TOP_KEYS = {
    "seed",
    "speed",
    "admin_token",
    "simulate",
    "depth",
    "limits",
    "markets",
    "accounts",
    "host",
    "port",
    "auth_window_ms",
    "faults",
}


def load_config(path: str | Path, base: SandboxSettings | None = None) -> SandboxSettings:
    """Read a TOML file over ``base`` (defaults when None)."""
    settings = base or SandboxSettings()
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    changes: dict[str, Any] = {}
    if "seed" in data:
        changes["seed"] = int(data["seed"])
    if "speed" in data:
        changes["speed"] = parse_speed(str(data["speed"]))
    for key in ("admin_token", "host"):
        if key in data:
            changes[key] = str(data[key])
    if "port" in data:
        changes["port"] = int(data["port"])
    if "auth_window_ms" in data:
        window = data["auth_window_ms"]
        if not isinstance(window, int) or not 100 <= window <= 300_000:
            raise ConfigError(f"{path}: auth_window_ms must be an integer in [100, 300000]")
        changes["auth_window_ms"] = window
    if "simulate" in data:
        changes["simulate"] = bool(data["simulate"])
    if "depth" in data:
        if data["depth"] not in ("thick", "thin"):
            raise ConfigError(f"{path}: depth must be 'thick' or 'thin'")
        changes["depth"] = data["depth"]
    if "limits" in data:
        if not isinstance(data["limits"], dict) or not all(
            isinstance(v, int) and v > 0 for v in data["limits"].values()
        ):
            raise ConfigError(f"{path}: [limits] values must be positive integers")
        changes["limits"] = dict(data["limits"])
    if "markets" in data:
        markets = tuple(
            _instrument(dict(m), f"{path}: markets[{i}]") for i, m in enumerate(data["markets"])
        )
        if not markets or len({m.symbol for m in markets}) != len(markets):
            raise ConfigError(f"{path}: markets must be non-empty with unique symbols")
        changes["instruments"] = markets
    if "accounts" in data:
        seeds = []
        for i, a in enumerate(data["accounts"]):
            try:
                seeds.append(
                    AccountSeed(str(a["key"]), str(a["secret"]), str(a.get("deposit", "0")))
                )
            except KeyError as exc:
                raise ConfigError(f"{path}: accounts[{i}] needs {exc}") from exc
        changes["accounts"] = (*settings.accounts, *seeds)
    if "faults" in data:
        from sandbox.server.faults import load_specs

        raw = data["faults"]
        if not isinstance(raw, list) or not all(isinstance(f, dict) for f in raw):
            raise ConfigError(f"{path}: [[faults]] must be a list of tables")
        try:
            load_specs(raw)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        changes["faults"] = tuple(dict(f) for f in raw)
    return replace(settings, **changes)

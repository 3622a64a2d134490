"""The ``perpbot-sandbox`` command: arguments, the TOML config, and a real start and stop."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from fractions import Fraction
from pathlib import Path

import pytest

from sandbox.cli import settings_from_args
from sandbox.config import ConfigError, load_config
from sandbox.engine.liquidation import LiquidationMode

REPO = Path(__file__).resolve().parents[1]


def test_defaults_have_three_markets_simulation_and_a_demo_account() -> None:
    s = settings_from_args([])
    assert [i.symbol for i in s.instruments] == ["BTC-PERP", "ETH-PERP", "SOL-PERP"]
    assert (s.host, s.port, s.speed, s.simulate) == ("127.0.0.1", 8765, Fraction(1), True)
    assert [a.key for a in s.accounts] == ["demo-key"]
    assert s.admin_token is None


def test_arguments() -> None:
    s = settings_from_args(
        [
            "--port",
            "0",
            "--seed",
            "9",
            "--speed",
            "x10",
            "--account",
            "k1:secret-one:2500",
            "--account",
            "k2:secret-two:1",
            "--admin-token",
            "t",
            "--no-simulation",
            "--no-demo-account",
            "--depth",
            "thin",
        ]
    )
    assert (s.port, s.seed, s.speed, s.simulate, s.depth) == (0, 9, Fraction(10), False, "thin")
    assert [(a.key, a.secret, a.deposit) for a in s.accounts] == [
        ("k1", "secret-one", "2500"),
        ("k2", "secret-two", "1"),
    ]
    assert settings_from_args(["--speed", "manual"]).speed == 0


@pytest.mark.parametrize(
    "argv", [["--speed", "fast"], ["--speed", "-1"], ["--account", "nocolons"], ["--port", "70000"]]
)
def test_bad_arguments_are_config_errors(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        settings_from_args(argv)


def test_toml_config(tmp_path: Path) -> None:
    path = tmp_path / "venue.toml"
    path.write_text(
        """
seed = 4
speed = "manual"
admin_token = "tok"
[limits]
weight_limit = 100
[[markets]]
symbol = "DOGE-PERP"
tick_size = "0.00001"
lot_size = "1"
min_qty = "1"
max_qty = "1000000"
market_max_qty = "100000"
min_notional = "5"
initial_price = "0.12"
taker_fee = "0.0004"
liquidation_mode = "auction"
funding_interval_hours = 4
brackets = [["50000", 50, "0.01"], ["200000", 20, "0.025"]]
[[accounts]]
key = "bot"
secret = "bot-secret-123456"
deposit = "5000"
"""
    )
    s = load_config(path)
    [doge] = s.instruments
    assert doge.symbol == "DOGE-PERP" and doge.mechanics.liquidation.mode is LiquidationMode.AUCTION
    assert doge.mechanics.funding.interval_ms == 4 * 3600 * 1000
    assert (s.seed, s.speed, s.admin_token, s.limits) == (4, 0, "tok", {"weight_limit": 100})
    assert s.accounts[0].deposit == "5000"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nonsense = 1", "unknown keys"),
        ("[[markets]]\nsymbol = 'X'\ntick_size = 0.1", "strings"),
        ("depth = 'medium'", "depth"),
        ("[limits]\nweight_limit = -5", "positive"),
        ("seed = [", "venue.toml"),
    ],
)
def test_bad_config_says_where(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "venue.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


def test_the_command_starts_serves_and_stops() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--no-simulation"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("perpbot sandbox exchange on http://127.0.0.1:"), first
        url = first.split()[-1]
        banner = [proc.stdout.readline() for _ in range(8)]
        assert any("demo-key" in line for line in banner)
        assert any(line.split()[:2] == ["binance", ":"] and "/fapi" in line for line in banner)
        with urllib.request.urlopen(url + "/v1/markets", timeout=10) as r:
            assert [m["symbol"] for m in json.load(r)] == ["BTC-PERP", "ETH-PERP", "SOL-PERP"]
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why.
        assert proc.wait(timeout=20) in (0, -15)

"""Every scenario runs (short parameters) and its findings hold; reports are written."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from sandbox.scenarios import SCENARIOS
from sandbox.scenarios.cli import main
from sandbox.scenarios.report import CHART_FILES
from sandbox.scenarios.runner import get_scenario, run_scenario

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_report(out: Path) -> None:
    text = (out / "report.md").read_text()
    assert "## Checks" in text and "## Findings" in text
    for name in CHART_FILES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name
        assert f"]({name})" in text


async def test_flash_crash(tmp_path: Path) -> None:
    result = await run_scenario("flash_crash", quick=True, out_dir=tmp_path)
    f = result.findings
    assert result.checks == {
        "long_liquidated": True,
        "mark_moved_less_than_last": True,
        "whale_sold_into_thin_book": True,
    }
    assert f["long_liquidation_steps"] >= 1
    assert Decimal(f["mark_drop_pct"]) < Decimal(f["last_drop_pct"])
    assert Decimal(f["long_equity_after"]) < Decimal(f["long_equity_before"]) / 10
    _assert_report(tmp_path)
    assert "long" in (tmp_path / "report.md").read_text()


async def test_cascade() -> None:
    result = await run_scenario("cascade", quick=True)
    f = result.findings
    assert result.passed, result.checks
    assert f["cross_liquidation_steps_in_b"] >= 1
    assert f["solo_b_liquidation_steps"] == 0
    assert f["first_b_liquidation_minutes_after_crash"] >= 0


async def test_funding_squeeze() -> None:
    result = await run_scenario("funding_squeeze", quick=True)
    f = result.findings
    assert result.passed, result.checks
    assert f["zero_sum_imbalance_units"] == 0
    assert f["all_accounts_paid_units"] == f["insurance_residue_units"]
    assert Decimal(f["crowd_paid_usdt"]) > 0 > Decimal(f["short_paid_usdt"])
    assert f["settlements"] >= 2
    assert Decimal(f["mean_rate"]) > 0


async def test_mark_divergence() -> None:
    result = await run_scenario("mark_divergence", quick=True)
    f = result.findings
    assert result.passed, result.checks
    assert Decimal(f["max_mark_index_gap_bps_in_divergence"]) >= 50
    assert f["degraded_samples_in_stale"] > 0 and f["degraded_samples_after"] == 0
    assert f["fired_1_outlier_index_source"] > 0


async def test_throttling_storm() -> None:
    result = await run_scenario("throttling_storm", quick=True)
    f = result.findings
    assert result.passed, result.checks
    assert f["naive_418"] == 1 and f["naive_429"] >= 1
    assert f["sdk_banned"] is False and f["sdk_ok"] == 15
    assert f["key_limit_in_storm"] == 10 and f["key_limit_after"] > 10


async def test_cancel_burst() -> None:
    result = await run_scenario("cancel_burst", quick=True)
    f = result.findings
    assert result.passed, result.checks
    assert f["open_before_burst"] == f["orders_requested"] == 16
    assert f["open_after_burst"] == 0
    assert f["dropped_placement_responses"] > 0 and f["injected_cancel_errors"] > 0


async def test_same_seed_same_findings() -> None:
    a = await run_scenario("mark_divergence", quick=True, seed=5)
    b = await run_scenario("mark_divergence", quick=True, seed=5)
    drop = {"wall_seconds"}
    assert {k: v for k, v in a.findings.items() if k not in drop} == {
        k: v for k, v in b.findings.items() if k not in drop
    }


def test_every_scenario_has_readable_parameters() -> None:
    assert set(SCENARIOS) >= {
        "flash_crash",
        "cascade",
        "funding_squeeze",
        "mark_divergence",
        "throttling_storm",
        "cancel_burst",
    }
    for name in SCENARIOS:
        scen = get_scenario(name)
        assert scen.name == name and scen.description
        assert set(scen.expectations)  # every check is explained in the report
        assert scen.duration_ms(scen.quick) < scen.duration_ms(scen.full) or name in (
            "throttling_storm",
            "cancel_burst",
        )


def test_cli_list_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    assert "funding_squeeze" in capsys.readouterr().out
    assert main(["nope"]) == 2
    assert "unknown scenario" in capsys.readouterr().err
    assert main([]) == 2


def test_cli_runs_a_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert main(["cascade", "--quick", "--out", str(out), "--seed", "2"]) == 0
    captured = capsys.readouterr()
    assert "ok   b_liquidated_after_a_crash" in captured.out
    assert "cascade [" in captured.err and "100.0%" in captured.err  # the progress bar
    _assert_report(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_full_parameters_via_cli(name: str, tmp_path: Path) -> None:
    assert main([name, "--out", str(tmp_path), "--no-progress"]) == 0
    _assert_report(tmp_path)

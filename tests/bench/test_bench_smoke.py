"""Smoke test of the benchmark harness (bench/bench_engine.py), in-process and untimed.

The engine and the bare book must do the same matching work on the same stream; the engine must
accept every command and give each order the id the generator predicted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import bench.bench_engine as bench_engine
from bench.bench_engine import (
    ADD,
    CANCEL,
    count_cache_misses,
    generate,
    instruments_for,
    main,
    measure,
    paired_ratios,
    run_isolated,
)


@pytest.mark.parametrize("markets", [1, 3])
def test_engine_and_bare_book_agree(markets: int) -> None:
    stream = generate(2_000, seed=7, markets=markets)
    kinds = {op[0] for op in stream}
    assert {ADD, CANCEL} <= kinds and len(kinds) == 4  # adds, cancels, IOC and market orders
    symbols = tuple(i.symbol for i in instruments_for(markets))

    bare = measure("bare", stream, symbols, verify=True)
    engine = measure("engine", stream, symbols, verify=True)

    assert engine["rejected"] == 0
    assert engine["wrong_id"] == 0
    assert engine["traded_qty"] == bare["traded_qty"] > 0
    # per market: trade count, best bid, best ask, open orders, full-depth digest
    assert engine["state"] == bare["state"]


def test_stream_is_deterministic() -> None:
    assert generate(500, seed=3) == generate(500, seed=3)
    assert generate(500, seed=3) != generate(500, seed=4)


def test_compiled_and_pure_engine_runs_agree() -> None:
    """The ``engine-py`` run (sources, in a spawned interpreter) ends like the default one."""
    stream = generate(1_000, seed=3, markets=1)
    symbols = tuple(i.symbol for i in instruments_for(1))
    as_built = run_isolated("engine", stream, symbols, True)
    from_sources = run_isolated("engine-py", stream, symbols, True)
    assert as_built["rejected"] == from_sources["rejected"] == 0
    assert as_built["traded_qty"] == from_sources["traded_qty"] > 0
    assert as_built["state"] == from_sources["state"]


def _run_bench_engine(*args: str) -> subprocess.CompletedProcess[str]:
    """``bench/bench_engine.py`` with ``args``, in a fresh interpreter."""
    script = Path(__file__).resolve().parents[2] / "bench" / "bench_engine.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("impl", ["bare", "engine"])
def test_the_instruction_counting_run_works(impl: str) -> None:
    """The body ``--instructions`` runs under valgrind (here without it)."""
    done = _run_bench_engine("--count-run", f"{impl},500,1,1,500")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("impl", ["bare", "engine"])
def test_the_cache_simulation_run_works(impl: str, tmp_path: Path) -> None:
    """The body ``--cache-misses`` runs under valgrind (here without it, and with the parent's
    signals already given): it announces each phase."""
    (tmp_path / "go").touch()
    (tmp_path / "stop").touch()
    done = _run_bench_engine("--cache-run", f"{impl},1,1,300,200,{tmp_path}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ready").exists() and (tmp_path / "done").exists()


@pytest.mark.parametrize("option", ["--cache-i1", "--cache-ll"])
@pytest.mark.parametrize("size", ["1000", "256", "0"])
def test_a_simulated_cache_must_be_a_power_of_two(
    option: str, size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([option, size, "--cache-misses", "10"])
    assert exc.value.code == 2
    assert f"{option} must be a power of two" in capsys.readouterr().err


class _Launched(Exception):
    """Raised by the stand-in for valgrind's launch, which records its command line."""


@pytest.mark.parametrize(
    ("i1", "ll", "expected"),
    [
        (None, None, []),
        (65536, None, ["--I1=65536,8,64"]),
        (None, 524288, ["--LL=524288,8,64"]),
        (65536, 524288, ["--I1=65536,8,64", "--LL=524288,8,64"]),
    ],
)
def test_the_simulated_cache_sizes_reach_valgrind(
    i1: int | None, ll: int | None, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: list[list[str]] = []

    def popen(cmd: list[str], **_: object) -> None:
        launched.append(cmd)
        raise _Launched

    monkeypatch.setattr(bench_engine.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(bench_engine.subprocess, "Popen", popen)
    with pytest.raises(_Launched):
        count_cache_misses("engine", 10, 10, 1, 1, i1, ll)
    (cmd,) = launched
    assert [a for a in cmd if a.startswith(("--I1", "--LL", "--D1"))] == expected
    assert "--cache-sim=yes" in cmd


def test_paired_ratios_divide_within_each_round() -> None:
    # round 2 ran on a loaded machine: both slow, the same ratio as round 1
    assert paired_ratios([50.0, 25.0, 45.0], [100.0, 50.0, 100.0]) == [0.45, 0.5, 0.5]
    with pytest.raises(ValueError):  # a round without its pair
        paired_ratios([1.0, 2.0], [1.0])

"""SimClock: real time, accelerated, paused and stepped, driven by a fake wall-time source."""

from __future__ import annotations

from fractions import Fraction

import pytest

from sandbox.clock import SimClock
from sandbox.engine import Deposit, Exchange, ManualClock, Tick, default_instruments


class FakeWall:
    """Real seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_real_time_speed_one() -> None:
    wall = FakeWall()
    clock = SimClock(start_ms=1_000, source=wall)
    assert clock.now_ms() == 1_000
    wall.now += 2.5
    assert clock.now_ms() == 3_500


def test_accelerated_paused_and_resumed() -> None:
    wall = FakeWall()
    clock = SimClock(start_ms=0, speed=3600, source=wall)  # an hour per second
    wall.now += 2
    assert clock.now_ms() == 7_200_000
    clock.pause()
    wall.now += 10
    assert clock.now_ms() == 7_200_000 and clock.speed == 0
    clock.set_speed(Fraction(1, 2))
    wall.now += 4
    assert clock.now_ms() == 7_202_000


def test_advance_jumps_forward_at_any_speed() -> None:
    wall = FakeWall()
    clock = SimClock(start_ms=0, speed=0, source=wall)
    assert clock.advance(8 * 3600 * 1000) == 28_800_000
    wall.now += 5
    assert clock.now_ms() == 28_800_000


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_bad_speed_and_steps_are_refused(bad: object) -> None:
    clock = SimClock(start_ms=0, source=FakeWall())
    with pytest.raises(ValueError):
        clock.set_speed(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        clock.advance(bad)  # type: ignore[arg-type]


def test_engine_runs_on_a_sim_clock_like_on_a_manual_one() -> None:
    """The engine only needs now_ms(): both clocks give the same funding settlement."""
    wall = FakeWall()
    start = 1_767_225_600_000 - 1_000  # one second before 00:00 UTC, a funding time
    sim = SimClock(start_ms=start, speed=3600, source=wall)
    manual = ManualClock(start)
    logs = []
    for clock in (sim, manual):
        ex = Exchange(default_instruments(), clock=clock)
        ex.submit(Deposit("alice", 10**12))
        if clock is sim:
            wall.now += 1  # one real second = one simulated hour
        else:
            manual.advance(3_600_000)
        logs.append([type(e).__name__ for e in ex.submit(Tick())])
    assert logs[0] == logs[1]
    assert "FundingSettled" in logs[0]

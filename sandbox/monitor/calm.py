"""False-positive measurement: the detectors over a long calm run of the seeded market.

``python -m sandbox.monitor.calm --hours 24 --seeds 1 2 3`` runs the simulated market (no
traders, manual clock, ``SandboxState.advance``) with a :class:`MonitorService` attached, and
prints how many alerts each detector raised per simulated hour and how much input it saw. Every
alert on a calm market is a false positive. The figure is reported in docs/monitor.md.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass

from sandbox.clock import SimClock
from sandbox.config import SandboxSettings
from sandbox.engine.events import Event, LeverageChanged, OrderCanceled, PricesUpdated
from sandbox.server.state import SandboxState

from .service import MonitorService

START_MS = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class CalmReport:
    """What one calm run produced: alerts per detector and the inputs the detectors saw."""

    seed: int
    depth: str
    sim_ms: int
    alerts: dict[str, int]
    inputs: dict[str, int]
    band_checks: int
    cpu_s: float

    @property
    def false_positives_per_hour(self) -> float:
        return sum(self.alerts.values()) * 3_600_000 / self.sim_ms


def calm_run(
    sim_ms: int, *, seed: int = 1, depth: str = "thick", step_ms: int = 1_000
) -> CalmReport:
    """Run the seeded market for ``sim_ms`` in ``step_ms`` steps with the monitor attached."""
    settings = SandboxSettings(simulate=True, seed=seed, depth=depth, accounts=())
    wall = [START_MS]
    state = SandboxState(
        settings, clock=SimClock(start_ms=START_MS, speed=0), now_wall_ms=lambda: wall[0]
    )
    service = MonitorService(state)
    inputs: Counter[str] = Counter()
    checks = [0]

    def count(events: list[Event]) -> None:
        for ev in events:
            kind = type(ev)
            if kind is PricesUpdated:
                inputs["mark_updates"] += 1
                if ev.ts >= service.next_bands_ts:
                    checks[0] += 1
            elif kind is OrderCanceled:
                inputs["cancels"] += 1
            elif kind is LeverageChanged:
                inputs["leverage_changes"] += 1

    state.core.sinks.extend((count, service))
    start = time.process_time()
    done = 0
    while done < sim_ms:
        step = min(step_ms, sim_ms - done)
        state.advance(step)
        wall[0] += step
        done += step
    cpu = time.process_time() - start
    alerts = Counter(a.detector for _, a in service.alerts)
    return CalmReport(seed, depth, sim_ms, dict(alerts), dict(inputs), checks[0], cpu)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--depth", choices=("thick", "thin"), nargs="+", default=["thick", "thin"])
    p.add_argument("--step-ms", type=int, default=1_000)
    args = p.parse_args(argv)
    total_alerts, total_ms = 0, 0
    for depth in args.depth:
        for seed in args.seeds:
            r = calm_run(int(args.hours * 3_600_000), seed=seed, depth=depth, step_ms=args.step_ms)
            total_alerts += sum(r.alerts.values())
            total_ms += r.sim_ms
            print(
                f"seed {seed} {depth}: {r.sim_ms / 3_600_000:g} h, alerts {r.alerts or 0}, "
                f"inputs {r.inputs}, band checks {r.band_checks}, cpu {r.cpu_s:.1f} s"
            )
    print(f"false positives: {total_alerts} in {total_ms / 3_600_000:g} simulated hours")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

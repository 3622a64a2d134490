"""Scripted, seeded market scenarios run in accelerated time (docs/scenarios.md).

``SCENARIOS`` maps each name to a loader of its :class:`~sandbox.scenarios.base.Scenario`;
:func:`~sandbox.scenarios.runner.run_scenario` runs one and writes its report.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .base import Outcome, Scenario, ScenarioResult, Venue


def _loader(module: str) -> Callable[[], Scenario]:
    def load() -> Scenario:
        scenario: Scenario = importlib.import_module(f"{__name__}.{module}").SCENARIO
        return scenario

    return load


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "flash_crash": _loader("flash_crash"),
    "cascade": _loader("cascade"),
    "funding_squeeze": _loader("funding_squeeze"),
    "mark_divergence": _loader("mark_divergence"),
    "throttling_storm": _loader("throttling_storm"),
    "cancel_burst": _loader("cancel_burst"),
}

__all__ = ["SCENARIOS", "Outcome", "Scenario", "ScenarioResult", "Venue"]

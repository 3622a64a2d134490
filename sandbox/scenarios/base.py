"""What a scenario is: readable parameters, the venue it needs, and a script.

A scenario module defines a frozen ``Params`` dataclass whose defaults are the full run, a
``QUICK`` instance (short, for tests) and ``SCENARIO``, a :class:`Scenario`. The script gets a
:class:`~sandbox.scenarios.runner.Context` (server, admin API, actors, clock, recorder) and
returns its findings as data plus named checks (expectations that held or not).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import Context


@dataclass(frozen=True, slots=True)
class Venue:
    """The sandbox a scenario runs against: markets, depth profile, funding interval."""

    markets: tuple[str, ...] = ("BTC-PERP",)
    depth: str = "thick"
    funding_interval_hours: int = 8
    limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a script returns: ``findings`` (numbers as data) and ``checks`` (name -> held)."""

    findings: dict[str, Any]
    checks: dict[str, bool]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named scenario: ``full`` and ``quick`` parameters, ``venue(params)``, ``script``.

    ``duration_ms(params)`` is the simulated time the script will advance (for the progress
    bar); ``expectations`` explain each check in the report.
    """

    name: str
    title: str
    description: str
    full: Any
    quick: Any
    venue: Callable[[Any], Venue]
    duration_ms: Callable[[Any], int]
    script: Callable[[Context, Any], Awaitable[Outcome]]
    expectations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """A finished run: its findings and checks, where the report is, how long it took."""

    name: str
    seed: int
    params: dict[str, Any]
    findings: dict[str, Any]
    checks: dict[str, bool]
    report_dir: Path | None
    files: tuple[Path, ...]
    sim_ms: int
    wall_s: float

    @property
    def passed(self) -> bool:
        """True if every check held."""
        return all(self.checks.values())

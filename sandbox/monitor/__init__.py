"""Early warning for the sandbox exchange: anomaly detectors, liquidation bands, cascade
simulation and Prometheus metrics (see docs/monitor.md).

The detectors (:mod:`.detectors`), the band map (:mod:`.bands`) and the cascade simulator
(:mod:`.cascade`) are pure: they read events or a snapshot with explicit timestamps and never
touch the clock or the live state. :mod:`.service` wires them to a running sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .alerts import Alert, Severity

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sandbox.server.state import SandboxState

    from .service import MonitorService

__all__ = ["Alert", "Severity", "install"]


def install(app: FastAPI, state: SandboxState) -> MonitorService:
    """Attach the monitor to a sandbox app: routes, ``/metrics`` and the event sink."""
    from .service import install as _install

    return _install(app, state)

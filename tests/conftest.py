"""Test-wide settings: hypothesis profiles.

``ci`` (default) is short and derandomized so the suite is fast and never flaky; ``long`` is the
opt-in deep run (``make test-slow`` sets HYPOTHESIS_PROFILE=long).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    stateful_step_count=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=2000,
    stateful_step_count=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

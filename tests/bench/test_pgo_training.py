"""The profile-guided build's training workload (build_tools/pgo_training.py) does what its
docstring promises: every kind of engine work the profile should cover, not only the
benchmark's adds, cancels and sweeps."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "build_tools"))

import pgo_training  # noqa: E402


def test_the_training_covers_every_path_it_names() -> None:
    seen = pgo_training.run(12_000)
    # orders resting, trading, cancelled (by id and client id), amended and rejected
    for kind in ("OrderAccepted", "Trade", "OrderCanceled", "OrderAmended", "MarkPriceSet"):
        assert seen[kind] > 50, (kind, seen)
    for code in ("UNKNOWN_ORDER", "PRICE_OUT_OF_BAND", "POST_ONLY_WOULD_TAKE"):
        assert seen[f"Rejected:{code}"] > 0, (code, seen)
    # time passing and accounts failing: funding, liquidation, the insurance fund
    for kind in ("FundingPaid", "LiquidationStarted", "LiquidationFill", "InsuranceFundUsed"):
        assert seen[kind] > 0, (kind, seen)
    assert seen["OrderAccepted"] > 12_000 // 4  # main() refuses a profile below this


def test_the_training_is_deterministic() -> None:
    assert pgo_training.run(3_000) == pgo_training.run(3_000)


def test_main_fails_when_the_workload_places_too_few_orders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """setup.py builds without a profile when the training exits non-zero."""
    assert pgo_training.main(["pgo_training.py", "2000"]) == 0
    monkeypatch.setattr(pgo_training, "run", lambda n: Counter(OrderAccepted=n // 5))
    assert pgo_training.main(["pgo_training.py", "2000"]) == 1

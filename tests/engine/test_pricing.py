"""Index and mark price calculators: hand-computed cases for every rule and rounding."""

from __future__ import annotations

import pytest

from sandbox.engine.pricing import (
    MISSING,
    OUTLIER,
    STALE,
    IndexCalculator,
    IndexConfig,
    MarkCalculator,
    MarkConfig,
    div_round_half_even,
    funding_price,
    median3,
    mid_ticks,
)

HOUR = 3_600_000
EIGHT_H = 8 * HOUR


def make_index(**weights: int) -> IndexCalculator:
    return IndexCalculator(IndexConfig(weights=weights))


def feed(calc: IndexCalculator, ts: int, **prices: int) -> None:
    for name, price in prices.items():
        assert calc.update_source(name, price, ts)


# --- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [
        (7, 2, 4),  # 3.5 -> 4 (even)
        (5, 2, 2),  # 2.5 -> 2 (even)
        (-5, 2, -2),  # -2.5 -> -2 (even)
        (-7, 2, -4),  # -3.5 -> -4 (even)
        (10, 3, 3),  # 3.33 -> 3
        (11, 3, 4),  # 3.67 -> 4
        (-11, 3, -4),  # -3.67 -> -4
        (0, 9, 0),
    ],
)
def test_div_round_half_even(num: int, den: int, expected: int) -> None:
    assert div_round_half_even(num, den) == expected


def test_div_round_half_even_rejects_bad_denominator() -> None:
    with pytest.raises(ValueError):
        div_round_half_even(1, 0)


def test_median3_and_mid() -> None:
    assert median3(3, 1, 2) == 2
    assert median3(1, 1, 5) == 1
    assert median3(-4, 9, 0) == 0
    assert mid_ticks(600000, 600001) == 600000  # 600000.5 -> even
    assert mid_ticks(600001, 600002) == 600002  # 600001.5 -> even
    assert mid_ticks(600000, 600010) == 600005
    assert mid_ticks(None, 600010) is None
    assert mid_ticks(600000, None) is None


# --- index ---------------------------------------------------------------------------------


def test_index_weighted_mean_rounds_half_even() -> None:
    calc = make_index(a=3, b=2, c=1)
    feed(calc, 1_000, a=600000, b=600010, c=600030)
    res = calc.compute(1_000)
    # (3*600000 + 2*600010 + 1*600030) / 6 = 3600050 / 6 = 600008.33 -> 600008
    assert res.price == 600008
    assert not res.degraded
    assert res.used == ("a", "b", "c")
    assert res.excluded == ()
    assert calc.last_index == 600008


def test_index_tie_rounds_to_even() -> None:
    calc = make_index(a=1, b=1)
    feed(calc, 0, a=10000, b=10001)
    assert calc.compute(0).price == 10000  # 10000.5 -> 10000
    feed(calc, 1, a=10001, b=10002)
    assert calc.compute(1).price == 10002  # 10001.5 -> 10002


def test_index_stale_source_dropped_and_weights_renormalised() -> None:
    calc = make_index(a=3, b=2, c=1)
    feed(calc, 0, c=600600)
    feed(calc, 5_000, a=600000, b=600100)
    # at 10_000, c is exactly 10_000 ms old: not stale (stale means strictly older)
    res = calc.compute(10_000)
    assert res.used == ("a", "b", "c")
    # (1800000 + 1200200 + 600600) / 6 = 3600800 / 6 = 600133.33 -> 600133
    assert res.price == 600133
    # one ms later c is stale; weights 3:2 renormalised: (1800000 + 1200200) / 5 = 600040
    res = calc.compute(10_001)
    assert res.used == ("a", "b")
    assert res.excluded == (("c", STALE),)
    assert res.price == 600040
    assert not res.degraded


def test_index_missing_source_reported() -> None:
    calc = make_index(a=1, b=1, c=1)
    feed(calc, 0, a=600000, c=600002)
    res = calc.compute(0)
    assert res.excluded == (("b", MISSING),)
    assert res.price == 600001


def test_index_outlier_at_band_edge() -> None:
    # band 1.5%: 1.5% of 600000 is 9000 ticks
    calc = make_index(a=1, b=1, c=1)
    feed(calc, 0, a=600000, b=600000, c=609000)
    # c vs median(a, b) = 600000: 9000/600000 = 1.5% exactly -> kept (must *exceed* the band)
    res = calc.compute(0)
    assert res.excluded == ()
    assert res.price == 603000  # (600000 + 600000 + 609000) / 3
    feed(calc, 1, c=609001)
    # 9001/600000 = 1.50017% > 1.5% -> outlier; a vs median(600000, 609001) = 604500.5:
    # 4500.5/604500.5 = 0.74% -> kept
    res = calc.compute(1)
    assert res.excluded == (("c", OUTLIER),)
    assert res.used == ("a", "b")
    assert res.price == 600000


def test_index_outlier_below_median() -> None:
    calc = make_index(a=1, b=1, c=1)
    feed(calc, 0, a=600000, b=600000, c=590999)
    # |590999 - 600000| = 9001 > 9000 -> outlier
    res = calc.compute(0)
    assert res.excluded == (("c", OUTLIER),)
    assert res.price == 600000


def test_index_one_wild_source_does_not_drag_out_the_good_ones() -> None:
    calc = make_index(a=3, b=2, c=1)
    feed(calc, 0, a=600000, b=600100, c=700000)
    # c vs median(a, b) = 600050: 99950/600050 = 16.7%, the largest deviation -> dropped first.
    # (Against the median of the other two, a alone would look 7.7% off: median(600100,
    # 700000) = 650050; removing one source at a time avoids excluding a and b with it.)
    # Then a vs b: 100/600100 = 0.017% -> kept.  (3*600000 + 2*600100) / 5 = 600040
    res = calc.compute(0)
    assert res.excluded == (("c", OUTLIER),)
    assert res.used == ("a", "b")
    assert res.price == 600040


def test_index_outlier_with_even_count_of_others_and_tie_break() -> None:
    calc = make_index(a=1, b=1, c=1, d=1)
    feed(calc, 0, a=100000, b=110000, c=100000, d=110000)
    # a, c: others median 110000 -> 10000/110000 = 9.09%
    # b, d: others median 100000 -> 10000/100000 = 10% (largest; tie -> b first in config order)
    # then {a, c, d}: d vs median(100000, 100000) -> 10% -> dropped
    res = calc.compute(0)
    assert res.excluded == (("b", OUTLIER), ("d", OUTLIER))
    assert res.used == ("a", "c")
    assert res.price == 100000


def test_index_degraded_before_any_valid_index_is_none() -> None:
    calc = make_index(a=1, b=1, c=1)
    res = calc.compute(0)
    assert res.degraded and res.price is None
    assert res.excluded == (("a", MISSING), ("b", MISSING), ("c", MISSING))
    feed(calc, 0, a=600000)
    res = calc.compute(0)
    assert res.degraded and res.price is None
    assert res.used == ("a",)  # passed the checks but one source is not enough


def test_index_degraded_holds_previous_value_then_recovers() -> None:
    calc = make_index(a=1, b=1, c=1)
    feed(calc, 0, a=600000, b=600010, c=600020)
    assert calc.compute(0).price == 600010
    # only a keeps updating: b and c go stale -> one source left -> hold 600010
    feed(calc, 9_000, a=650000)
    res = calc.compute(12_000)
    assert res.degraded
    assert res.price == 600010
    assert res.used == ("a",)
    assert res.excluded == (("b", STALE), ("c", STALE))
    assert calc.last_index == 600010
    # b returns
    feed(calc, 12_500, b=650010)
    res = calc.compute(13_000)
    assert not res.degraded
    assert res.price == 650005  # (650000 + 650010) / 2
    assert res.excluded == (("c", STALE),)


def test_index_degraded_when_two_fresh_sources_disagree() -> None:
    calc = make_index(a=1, b=1)
    feed(calc, 0, a=600000, b=600000)
    assert calc.compute(0).price == 600000
    feed(calc, 1, a=600000, b=700000)
    # a vs b: 100000/700000 = 14.3%; b vs a: 100000/600000 = 16.7% -> b dropped, a alone
    res = calc.compute(1)
    assert res.degraded
    assert res.price == 600000
    assert res.excluded == (("b", OUTLIER),)


def test_index_all_stale_is_degraded() -> None:
    calc = make_index(a=1, b=1)
    feed(calc, 0, a=10000, b=10002)
    assert calc.compute(0).price == 10001
    res = calc.compute(20_000)
    assert res.degraded and res.price == 10001 and res.used == ()
    assert res.excluded == (("a", STALE), ("b", STALE))


def test_index_update_source_validation_and_out_of_order() -> None:
    calc = make_index(a=1, b=1)
    assert calc.update_source("a", 10000, 5_000)
    assert not calc.update_source("a", 10009, 4_999)  # older than the held quote: ignored
    assert calc.update_source("a", 10001, 5_000)  # same timestamp replaces
    assert calc.update_source("b", 10001, 5_000)
    assert calc.compute(5_000).price == 10001
    with pytest.raises(KeyError):
        calc.update_source("zzz", 100, 0)
    with pytest.raises(ValueError):
        calc.update_source("a", 0, 6_000)


def test_index_config_validation_and_immutability() -> None:
    with pytest.raises(ValueError):
        IndexConfig(weights={})
    with pytest.raises(ValueError):
        IndexConfig(weights={"a": 0})
    with pytest.raises(ValueError):
        IndexConfig(weights={"a": 1}, stale_after_ms=-1)
    with pytest.raises(ValueError):
        IndexConfig(weights={"a": 1}, outlier_band=-1)
    weights = {"a": 1, "b": 1}
    cfg = IndexConfig(weights=weights)
    weights["c"] = 5  # the config took a copy
    assert list(cfg.weights) == ["a", "b"]
    assert cfg.stale_after_ms == 10_000 and cfg.outlier_band == 1_500_000


# --- mark: basis sampling ------------------------------------------------------------------


def test_basis_sampled_at_most_once_per_second() -> None:
    mark = MarkCalculator()
    assert mark.sample_basis(600050, 600000, 0)
    assert not mark.sample_basis(600090, 600000, 500)  # too soon
    assert not mark.sample_basis(600090, 600000, 999)
    assert mark.sample_basis(600060, 600000, 1_000)
    assert not mark.sample_basis(600060, 600000, 1_999)  # 999 ms after the last kept one
    assert mark.sample_basis(600070, 600000, 2_500)
    assert not mark.sample_basis(600070, 600000, 3_000)  # spacing counts from 2_500
    assert mark.basis_samples() == ((0, 50), (1_000, 60), (2_500, 70))
    assert mark.ma_basis() == 60


def test_basis_window_keeps_last_30_seconds() -> None:
    mark = MarkCalculator()
    for i in range(30):  # t = 0, 1000, ..., 29000; basis = i
        assert mark.sample_basis(600000 + i, 600000, i * 1_000)
    assert mark.sample_count == 30
    assert mark.ma_basis() == 14  # (0 + ... + 29) / 30 = 14.5 -> 14 (even)
    assert mark.sample_basis(600030, 600000, 30_000)
    # the t=0 sample leaves (ts <= 30000 - 30000): (1 + ... + 30) / 30 = 15.5 -> 16 (even)
    assert mark.sample_count == 30
    assert mark.basis_samples()[0] == (1_000, 1)
    assert mark.ma_basis() == 16
    # a long gap empties the window down to the new sample
    assert mark.sample_basis(599990, 600000, 100_000)
    assert mark.basis_samples() == ((100_000, -10),)
    assert mark.ma_basis() == -10


def test_basis_custom_window_and_rate() -> None:
    mark = MarkCalculator(MarkConfig(basis_window_ms=10_000, basis_sample_ms=5_000))
    assert mark.sample_basis(110, 100, 0)
    assert not mark.sample_basis(500, 100, 4_999)
    assert mark.sample_basis(120, 100, 5_000)
    assert mark.sample_basis(130, 100, 10_000)  # drops t=0
    assert mark.basis_samples() == ((5_000, 20), (10_000, 30))
    assert mark.ma_basis() == 25


def test_basis_one_sided_book_carries_last_sample() -> None:
    mark = MarkCalculator()
    assert not mark.sample_basis(None, 600000, 0)  # nothing to carry yet
    assert mark.sample_count == 0
    assert mark.ma_basis() == 0
    assert mark.sample_basis(600040, 600000, 1_000)
    # book goes one-sided; the index moves but the carried basis stays 40
    assert mark.sample_basis(None, 600500, 2_000)
    assert mark.sample_basis(None, 601000, 3_000)
    assert mark.basis_samples() == ((1_000, 40), (2_000, 40), (3_000, 40))
    assert mark.sample_basis(601010, 601000, 4_000)
    assert mark.ma_basis() == 32  # (40 + 40 + 40 + 10) / 4 = 32.5 -> 32 (even)


def test_ma_basis_negative_rounding() -> None:
    mark = MarkCalculator()
    mark.sample_basis(99, 100, 0)  # -1
    mark.sample_basis(98, 100, 1_000)  # -2
    assert mark.ma_basis() == -2  # -1.5 -> -2 (even)
    mark.sample_basis(103, 100, 2_000)  # +3: (-1 - 2 + 3) / 3 = 0
    assert mark.ma_basis() == 0


# --- mark: compute -------------------------------------------------------------------------


def test_funding_price_p1() -> None:
    # 600000 * (1 + 0.0001 * 4h/8h) = 600000 + 30
    assert funding_price(600000, 10_000, 4 * HOUR, EIGHT_H) == 600030
    # 600001 * 0.00005 = 30.00005 -> 600031
    assert funding_price(600001, 10_000, 4 * HOUR, EIGHT_H) == 600031
    # 10000 * 0.00005 = 0.5 -> 10000 (tie to even); 30000 -> 30001.5 -> 30002
    assert funding_price(10000, 10_000, 4 * HOUR, EIGHT_H) == 10000
    assert funding_price(30000, 10_000, 4 * HOUR, EIGHT_H) == 30002
    # negative rate, full interval: 600000 * (1 - 0.0005) = 599700
    assert funding_price(600000, -50_000, EIGHT_H, EIGHT_H) == 599700
    # at the funding instant the funding term vanishes
    assert funding_price(600000, 10_000, 0, EIGHT_H) == 600000


def _mark_with_basis(basis: int, config: MarkConfig | None = None) -> MarkCalculator:
    mark = MarkCalculator(config)
    mark.sample_basis(600000 + basis, 600000, 0)
    return mark


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (600040, 600040),  # P1 = 600030 < last < P2 = 600050 -> last
        (600100, 600050),  # last above both -> P2
        (599000, 600030),  # last below both -> P1
        (None, 600030),  # no trade yet: median(P1, P2, index=600000) = P1
    ],
)
def test_mark_median(last: int | None, expected: int) -> None:
    mark = _mark_with_basis(50)  # P2 = 600000 + 50
    # P1 = 600000 * (1 + 0.0001 * 4h/8h) = 600030
    assert mark.compute(600000, last, 10_000, 4 * HOUR, EIGHT_H) == expected


def test_mark_median_without_last_uses_index() -> None:
    mark = _mark_with_basis(-80)  # P2 = 599920
    # P1 = 600030, P2 = 599920, stand-in last = index 600000 -> 600000
    assert mark.compute(600000, None, 10_000, 4 * HOUR, EIGHT_H) == 600000


def test_mark_no_basis_samples_p2_is_index() -> None:
    mark = MarkCalculator()
    # P1 = 600030, P2 = 600000, last 600100 -> 600030
    assert mark.compute(600000, 600100, 10_000, 4 * HOUR, EIGHT_H) == 600030


def test_mark_fair_price_is_p1_alone() -> None:
    mark = _mark_with_basis(500, MarkConfig(method="fair_price"))
    # P1 = 600000 * (1 + 0.0003 * 2h/8h) = 600000 + 45
    assert mark.compute(600000, 650000, 30_000, 2 * HOUR, EIGHT_H) == 600045
    assert mark.compute(600000, None, 30_000, 2 * HOUR, EIGHT_H) == 600045


def test_mark_clamp_band() -> None:
    cfg = MarkConfig(clamp_band=100_000)  # 0.1%: 600000 -> [599400, 600600]
    mark = _mark_with_basis(1_000, cfg)  # P2 = 601000
    # unclamped median(600030, 601000, 601000) = 601000 -> clamped to 600600
    assert mark.compute(600000, 601000, 10_000, 4 * HOUR, EIGHT_H) == 600600
    low = _mark_with_basis(-2_000, cfg)  # P2 = 598000
    # P1 = 600000 * (1 - 0.0005) = 599700; median(599700, 598000, 597000) = 598000 -> 599400
    assert low.compute(600000, 597000, -50_000, EIGHT_H, EIGHT_H) == 599400
    # inside the band: untouched
    assert mark.compute(600000, 600100, 10_000, 4 * HOUR, EIGHT_H) == 600100


def test_mark_clamp_bounds_round_inward() -> None:
    mark = MarkCalculator(MarkConfig(clamp_band=100_000))
    # 600001 * 0.999 = 599400.999 -> 599401 ; 600001 * 1.001 = 600601.001 -> 600601
    assert mark.compute(600001, 500000, -5_000_000, EIGHT_H, EIGHT_H) == 599401
    assert mark.compute(600001, 700000, 5_000_000, EIGHT_H, EIGHT_H) == 600601


def test_mark_validation() -> None:
    with pytest.raises(ValueError):
        MarkConfig(method="last")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MarkConfig(basis_sample_ms=0)
    with pytest.raises(ValueError):
        MarkConfig(clamp_band=-1)
    mark = MarkCalculator()
    with pytest.raises(ValueError):
        mark.compute(0, None, 0, 0, EIGHT_H)
    with pytest.raises(ValueError):
        mark.compute(600000, None, 0, 0, 0)
    with pytest.raises(ValueError):
        mark.compute(600000, None, 0, -1, EIGHT_H)


def test_docs_worked_examples() -> None:
    # docs/mechanics-prices-funding.md sections 1 and 2
    calc = make_index(a=3, b=2, c=1)
    feed(calc, 0, a=600000, b=600010, c=600030)
    assert calc.compute(0).price == 600008
    feed(calc, 1_000, a=600000, b=600100, c=700000)
    assert calc.compute(1_000).price == 600040
    feed(calc, 9_000, a=650000)
    res = calc.compute(12_000)
    assert res.degraded and res.price == 600040

    for config, last, expected in [
        (MarkConfig(), 600040, 600040),
        (MarkConfig(), None, 600030),
        (MarkConfig(method="fair_price"), 600040, 600030),
        (MarkConfig(clamp_band=1_000), 600040, 600006),
    ]:
        mark = MarkCalculator(config)
        for i, mid in enumerate([600040, 600060, 600050, None, 600070]):
            assert mark.sample_basis(mid, 600000, i * 1_000)
        assert mark.ma_basis() == 54  # (40 + 60 + 50 + 50 + 70) / 5
        assert mark.compute(600000, last, 10_000, 4 * HOUR, EIGHT_H) == expected

"""The statistics the verdicts rest on, on numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from harness.analysis.stats import paired_ratio, t95
from harness.orchestrate.runner import counterbalanced
from harness.plan.presets import PRESETS
from harness.plan.sweep import variants


@pytest.mark.parametrize(("df", "t"), [(1, 12.706), (9, 2.262), (19, 2.093), (21, 2.086), (35, 2.042), (500, 1.980)])
def test_t_between_two_tabulated_degrees_of_freedom_takes_the_wider_one(df: int, t: float) -> None:
    assert t95(df) == t


def test_the_paired_ratio_is_the_geometric_mean_of_the_ratios_with_a_t_interval() -> None:
    # Given two pairs whose ratios are 1/2 and 2
    r = paired_ratio([(1.0, 2.0), (4.0, 2.0)])
    # Then their geometric mean is 1, and the interval is exp(±t(1) · sd(log ratios) / √2)
    assert r is not None and r.pairs == 2 and abs(r.ratio - 1.0) < 1e-12
    half = 12.706 * math.sqrt(2) * math.log(2) / math.sqrt(2)
    assert r.low is not None and r.high is not None
    assert abs(r.low - math.exp(-half)) < 1e-9 and abs(r.high - math.exp(half)) < 1e-9


def test_a_single_pair_has_no_interval_and_pairs_without_two_positive_values_are_left_out() -> None:
    r = paired_ratio([(9.0, 10.0), (0.0, 10.0), (5.0, -1.0)])
    assert r is not None and (r.pairs, r.low, r.high) == (1, None, None) and abs(r.ratio - 0.9) < 1e-12
    assert paired_ratio([]) is None


def test_a_sweeps_variants_run_in_alternating_order_from_one_repetition_to_the_next() -> None:
    # Given the overhead preset's two variants (history on, history off)
    cells = variants(PRESETS["overhead"], "rq")
    # Then repetition 0 runs them as listed, repetition 1 the other way round (ABBA), and so on
    names = [[v.name for v in counterbalanced(cells, r)] for r in range(3)]
    assert names[0] == [v.name for v in cells] and names[1] == names[0][::-1] and names[2] == names[0]

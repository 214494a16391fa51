"""``compare`` on literal results: direction from the registry, significance from repetitions, gates."""

from __future__ import annotations

from typing import Any

import pytest

from harness.analysis.compare import CompareError, Threshold, compare, environment_differences, markdown, significant

SCENARIO = {"name": "transient-1", "policy": {"max_retries": 3}, "faults": [{"kind": "fail_first", "k": 1}]}


def results(lateness: list[float], *, backend: str = "rq", valid: bool = True, scenario: dict[str, Any] = SCENARIO,
            env: dict[str, Any] | None = None) -> dict[str, Any]:
    cells = [{"scenario": scenario["name"], "backend": backend,
              "summary": {"lateness_p95": v, "throughput_jobs_s": 10.0, "valid": valid}} for v in lateness]
    return {"schema_version": 1, "scenarios": {scenario["name"]: scenario}, "cells": cells,
            "environment": env or {"python": "3.11.7", "cpu_count": 2}}


def test_a_run_against_itself_changes_nothing() -> None:
    base = results([0.010, 0.011, 0.012])
    rows, failures = compare(base, base, thresholds=[Threshold.parse("lateness_p95:+10%")], fail_on_invalid=True)
    assert failures == []
    assert {r.direction for r in rows} <= {"same", "-"}  # "-": metric absent on both sides


def test_retries_500_ms_later_cross_a_lateness_threshold_and_name_metric_and_backend() -> None:
    rows, failures = compare(results([0.010, 0.011, 0.012]), results([0.510, 0.511, 0.512]),
                             thresholds=[Threshold.parse("retry_lateness_p95:+10%")])
    row = next(r for r in rows if r.metric == "lateness_p95")
    assert row.direction == "worse" and row.significant is True
    assert len(failures) == 1 and "rq" in failures[0] and "lateness_p95" in failures[0]


def test_a_crossing_that_the_repetitions_show_is_noise_does_not_fail() -> None:
    _, failures = compare(results([0.010, 0.030, 0.020]), results([0.025, 0.012, 0.029]),
                          thresholds=[Threshold.parse("lateness_p95:+10%")])
    assert failures == []


def test_single_runs_have_unknown_significance_and_still_gate() -> None:
    rows, failures = compare(results([0.010]), results([0.020]), thresholds=[Threshold.parse("lateness_p95:+5")])
    assert next(r for r in rows if r.metric == "lateness_p95").significant is None
    assert failures  # +10 ms > +5 ms (absolute amounts are in the unit tables show)
    assert "n/a (1 run)" in markdown(rows)


def test_higher_is_better_metrics_fail_on_a_drop() -> None:
    base, new = results([0.01, 0.01]), results([0.01, 0.01])
    for cell in new["cells"]:
        cell["summary"]["throughput_jobs_s"] = 5.0
    rows, failures = compare(base, new, thresholds=[Threshold.parse("throughput_jobs_s:-20%")])
    assert next(r for r in rows if r.metric == "throughput_jobs_s").direction == "worse"
    assert failures


def test_fail_on_invalid_only_for_a_cell_that_became_invalid() -> None:
    _, still = compare(results([0.01], valid=False), results([0.01], valid=False), fail_on_invalid=True)
    _, became = compare(results([0.01], valid=True), results([0.01], valid=False), fail_on_invalid=True)
    assert still == [] and len(became) == 1


def test_results_that_cannot_be_compared() -> None:
    other = {**SCENARIO, "name": "permanent"}
    with pytest.raises(CompareError, match="no scenario in common"):
        compare(results([0.01]), results([0.01], scenario=other))
    changed = {**SCENARIO, "faults": [{"kind": "fail_first", "k": 2}]}
    with pytest.raises(CompareError, match="differs"):
        compare(results([0.01]), results([0.01], scenario=changed))


@pytest.mark.parametrize("text", ["lateness_p95", "lateness_p95:10%", "nosuch:+1%", "valid:+1"])
def test_bad_thresholds_are_rejected(text: str) -> None:
    with pytest.raises(CompareError):
        Threshold.parse(text)


def test_environment_differences_are_named() -> None:
    diffs = environment_differences(results([0.01]), results([0.01], env={"python": "3.12.1", "cpu_count": 2}))
    assert diffs == ["python: 3.11.7 → 3.12.1"]


def test_significance_needs_two_values_a_side() -> None:
    assert significant([1.0], [2.0, 3.0]) is None
    assert significant([1.0, 1.01, 0.99], [2.0, 2.01, 1.99]) is True
    assert significant([1.0, 2.0, 3.0], [1.5, 2.5, 2.0]) is False

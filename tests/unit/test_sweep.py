"""Sweeps: which variants each backend runs, what is a valid sweep, and which variant is recommended."""

from __future__ import annotations

from typing import Any

import pytest

from harness.analysis.sweeps import curve, recommend, sweeps
from harness.plan.presets import PRESETS
from harness.plan.scenarios import ScenarioError, from_mapping
from harness.plan.sweep import variants


def test_each_backend_runs_the_sizes_times_its_own_options_only() -> None:
    s = from_mapping({"name": "s", "jobs": 10, "sweep": {"workers": [1, 2], "arq_poll_delay": [0.5, 0.05],
                                                          "celery_pool": ["prefork", "threads"]}}, "s.toml")
    assert [v.name for v in variants(s, "rq")] == ["s[workers=1]", "s[workers=2]"]
    arq = variants(s, "arq")
    assert [v.name for v in arq] == ["s[workers=1, arq_poll_delay=0.5]", "s[workers=1, arq_poll_delay=0.05]",
                                     "s[workers=2, arq_poll_delay=0.5]", "s[workers=2, arq_poll_delay=0.05]"]
    # Sizes become fields and options become options; a variant is not swept again and knows its parent
    last = arq[-1]
    assert (last.workers, last.options["arq_poll_delay"], last.sweep, last.sweep_of) == (2, 0.05, {}, "s")
    assert last.sweep_values == {"workers": 2, "arq_poll_delay": 0.05}
    # Without a sweep a scenario is its own single variant
    assert variants(PRESETS["transient-1"], "celery") == [PRESETS["transient-1"]]


@pytest.mark.parametrize("sweep, message", [
    ({"wokers": [1, 2]}, "neither a size"),
    ({"workers": []}, "non-empty list"),
    ({"workers": [0, 2]}, "whole numbers >= 1"),
    ({"arq_poll_delay": 0.5}, "non-empty list"),
])
def test_a_malformed_sweep_names_the_key(sweep: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        from_mapping({"name": "s", "sweep": sweep}, "s.toml")


def metrics(tput: float, p99: float, cpu: float | None, **extra: Any) -> dict[str, Any]:
    return {"throughput_jobs_s": tput, "lateness_p99": p99, "cpu_ms_per_attempt": cpu, **extra}


def test_the_recommendation_balances_precision_throughput_and_cpu() -> None:
    rows = [("slow", metrics(10, 1.0, 1.0)),      # cheap but slow and imprecise
            ("fast", metrics(100, 0.05, 2.0)),    # 10x the throughput, 20x the precision, 2x the CPU
            ("hot", metrics(105, 0.04, 20.0))]    # a little better still, at 10x the CPU
    assert recommend(rows) == "fast"


def test_a_variant_that_lost_or_duplicated_a_job_is_never_recommended() -> None:
    rows = [("lossy", metrics(100, 0.01, 1.0, lost_jobs=1)), ("twice", metrics(100, 0.01, 1.0, duplicate_executions=2)),
            ("sound", metrics(10, 1.0, 5.0))]
    assert recommend(rows) == "sound"
    assert recommend([("lossy", metrics(100, 0.01, 1.0, lost_jobs=1))]) is None


def test_results_give_one_row_per_variant_a_recommendation_per_backend_and_curves_over_one_size() -> None:
    def agg(tput: float, p99: float) -> dict[str, Any]:
        return {"throughput_jobs_s": {"median": tput}, "lateness_p99": {"median": p99},
                "cpu_ms_per_attempt": {"median": 1.0}, "valid": {"all": True}}

    results = {"scenarios": {"sc[workers=1]": {"sweep_of": "sc", "sweep_values": {"workers": 1}},
                             "sc[workers=2]": {"sweep_of": "sc", "sweep_values": {"workers": 2}},
                             "plain": {}},
               "aggregates": {"sc[workers=1]": {"rq": agg(10, 0.5), "arq": agg(5, 0.5)},
                              "sc[workers=2]": {"rq": agg(20, 0.5), "arq": agg(9, 0.5)}, "plain": {"rq": agg(1, 1)}}}
    rows = sweeps(results)["sc"]
    assert [(r["backend"], r["settings"]["workers"], r["recommended"]) for r in rows] == [
        ("arq", 1, False), ("arq", 2, True), ("rq", 1, False), ("rq", 2, True)]
    assert curve(rows, "throughput_jobs_s") == {"arq": [(1.0, 5.0), (2.0, 9.0)], "rq": [(1.0, 10.0), (2.0, 20.0)]}


def test_a_sweep_over_the_number_of_jobs_draws_curves_and_recommends_nothing() -> None:
    results = {"scenarios": {f"s[jobs={n}]": {"sweep_of": "s", "sweep_values": {"jobs": n}} for n in (1000, 100_000)},
               "aggregates": {f"s[jobs={n}]": {"rq": {"throughput_jobs_s": {"median": 80.0 + n / 1e5}}}
                              for n in (1000, 100_000)}}
    rows = sweeps(results)["s"]
    assert not any(r["recommended"] for r in rows)  # the workload's size is not a setting to pick
    assert curve(rows, "throughput_jobs_s") == {"rq": [(1000.0, 80.01), (100000.0, 81.0)]}


def _sweep_results(valid: dict[str, bool]) -> dict[str, Any]:
    """Two variants of one rq sweep: "fast" has the better figures, "sound" passed every contract or not."""
    def agg(tput: float, p99: float, ok: bool) -> dict[str, Any]:
        return {"throughput_jobs_s": {"median": tput}, "lateness_p99": {"median": p99},
                "cpu_ms_per_attempt": {"median": 1.0}, "valid": {"all": ok}}

    return {"scenarios": {f"sc[concurrency={n}]": {"sweep_of": "sc", "sweep_values": {"concurrency": n}}
                          for n in (2, 8)},
            "aggregates": {"sc[concurrency=2]": {"rq": agg(10, 1.0, valid["sound"])},
                           "sc[concurrency=8]": {"rq": agg(100, 0.01, valid["fast"])}}}


def test_a_variant_that_failed_a_contract_is_not_recommended_over_one_that_passed() -> None:
    # Given a fast variant that failed a contract and a slower one that passed every contract
    rows = sweeps(_sweep_results({"fast": False, "sound": True}))["sc"]
    # Then the one that passed is recommended, plainly
    assert [(r["settings"]["concurrency"], r["recommended"], r["least_bad"]) for r in rows] == [
        (2, True, False), (8, False, False)]


def test_when_every_variant_failed_a_contract_the_pick_is_marked_least_bad() -> None:
    rows = sweeps(_sweep_results({"fast": False, "sound": False}))["sc"]
    assert [(r["settings"]["concurrency"], r["recommended"], r["least_bad"]) for r in rows] == [
        (2, False, False), (8, True, True)]

"""The cost of recording: history on and off read as paired repetitions, judged by a 95% interval."""

from __future__ import annotations

from typing import Any

import pytest

from harness.analysis.overhead import overhead, overhead_note
from harness.analysis.sweeps import sweeps


def test_history_on_and_off_gives_the_share_of_throughput_recording_costs_and_no_recommendation() -> None:
    def agg(wall: float) -> dict[str, Any]:
        return {"wall_throughput_jobs_s": {"median": wall}}

    results = {"scenarios": {f"o[record_history={v}]": {"sweep_of": "o", "sweep_values": {"record_history": v}}
                             for v in (True, False)},
               "aggregates": {"o[record_history=True]": {"rq": agg(90.0)},
                              "o[record_history=False]": {"rq": agg(100.0)}}}
    rows = sweeps(results)["o"]
    assert not any(r["recommended"] for r in rows)
    (o,) = overhead(rows)
    assert (o["backend"], o["on"], o["off"]) == ("rq", 90.0, 100.0) and abs(o["overhead_pct"] - 10.0) < 1e-9


def overhead_of(on: list[float], off: list[float], *, order: list[int] | None = None,
                cpu: tuple[list[float], list[float]] | None = None, window: bool = False) -> dict[str, Any]:
    """The overhead entry of one backend whose repetition r measured ``on[r]`` and ``off[r]`` jobs/s (and
    ``cpu[0][r]``, ``cpu[1][r]`` ms of worker CPU per job, the driver's being 1 ms on both sides; with
    ``window``, inside the measured window, where the whole cell's figures say 50 ms and Redis used 0.5 ms)."""
    scenarios = {f"o[record_history={v}]": {"sweep_of": "o", "sweep_values": {"record_history": v}}
                 for v in (True, False)}

    def summary(v: bool, r: int) -> dict[str, float]:
        out = {"wall_throughput_jobs_s": (on if v else off)[r]}
        if cpu and window:
            out.update(window_driver_cpu_ms_per_job=1.0, window_worker_cpu_ms_per_job=cpu[0 if v else 1][r],
                       window_redis_cpu_ms_per_job=0.5, driver_cpu_ms_per_job=50.0, worker_cpu_ms_per_job=50.0)
        elif cpu:
            out.update(driver_cpu_ms_per_job=1.0, worker_cpu_ms_per_job=cpu[0 if v else 1][r])
        return out

    cells = [{"scenario": f"o[record_history={v}]", "backend": "rq", "repeat": r, "summary": summary(v, r)}
             for r in (order or range(len(on))) for v in (True, False)]
    def median(v: bool, metric: str) -> dict[str, float]:
        xs = sorted(c["summary"][metric] for c in cells if c["scenario"] == f"o[record_history={v}]")
        return {"median": xs[len(xs) // 2]}

    aggregates = {f"o[record_history={v}]": {"rq": {m: median(v, m) for m in summary(v, 0)}} for v in (True, False)}
    (o,) = overhead(sweeps({"scenarios": scenarios, "aggregates": aggregates, "cells": cells})["o"])
    return o


def test_a_small_cost_under_a_large_drift_is_shown_within_the_target_by_pairing_the_repetitions() -> None:
    # Given repetitions whose level drifts by ±20% (a shared machine), each with the history costing 2%
    off = [100.0, 120.0, 80.0, 110.0, 90.0, 105.0]
    on = [x * f for x, f in zip(off, (0.98, 0.979, 0.981, 0.98, 0.982, 0.978), strict=True)]
    # When the overhead is worked out
    o = overhead_of(on, off)
    # Then the pairs cancel the drift: 2%, an interval inside the 5% target, and a real (significant) cost
    assert abs(o["overhead_pct"] - 2.0) < 0.05 and o["pairs"] == 6
    assert 1.5 < o["low_pct"] < 2.0 < o["high_pct"] < 2.5
    assert o["verdict"] == "within" and o["significant"] is True
    assert "within the 5% target" in overhead_note(o) and "6 paired runs" in overhead_note(o)


@pytest.mark.parametrize(("ratios", "verdict", "significant"), [
    ((0.90, 0.91, 0.89, 0.90), "over", True),        # every pair 10% apart
    ((0.97, 0.98, 0.96, 0.97), "within", True),      # every pair ~3% apart
    ((0.80, 1.15, 0.95, 1.10), "unresolved", False),  # pairs all over the place
    ((1.00, 1.01, 0.99, 1.00), "within", False),     # no cost at all
])
def test_the_interval_of_the_paired_cost_decides_the_verdict_against_the_target(
        ratios: tuple[float, ...], verdict: str, significant: bool) -> None:
    off = [100.0 + 7 * r for r in range(len(ratios))]
    o = overhead_of([x * q for x, q in zip(off, ratios, strict=True)], off)
    assert (o["verdict"], o["significant"]) == (verdict, significant)
    assert o["low_pct"] <= o["overhead_pct"] <= o["high_pct"]


def test_repetitions_are_paired_by_their_index_not_by_the_order_their_cells_are_listed_in() -> None:
    # Given three repetitions at very different levels, listed out of order
    o = overhead_of([99.0, 49.5, 198.0], [100.0, 50.0, 200.0], order=[2, 0, 1])
    # Then each on is divided by its own off: exactly 1% every time
    assert abs(o["overhead_pct"] - 1.0) < 1e-9 and abs(o["high_pct"] - o["low_pct"]) < 1e-9


def test_one_run_a_side_gives_the_ratio_but_no_interval_and_no_verdict() -> None:
    o = overhead_of([90.0], [100.0])
    assert abs(o["overhead_pct"] - 10.0) < 1e-9 and o["verdict"] is None and o["significant"] is None
    assert "no interval" in overhead_note(o)


def test_the_cpu_recording_costs_per_job_is_paired_too_driver_and_workers_together() -> None:
    # Given worker CPU of 9 ms per job with the history on and 8 off, in every repetition (driver: 1 ms)
    o = overhead_of([99.0, 98.0, 99.0], [100.0, 99.0, 100.0], cpu=([9.0, 9.0, 9.0], [8.0, 8.0, 8.0]))
    # Then recording costs 10 ms against 9: +11.1%, with no spread at all
    assert abs(o["cpu_pct"] - 100 / 9) < 1e-9 and abs(o["cpu_high_pct"] - o["cpu_low_pct"]) < 1e-9
    assert "+11.1%" in overhead_note(o) and "+11.1%" not in overhead_note(o, cpu=False)


def test_the_cpu_cost_is_read_inside_the_measured_window_when_the_history_has_it_redis_included() -> None:
    # Given worker CPU of 9 ms per job on and 8 off inside the window, driver 1 ms and Redis 0.5 ms on both
    # sides, and whole-cell figures (start-up included) that are alike on both sides
    o = overhead_of([99.0, 98.0, 99.0], [100.0, 99.0, 100.0], cpu=([9.0, 9.0, 9.0], [8.0, 8.0, 8.0]), window=True)
    # Then the cost is the window's: 10.5 ms against 9.5, and the note says where it was measured
    assert o["cpu_window"] is True and abs(o["cpu_pct"] - 100 / 9.5) < 1e-9
    assert (o["redis_cpu_ms"], o["redis_cpu_ms_off"]) == (0.5, 0.5)
    assert "inside the measured window" in overhead_note(o) and "redis 0.50 vs 0.50" in overhead_note(o)


def test_a_sweep_that_also_varies_another_setting_gets_one_cost_per_value_of_it() -> None:
    # Given a sweep over concurrency and record_history: on/off of each concurrency paired per repetition
    def name(c: int, v: bool) -> str:
        return f"o[concurrency={c}, record_history={v}]"

    wall = {(1, True): [99.0, 98.0], (1, False): [100.0, 99.0], (8, True): [90.0, 180.0], (8, False): [100.0, 200.0]}
    scenarios = {name(c, v): {"sweep_of": "o", "sweep_values": {"concurrency": c, "record_history": v}}
                 for c, v in wall}
    cells = [{"scenario": name(c, v), "backend": "reference", "repeat": r, "summary": {"wall_throughput_jobs_s": x}}
             for (c, v), xs in wall.items() for r, x in enumerate(xs)]
    aggregates = {name(c, v): {"reference": {"wall_throughput_jobs_s": {"median": xs[0]}}}
                  for (c, v), xs in wall.items()}
    # When the overhead is worked out
    one, eight = overhead(sweeps({"scenarios": scenarios, "aggregates": aggregates, "cells": cells})["o"])
    # Then each concurrency is its own row, named after it, its cost from its own pairs (1% and 10%)
    assert (one["label"], one["settings"]) == ("reference · concurrency=1", {"concurrency": 1})
    assert eight["label"] == "reference · concurrency=8" and one["pairs"] == eight["pairs"] == 2
    assert abs(one["overhead_pct"] - 1.0) < 0.05 and abs(eight["overhead_pct"] - 10.0) < 1e-9


def test_a_sweep_over_record_history_alone_is_labelled_by_its_backend() -> None:
    o = overhead_of([99.0, 98.0], [100.0, 99.0])
    assert (o["label"], o["settings"]) == ("rq", {})



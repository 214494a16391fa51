"""The harness-overhead measurement on real workers of every backend: the same jobs with the history on
(events through the local file) and off (no events; the library's own count ends the run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import retrybench

from harness.analysis.history import read_history
from implementations.backends import ALL_BACKENDS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_history_on_and_off_both_see_every_job_end_and_off_records_nothing(
        backend: str, redis_url: str, backend_envs: object, tmp_path: Path) -> None:
    # Given the overhead preset, cut to 40 jobs
    done = retrybench("run", "-b", backend, "-s", "overhead", "--jobs", "40", "--redis-url", redis_url,
                      "--out", str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "latest"
    events = read_history(run_dir / "history.jsonl").events
    ends = {e["record_history"]: e for e in events if e["type"] == "end"}
    # Then both cells ended complete, with every job counted and a wall time to divide by
    assert set(ends) == {True, False} and all(e["complete"] and e["jobs_done"] == 40 and e["wall_s"] > 0
                                              for e in ends.values())
    # And the history-off cell recorded no attempt at all, while the other recorded each job's end
    by_run: dict[Any, list[str]] = {}
    for e in events:
        by_run.setdefault(e["cell_id"], []).append(e["type"])
    off, on = ends[False]["cell_id"], ends[True]["cell_id"]
    assert "attempt" not in by_run[off] and by_run[on].count("terminal") == 40
    # And the events file each cell's workers wrote through is gone, once copied into the history
    assert not list((run_dir / "logs").glob("*-events.jsonl"))
    # And both say what the driver, the workers (processes of their own, but reference's threads) and the
    # Redis server spent inside the measured window: some CPU, never more than was spent in the whole cell
    for end in ends.values():
        window = end["window_cpu_s"]
        assert 0 < window["driver"] <= end["driver_cpu_s"] and window["redis"] is not None
        if backend == "reference":
            # No queue traffic reaches Redis: its figure may round to 0 where the kernel counts in ticks
            assert window["workers"] is None and window["redis"] >= 0
        else:
            assert window["redis"] > 0
            assert 0 <= window["workers"] <= end["worker_cpu_s"]
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["cells"]) == 2


def test_repetitions_run_the_two_settings_in_alternating_order_and_the_report_pairs_them(
        redis_url: str, tmp_path: Path) -> None:
    # Given two repetitions of the overhead preset on the reference backend
    done = retrybench("run", "-b", "reference", "-s", "overhead", "--jobs", "40", "--repeat", "2",
                      "--redis-url", redis_url, "--out", str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "latest"
    # Then the history shows on, off, then off, on (ABBA): neither setting always runs first
    events = read_history(run_dir / "history.jsonl").events
    order = [(e["repeat"], e["options"]["record_history"]) for e in events if e["type"] == "run"]
    assert order == [(0, True), (0, False), (1, False), (1, True)]
    # And the report judges the cost from the two pairs, with an interval and a verdict
    report = (run_dir / "report.md").read_text()
    assert "over 2 paired runs" in report and "5% target" in report

"""Comparable start-up (issue 22, item 8): spawn to first completed probe job, per worker, on every backend.

Real redis-server, real workers: one small cell per backend through the runner, as ``retrybench run`` does.
Timing is only checked for sanity (positive, finite, one value per worker).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.analysis.history import read_history
from harness.analysis.results import analyze
from harness.orchestrate.envs import parse_backend_spec
from harness.orchestrate.runner import RunPlan, execute
from harness.plan.scenarios import Scenario
from harness.report.render import write_reports
from implementations.backends import ALL_BACKENDS
from implementations.runtime.startup import DEFINITION, PROBE_ID_PREFIX

pytestmark = pytest.mark.integration

WORKERS = 2
CELL = Scenario("startup-small", task="work", jobs=4, workers=WORKERS, concurrency=1, time_scale=0.05,
                policy={"autoretry_for": ["ConnectionError"], "max_retries": 1, "intervals": [1]},
                faults=({"kind": "fail_first", "k": 1},))


@pytest.fixture(scope="module", params=ALL_BACKENDS)
def cell(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str,
         backend_envs: Any) -> dict[str, Any]:
    backend = request.param
    out = tmp_path_factory.mktemp(f"startup-{backend}")
    plan = RunPlan(backends=[parse_backend_spec(backend)], scenarios=[CELL], redis_url=redis_url, out=out,
                   command=["pytest"])
    run_dir = execute(plan, log=lambda _m: None, progress_factory=lambda _c: (lambda _line: None))
    events = read_history(run_dir / "history.jsonl").events
    results = analyze(run_dir)
    write_reports(run_dir, results)
    return {"backend": backend, "dir": run_dir, "events": events, "results": results}


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == kind]


def test_every_worker_has_one_finite_positive_startup(cell: dict[str, Any]) -> None:
    [ready] = of(cell["events"], "workers_ready")
    per_worker = ready["startup_per_worker_s"]
    assert ready["startup_definition"] == DEFINITION
    assert len(per_worker) == WORKERS, ready  # CELL has concurrency 1: one worker (process or thread) each
    assert all(isinstance(v, float) and v > 0 and math.isfinite(v) for v in per_worker), ready
    assert ready["startup_s"] == max(per_worker) and not ready["startup_missing"], ready
    assert ready["probes_unfinished"] == 0, ready
    # Each figure is a probe that worker index itself completed: one first probe per index, its own pid.
    firsts = [e for e in of(cell["events"], "probe") if e["state"] == "first"]
    assert sorted(e["index"] for e in firsts) == list(range(WORKERS))
    assert sorted(p for p in ready["startup_pids"]) == sorted(e["pid"] for e in firsts)
    starts = {e["index"]: e["pid"] for e in of(cell["events"], "worker") if e.get("event") == "start"}
    if starts:  # worker processes (not the reference backend's threads): the index is that process's own
        assert {e["index"]: e["worker_pid"] for e in firsts} == starts


def test_probes_are_not_jobs_of_the_run_and_end_before_the_measured_window(cell: dict[str, Any]) -> None:
    events = cell["events"]
    job_events = [e for e in events if "job_id" in e]
    assert not [e for e in job_events if str(e["job_id"]).startswith(PROBE_ID_PREFIX)]
    [end] = of(events, "end")
    assert end["complete"] and end["jobs_done"] == CELL.jobs, end
    assert not of(events, "failure_record")
    enqueues = of(events, "enqueue")
    assert len(enqueues) == CELL.jobs
    first_enqueue = min(e["ts_ns"] for e in enqueues)
    probes = of(events, "probe")
    assert probes and max(e["ts_ns"] for e in probes) < first_enqueue
    kinds = [e["type"] for e in events]
    assert kinds.index("workers_ready") < kinds.index("enqueue")
    # The run's own figures are untouched: every attempt and terminal state belongs to one of its jobs.
    [result_cell] = cell["results"]["cells"]
    assert result_cell["summary"]["jobs"] == CELL.jobs


def test_results_and_report_show_startup_per_worker(cell: dict[str, Any]) -> None:
    [result_cell] = cell["results"]["cells"]
    stats = result_cell["startup"]
    assert stats["workers"] == WORKERS and stats["measured"] == WORKERS
    assert 0 < stats["median_s"] <= stats["max_s"] and math.isfinite(stats["max_s"])
    assert stats["definition"] == DEFINITION
    report = (cell["dir"] / "report.md").read_text()
    assert "## Start-up" in report
    row = next(line for line in report.splitlines() if line.startswith(f"| {cell['backend']}")
               and line.endswith(" | 1 |"))
    assert f"{WORKERS} of {WORKERS}" in row

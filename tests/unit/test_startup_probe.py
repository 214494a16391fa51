"""Start-up probes (issue 22, item 8) without Redis: the reference backend's threads and literal histories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_analysis import cell, write

import harness.bench.startup as startup
from harness.analysis.results import analyze
from harness.bench.startup import StartupProbe, startup_fields
from harness.report.render import write_reports
from implementations.api.app import RetryApp
from implementations.runtime.startup import DEFINITION, PROBE_TASK, probe_id


def reference_app(**options: Any) -> RetryApp:
    # Every attempt of every job is planned to fail: a probe must not see the plan.
    app = RetryApp("reference", cell_id="su", scenario="startup", label="reference",
                   faults=[{"kind": "fail_first", "k": 5}], options=options)
    app.task(name="work", max_retries=0)(lambda: None)
    return app


def test_a_probe_writes_only_its_probe_event_and_counts_as_no_job() -> None:
    app = reference_app()
    task = app.tasks[PROBE_TASK]
    app.backend.enqueue(task, (), {}, job_id=probe_id("su", 0), countdown=None)
    app.start_workers(1, 1)
    try:
        events: list[dict[str, Any]] = []
        for _ in range(10):  # up to 10 s, woken as soon as the probe reports
            events = events or app.runtime.sink.drain(block_ms=1000)
    finally:
        app.stop_workers()
    assert [(e["type"], e["state"], e["index"]) for e in events] == [("probe", "first", 0)]
    assert app.backend.native_terminal_count() == 0  # the backend's own count of the run's jobs
    assert app.backend.native_failures()["job_ids"] == []
    assert app.runtime.sink.state(probe_id("su", 0)) is None  # no terminal state: AsyncResult never sees it


def test_the_probe_phase_gives_every_thread_a_figure_and_leaves_no_probe_behind() -> None:
    app = reference_app()
    probe = StartupProbe(app, workers=3, concurrency=1)
    probe.seed()
    app.start_workers(3, 1)
    try:
        fields, drained = probe.run(lambda ms: app.runtime.sink.drain(block_ms=ms))
    finally:
        app.stop_workers()
    assert len(fields["startup_per_worker_s"]) == 3 and all(v > 0 for v in fields["startup_per_worker_s"])
    assert fields["startup_s"] == max(fields["startup_per_worker_s"]) and fields["startup_missing"] == []
    assert fields["probes_unfinished"] == 0 and fields["startup_definition"] == DEFINITION
    assert sorted(e["index"] for e in drained if e["state"] == "first") == [0, 1, 2]


def test_a_worker_that_never_completes_a_probe_has_null_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    app = reference_app()
    monkeypatch.setattr(startup, "SETTLE_S", 0.5)
    probe = StartupProbe(app, workers=1, concurrency=1, timeout_s=0.5)
    probe.seed()
    app.start_workers(1, 1)
    spawned = app.backend.spawned_ns()
    # A second worker the harness spawned that never takes anything off the queue
    monkeypatch.setattr(app.backend, "spawned_ns", lambda: {**spawned, 7: spawned[0]})
    try:
        fields, _ = probe.run(lambda ms: app.runtime.sink.drain(block_ms=ms))
    finally:
        app.stop_workers()
    assert fields["startup_per_worker_s"][0] > 0 and fields["startup_per_worker_s"][1] is None
    assert fields["startup_missing"] == [{"index": 7, "reason": "no probe job completed within 0.5 s"}]
    assert fields["startup_s"] is None  # the slowest worker is not known


def test_startup_fields_are_per_worker_in_index_order() -> None:
    spawned = {1: 1_000_000_000, 0: 2_000_000_000}
    first = {0: {"ts_ns": 2_500_000_000, "pid": 10}, 1: {"ts_ns": 1_250_000_000, "pid": 11}}
    fields = startup_fields(spawned, first, timeout_s=60)
    assert fields["startup_per_worker_s"] == [0.5, 0.25] and fields["startup_pids"] == [10, 11]
    assert fields["startup_s"] == 0.5


def test_results_and_report_show_median_max_and_workers_counted(tmp_path: Path) -> None:
    ready = {"type": "workers_ready", "startup_s": None, "startup_per_worker_s": [0.2, 0.4, None],
             "startup_definition": DEFINITION,
             "startup_missing": [{"index": 2, "reason": "no probe job completed within 60 s"}]}
    events = cell("c1", "rq")
    events.insert(1, {**ready, "cell_id": "c1", "backend": "rq", "scenario": events[0].get("scenario")})
    run_dir = write(tmp_path / "run", events)
    results = analyze(run_dir)
    stats = results["cells"][0]["startup"]
    assert (stats["median_s"], stats["max_s"], stats["workers"], stats["measured"]) == (pytest.approx(0.3), 0.4, 3, 2)
    assert json.loads((run_dir / "results.json").read_text())["cells"][0]["startup"]["missing"][0]["index"] == 2
    md, html = write_reports(run_dir, results)
    text = md.read_text()
    assert "## Start-up" in text and "| rq | 300.0 | 400.0 | ⚠ **2 of 3** | 1 |" in text
    assert "<h2>Start-up</h2>" in html.read_text()

"""Each backend, through the harness, on a real redis-server with real worker processes.

One run per backend covers three jobs of the lesson: a message that works, an empty one (ValueError,
never retried) and one that always raises ConnectionError (retries exhausted) — plus transient jobs
that fail twice and then succeed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.history import read_history
from harness.orchestrate.envs import parse_backend_spec
from harness.orchestrate.runner import RunPlan, execute
from harness.plan.scenarios import Scenario
from implementations.backends import ALL_BACKENDS

pytestmark = pytest.mark.integration

LESSON = Scenario("lesson-small", task="process_message", jobs=3, workers=1, concurrency=2, time_scale=0.02,
                  policy={"autoretry_for": ["ConnectionError"], "dont_autoretry_for": ["ValueError"],
                          "max_retries": 3, "intervals": [10, 30, 60]},
                  messages=("hello", "", "please retry"))
TRANSIENT = Scenario("transient-small", task="work", jobs=4, workers=2, concurrency=1, time_scale=0.5,
                     policy={"autoretry_for": ["ConnectionError"], "max_retries": 2, "intervals": [1]},
                     faults=({"kind": "fail_first", "k": 2},))
FIELDS = ("cell_id", "backend", "task", "job_id", "args", "exc_type", "exc_message", "traceback", "attempts",
          "enqueued_ns", "failed_ns", "worker")


@pytest.fixture(scope="module", params=ALL_BACKENDS)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str,
        backend_envs: Any) -> dict[str, Any]:
    backend = request.param
    out = tmp_path_factory.mktemp(f"results-{backend}")
    plan = RunPlan(backends=[parse_backend_spec(backend)], scenarios=[LESSON, TRANSIENT], redis_url=redis_url,
                   out=out, command=["pytest"])
    run_dir = execute(plan, log=lambda _m: None, progress_factory=lambda _c: (lambda _line: None))
    events = read_history(run_dir / "history.jsonl").events
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if "job_id" in e:
            by_job[e["job_id"]].append(e)
    return {"backend": backend, "dir": run_dir, "events": events, "jobs": by_job}


def job(run: dict[str, Any], scenario: str, index: int) -> list[dict[str, Any]]:
    for job_id, events in run["jobs"].items():
        if events[0]["scenario"] == scenario and job_id.endswith(f"-{index:06d}"):
            return events
    raise AssertionError(f"no job {index} of {scenario}")


def of(events: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]


def test_every_cell_completed(run: dict[str, Any]) -> None:
    ends = of(run["events"], "end")
    assert len(ends) == 2 and all(e["complete"] for e in ends), ends


def test_a_transient_error_is_retried_the_configured_number_of_times_then_succeeds(run: dict[str, Any]) -> None:
    for index in range(TRANSIENT.jobs):
        events = job(run, "transient-small", index)
        assert [a["outcome"] for a in of(events, "attempt")] == ["retry", "retry", "success"]
        assert of(events, "terminal")[0]["state"] == "success"
        assert not of(events, "failure_record")
        assert len(of(events, "callback", name="on_retry")) == 2


def test_a_value_error_is_not_retried_and_yields_one_complete_failure_record(run: dict[str, Any]) -> None:
    events = job(run, "lesson-small", 1)  # the empty message
    assert [a["outcome"] for a in of(events, "attempt")] == ["failure"]
    records = of(events, "failure_record")
    assert len(records) == 1
    record = records[0]
    missing = [f for f in FIELDS if record.get(f) in (None, "")]
    assert not missing, f"empty fields: {missing}"
    assert record["exc_type"] == "ValueError" and "ValueError: Empty message" in record["traceback"]
    assert len(of(events, "callback", name="on_failure")) == 1
    assert not of(events, "callback", name="on_retry")


def test_exhausted_retries_yield_one_record_one_on_failure_and_max_retries_on_retry(run: dict[str, Any]) -> None:
    events = job(run, "lesson-small", 2)  # "please retry"
    assert [a["attempt"] for a in of(events, "attempt")] == [1, 2, 3, 4]
    assert len(of(events, "failure_record")) == 1
    assert of(events, "failure_record")[0]["attempts"] == 4
    assert len(of(events, "callback", name="on_failure")) == 1
    assert len(of(events, "callback", name="on_retry")) == 3


def test_the_native_store_lists_exactly_the_failed_jobs(run: dict[str, Any]) -> None:
    lesson = [e for e in of(run["events"], "native") if e["scenario"] == "lesson-small"][0]
    failed = {job(run, "lesson-small", 1)[0]["job_id"], job(run, "lesson-small", 2)[0]["job_id"]}
    assert set(lesson["job_ids"]) == failed


def test_the_native_mechanism_did_the_retrying(run: dict[str, Any]) -> None:
    # Each attempt is a separate execution handed out by the library, and its own counters prove it.
    for index in range(TRANSIENT.jobs):
        starts = of(job(run, "transient-small", index), "attempt_start")
        natives = [s["native"] for s in starts]
        if run["backend"] == "rq":
            assert [n["retries_left"] for n in natives] == [2, 1, 0]  # RQ's Retry(max=2) counting down
            assert all(len(n["retry_intervals"]) == 2 for n in natives)
        elif run["backend"] == "arq":
            assert [n["job_try"] for n in natives] == [1, 2, 3]  # ARQ re-ran the job after arq.Retry
        elif run["backend"] == "saq":
            # SAQ's own run counter on the job it re-ran, and Job.retries counting runs (max_retries + 1)
            assert [(n["attempts"], n["retries"]) for n in natives] == [(1, 3), (2, 3), (3, 3)]
        elif run["backend"] == "celery":
            assert [n["retries"] for n in natives] == [0, 1, 2]  # new messages from Task.retry
            assert all(n["autoretry"] for n in natives)  # autoretry_for wrapped the task
        if run["backend"] != "reference":
            assert len({s["pid"] for s in starts} - {0}) >= 1
        assert len({s["started_ns"] for s in starts}) == 3


def test_failure_records_reach_the_json_lines_log(run: dict[str, Any]) -> None:
    log = Path(run["dir"]) / "failed_jobs.log"
    lines = log.read_text().splitlines()
    assert len(lines) == 2  # the empty message and the exhausted one

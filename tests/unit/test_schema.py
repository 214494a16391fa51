"""The one event schema: every kind has one constructor, every constructor makes the fields its kind lists, every
event round-trips through a history file, and the events a job records keep the keys (and order) the history
has always had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.analysis.history import HistoryError, read_history
from harness.bench.cell import HistoryWriter, Tally
from implementations.api.app import RetryApp
from implementations.recording import schema
from implementations.recording.events import HOST
from implementations.recording.jsonline import dumps_lines

IDENT = ["type", "cell_id", "backend", "scenario"]
ATTEMPT = ["job_id", "task", "attempt", "host", "pid", "started_ns"]


def recorded() -> tuple[RetryApp, list[dict[str, Any]]]:
    app = run_one()
    return app, list(app.runtime.sink.drain())


def run_one() -> RetryApp:
    # Given an in-process app whose task fails once with a retryable error, then succeeds
    app = RetryApp("reference", cell_id="shape", scenario="shapes", label="ref")
    calls: list[int] = []

    @app.task(autoretry_for=(ConnectionError,), max_retries=2, intervals=[0])
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("once")
        return x * 2

    @app.task(max_retries=0)
    def doomed(x: int) -> int:
        raise ValueError("never")

    runtime = app.runtime
    # When one job is enqueued and its two attempts run through the shared wrapper, as a worker runs them
    flaky.apply_async((21,), task_id="job-1", meta={"expected": {"state": "success"}})
    app.backend._heap.clear()  # type: ignore[attr-defined]  # the attempts run here, not in worker threads
    first = runtime.run_attempt(flaky, "job-1", 1, (21,), {}, native={"thread": True})
    runtime.fire_retry(flaky, "job-1", first.exc, first.attempt, (21,), {})
    second = runtime.run_attempt(flaky, "job-1", 2, (21,), {}, native={"thread": True})
    assert not first.ok and first.retry and second.ok
    # and a second job that fails for good (its terminal event is a dict, from the failure handler)
    doomed.apply_async((0,), task_id="job-2")
    app.backend._heap.clear()  # type: ignore[attr-defined]
    last = runtime.run_attempt(doomed, "job-2", 1, (0,), {}, native={"thread": True})
    runtime.fire_failure(doomed, "job-2", last.exc, last.tb, last.attempt, (0,), {})
    return app


def test_every_event_has_the_keys_it_always_had_in_order() -> None:
    _app, events = recorded()
    # Then each kind has its keys in the history's order, and the run's identity in every one
    assert [e["type"] for e in events][:7] == ["enqueue", "attempt_start", "attempt", "callback", "attempt_start",
                                              "attempt", "terminal"]
    enqueue, start, failed, callback, _start2, success, terminal = events[:7]
    assert list(enqueue) == [*IDENT, "job_id", "task", "ts_ns", "countdown", "expected"]
    assert list(start) == [*IDENT, *ATTEMPT, "fault", "native"]
    assert list(failed) == [*IDENT, *ATTEMPT, "finished_ns", "outcome", "exc_type", "exc_message", "fault",
                            "expected_delay", "native"]
    assert list(callback) == [*IDENT, "name", "job_id", "task", "attempt", "ts_ns"]
    assert list(success) == [*IDENT, *ATTEMPT, "finished_ns", "outcome", "fault", "native"]
    assert list(terminal) == [*IDENT, "job_id", "task", "state", "attempts", "ts_ns", "result"]
    assert all((e["cell_id"], e["backend"], e["scenario"]) == ("shape", "ref", "shapes") for e in events)


def test_each_event_holds_its_own_values_and_the_templates_stay_blank() -> None:
    app, events = recorded()
    _enqueue, start, failed, callback, start2, success, terminal = events[:7]
    assert (start["attempt"], start2["attempt"], start["host"], start["fault"]) == (1, 2, HOST, None)
    assert start is not start2 and start["started_ns"] <= failed["finished_ns"] <= start2["started_ns"]
    assert (failed["outcome"], failed["exc_type"], failed["exc_message"], failed["expected_delay"]) == (
        "retry", "ConnectionError", "once", 0.0)
    assert (callback["name"], callback["attempt"]) == ("on_retry", 1)
    assert (success["outcome"], success["attempt"], success["native"]) == ("success", 2, {"thread": True})
    assert (terminal["state"], terminal["attempts"], terminal["result"]) == ("success", 2, 42)


def test_the_driver_counts_and_writes_what_it_drains(tmp_path: Path) -> None:
    # Given both jobs recorded in-process, drained as a reference cell's driver drains them
    events = run_one().runtime.sink.drain()
    assert [e["type"] for e in events] == ["enqueue", "attempt_start", "attempt", "callback", "attempt_start",
                                          "attempt", "terminal", "enqueue", "attempt_start", "attempt",
                                          "failure_record", "callback", "terminal"]
    # When the driver's tally counts them and its history writes them
    tally = Tally(jobs=2)
    tally.count(events)
    history = HistoryWriter(str(tmp_path / "history.jsonl"))
    history.write(events)
    history.close()
    # Then the tally counts what the events say (one success, one failure for good, three attempts)
    assert (tally.terminal, tally.failed_ids, tally.attempts) == (2, {"job-2"}, 3)
    # and the file holds the events, byte for byte
    assert (tmp_path / "history.jsonl").read_bytes() == bytes(dumps_lines(events))


IDENTITY = {"cell_id": "cell-1", "backend": "rq", "scenario": "s"}
ONE_OF_EACH: dict[str, dict[str, Any]] = {
    "meta": schema.meta("run-1", environment={"python": "3.11"}, scenarios={"s": {}}, repeat=1, cells=1),
    "run": schema.run(IDENTITY, ts_ns=1, jobs=2, seed=3),
    "workers_ready": schema.workers_ready(IDENTITY, ts_ns=2, startup_s=0.5),
    "enqueue": schema.enqueue(IDENTITY, job_id="j", task="t", ts_ns=3, countdown=None, meta={"expected": {}}),
    "enqueue_error": schema.enqueue_error(IDENTITY, job_id="j", task="t", ts_ns=3, exc_type="EncodeError"),
    "attempt_start": schema.attempt_start(IDENTITY, job_id="j", task="t", attempt=1, host="h", pid=9,
                                          started_ns=4, fault=None, native={"retries_left": 3}),
    "attempt": schema.attempt(IDENTITY, job_id="j", task="t", attempt=1, host="h", pid=9, started_ns=4,
                              finished_ns=5, outcome="retry", exc_type="ConnectionError", exc_message="x",
                              fault="fail_first", native=None, expected_delay=1.0),
    "callback": schema.callback(IDENTITY, name="on_retry", job_id="j", task="t", attempt=1, ts_ns=6),
    "terminal": schema.terminal(IDENTITY, job_id="j", task="t", state="success", attempts=2, ts_ns=7, result=4),
    "failure_record": schema.failure_record({**IDENTITY, "job_id": "k", "task": "t", "exc_type": "ValueError",
                                             "exc_message": "no", "attempts": 1, "failed_ns": 8}),
    "schedule": schema.schedule(IDENTITY, job_id="j", attempt=1, due_ns=9, delay_s=1.0, source="rq:scheduled",
                                observed_ns=8, schedule="native", pid=9),
    "deferral": schema.deferral(IDENTITY, job_id="j", task="t", attempt=1, host="h", pid=9, started_ns=4,
                                delay=0.5),
    "requeue": schema.requeue(IDENTITY, job_id="k", requeued_as="k2", task="t", ts_ns=10),
    "worker": schema.worker(IDENTITY, event="start", host="h", pid=9, ts_ns=1),
    "probe": schema.probe(IDENTITY, probe_id="p", index=0, host="h", state="first", ts_ns=2),
    "broker": schema.broker(IDENTITY, event="restart", ts_ns=11, down_ns=10, up_ns=11),
    "native": schema.native(IDENTITY, store="FailedJobRegistry", job_ids=["k"]),
    "whereabouts": schema.whereabouts(IDENTITY, ts_ns=12, jobs={"j": []}, recovery={}),
    "end": schema.end(IDENTITY, ts_ns=13, complete=True, reason="complete"),
    "clock": schema.clock(IDENTITY, host="w1", pid=9, role="worker", phase="start", reference="broker TIME",
                          ts_ns=14, offset_ns=-5_000_000_000, uncertainty_ns=200_000),
    "network": schema.network(IDENTITY, host="w1", fault="partition", event="partition", ts_ns=15, link="down"),
}


def test_every_kind_has_a_constructor_and_round_trips_through_a_history_file(tmp_path: Path) -> None:
    # Given one event of every kind the schema lists, each made by its constructor
    assert set(ONE_OF_EACH) == set(schema.KINDS)
    for kind, event in ONE_OF_EACH.items():
        assert event["type"] == kind and schema.check(event) is None, kind
    # When they are written as a history and read back
    path = tmp_path / "history.jsonl"
    path.write_bytes(bytes(dumps_lines(list(ONE_OF_EACH.values()))))
    # Then every event comes back equal, and the history declares the schema's version
    assert read_history(path).events == list(ONE_OF_EACH.values())
    assert ONE_OF_EACH["meta"]["schema_version"] == schema.SCHEMA_VERSION


def test_a_constructor_refuses_an_event_without_a_field_its_kind_requires() -> None:
    with pytest.raises(schema.SchemaError):
        schema.failure_record({**IDENTITY, "job_id": "k"})  # no task, error, attempts, failed_ns
    assert schema.check({"type": "attempt", **IDENTITY, "job_id": "j"}) is not None
    assert schema.check({"type": "a-kind-from-a-newer-writer"}) is None  # a reader skips what it does not know


def test_a_history_from_a_newer_schema_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    newer = {**ONE_OF_EACH["meta"], "schema_version": schema.SCHEMA_VERSION + 1}
    path.write_bytes(bytes(dumps_lines([newer, ONE_OF_EACH["run"]])))
    with pytest.raises(HistoryError, match="newer than this retrybench reads"):
        read_history(path)


def test_an_enqueue_records_meta_as_it_was_when_the_job_was_enqueued() -> None:
    # Given a caller that reuses one meta dict for every job
    app = RetryApp("reference", cell_id="meta", scenario="shapes")

    @app.task()
    def noop() -> None:
        return None

    meta: dict[str, Any] = {}
    for i in range(3):
        meta["n"] = i
        noop.apply_async(task_id=f"job-{i}", meta=meta)
    # Then each enqueue event has the value its job was enqueued with
    app.close()
    events = [e for e in app.runtime.sink.drain() if e["type"] == "enqueue"]
    assert [e["n"] for e in events] == [0, 1, 2]

"""The events a job records, made from compact records by copying per-kind templates: the same keys, in the
same order, as the history has always had, no value carried over from one job to the next, and records
that the driver counts and writes as the events they stand for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.bench.cell import HistoryWriter, Tally
from implementations.api.app import RetryApp
from implementations.recording.events import HOST
from implementations.recording.jsonline import dumps_lines
from implementations.recording.shapes import Shape, Shapes, as_event, as_events, terminal_of, wrap

IDENT = ["type", "run_id", "backend", "scenario"]
ATTEMPT = ["job_id", "task", "attempt", "host", "pid", "started_ns"]


def recorded() -> tuple[RetryApp, list[dict[str, Any]]]:
    app = run_one()
    return app, list(app.runtime.sink.drain())


def run_one() -> RetryApp:
    # Given an in-process app whose task fails once with a retryable error, then succeeds
    app = RetryApp("reference", run_id="shape", scenario="shapes", label="ref")
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
    assert all((e["run_id"], e["backend"], e["scenario"]) == ("shape", "ref", "shapes") for e in events)


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
    # The templates a run copies from were never written to: the next job starts from blank fields
    shapes = app.runtime._shapes
    for shape in (shapes.enqueue, shapes.start, shapes.success, shapes.failed, shapes.terminal, shapes.on_retry):
        assert shape.template["job_id"] is None and shape.template["task"] is None


def test_the_driver_counts_and_writes_the_in_process_records_as_the_events_they_stand_for(tmp_path: Path) -> None:
    # Given both jobs recorded in-process, drained as records (as a reference cell's driver drains them)
    records = run_one().runtime.sink.drain_raw()  # type: ignore[attr-defined]
    assert all(isinstance(r, tuple) for r in records)
    events = as_events(records)
    assert [e["type"] for e in events] == ["enqueue", "attempt_start", "attempt", "callback", "attempt_start",
                                          "attempt", "terminal", "enqueue", "attempt_start", "attempt",
                                          "failure_record", "callback", "terminal"]
    # When the driver's tally counts the records, and its held history writes them
    by_record, by_event = Tally(jobs=2), Tally(jobs=2)
    by_record.count(records)
    by_event.count(events)
    history = HistoryWriter(str(tmp_path / "history.jsonl"), hold=100)
    history.write(records)
    history.close()
    # Then both count what the events say (one success, one failure for good, three attempts)
    assert (by_record.terminal, by_record.failed_ids, by_record.attempts) == (2, {"job-2"}, 3)
    assert (by_record.terminal_ids, by_record.failed_ids) == (by_event.terminal_ids, by_event.failed_ids)
    # and the file holds the events, byte for byte as if they had been dicts all along
    assert (tmp_path / "history.jsonl").read_bytes() == bytes(dumps_lines(events))


def test_a_record_made_an_event_gets_its_own_values_and_an_enqueues_extra_fields_last() -> None:
    shapes = Shapes({"run_id": "r", "backend": "b", "scenario": "s"}, "h")
    plain = shapes.enqueue.expand(("enqueue", shapes.enqueue, "j", "t", 7, None, None))
    extra = shapes.enqueue.expand(("enqueue", shapes.enqueue, "k", "t", 8, 1.5, {"expected": {"state": "x"}}))
    assert plain == {"type": "enqueue", "run_id": "r", "backend": "b", "scenario": "s", "job_id": "j", "task": "t",
                     "ts_ns": 7, "countdown": None}
    assert list(extra)[-1] == "expected" and (extra["job_id"], extra["countdown"]) == ("k", 1.5)
    assert as_event(plain) is plain and as_event(wrap(plain)) is plain
    assert terminal_of(("terminal", shapes.terminal, "j", "t", 1, 9, None)) == ("j", "success")
    assert terminal_of(wrap({"type": "terminal", "job_id": "j", "state": "failure"})) == ("j", "failure")


def test_a_record_of_the_wrong_length_or_a_field_the_template_lacks_is_refused() -> None:
    shapes = Shapes({"run_id": "r", "backend": "b", "scenario": "s"}, "h")
    with pytest.raises(ValueError):
        shapes.on_retry.expand(("callback", shapes.on_retry, "j", "t", 1, 2, "one too many"))
    with pytest.raises(ValueError):
        shapes.enqueue.expand(("enqueue", shapes.enqueue, "j", "t", 7, None))  # no slot for meta
    with pytest.raises(ValueError):
        Shape({"type": "x", "a": None}, ("a", "b"))  # "b" would land after the others


def test_an_enqueue_records_meta_as_it_was_when_the_job_was_enqueued() -> None:
    # Given a caller that reuses one meta dict for every job (the event is made later, in-process)
    app = RetryApp("reference", run_id="meta", scenario="shapes")

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

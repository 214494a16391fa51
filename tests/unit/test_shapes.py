"""The events a job records, made by copying per-kind templates: the same keys, in the same order, as
the history has always had, and no value carried over from one job to the next."""

from __future__ import annotations

from typing import Any

from implementations.app import RetryApp
from implementations.events import HOST

IDENT = ["type", "run_id", "backend", "scenario"]
ATTEMPT = ["job_id", "task", "attempt", "host", "pid", "started_ns"]


def recorded() -> tuple[RetryApp, list[dict[str, Any]]]:
    # Given an in-process app whose task fails once with a retryable error, then succeeds
    app = RetryApp("reference", run_id="shape", scenario="shapes", label="ref")
    calls: list[int] = []

    @app.task(autoretry_for=(ConnectionError,), max_retries=2, intervals=[0])
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("once")
        return x * 2

    runtime = app.runtime
    # When one job is enqueued and its two attempts run through the shared wrapper, as a worker runs them
    flaky.apply_async((21,), task_id="job-1", meta={"expected": {"state": "success"}})
    app.backend._heap.clear()  # type: ignore[attr-defined]  # the attempts run here, not in worker threads
    first = runtime.run_attempt(flaky, "job-1", 1, (21,), {}, native={"thread": True})
    runtime.fire_retry(flaky, "job-1", first.exc, first.attempt, (21,), {})
    second = runtime.run_attempt(flaky, "job-1", 2, (21,), {}, native={"thread": True})
    assert not first.ok and first.retry and second.ok
    return app, list(runtime.sink.drain())


def test_every_event_has_the_keys_it_always_had_in_order() -> None:
    _app, events = recorded()
    # Then each kind has its keys in the history's order, and the run's identity in every one
    assert [e["type"] for e in events] == ["enqueue", "attempt_start", "attempt", "callback", "attempt_start",
                                          "attempt", "terminal"]
    enqueue, start, failed, callback, _start2, success, terminal = events
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
    _enqueue, start, failed, callback, start2, success, terminal = events
    assert (start["attempt"], start2["attempt"], start["host"], start["fault"]) == (1, 2, HOST, None)
    assert start is not start2 and start["started_ns"] <= failed["finished_ns"] <= start2["started_ns"]
    assert (failed["outcome"], failed["exc_type"], failed["exc_message"], failed["expected_delay"]) == (
        "retry", "ConnectionError", "once", 0.0)
    assert (callback["name"], callback["attempt"]) == ("on_retry", 1)
    assert (success["outcome"], success["attempt"], success["native"]) == ("success", 2, {"thread": True})
    assert (terminal["state"], terminal["attempts"], terminal["result"]) == ("success", 2, 42)
    # The templates a run copies from were never written to: the next job starts from blank fields
    shapes = app.runtime._shapes
    for template in (shapes.enqueue, shapes.start, shapes.success, shapes.failed, shapes.terminal, shapes.on_retry):
        assert template["job_id"] is None and template["task"] is None

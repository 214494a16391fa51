"""The shared runtime's schedule and native-terminal events (docs/schedules.md), on the in-process sink: one
schema for every backend, the delay counted from when the failure was handed to the library, and native mode
leaving the delay to the library (the reference backend, which has none, keeps the plan)."""

from __future__ import annotations

from implementations.api.app import RetryApp

SCHEMA = ["type", "cell_id", "backend", "scenario", "job_id", "attempt", "due_ns", "delay_s", "source", "observed_ns",
          "schedule", "pid"]


def test_a_schedule_event_has_exactly_the_documented_fields() -> None:
    app = RetryApp("reference", cell_id="s", scenario="sched", schedule="native")
    runtime = app.runtime
    runtime.record_schedule("j1", 1, due_ns=5_000_000_000, source="rq:scheduled_registry", handed_ns=3_500_000_000)
    runtime.record_schedule("j1", 2, due_ns=None, source="celery:no_eta", delay_s=0.0)
    runtime.record_schedule("j1", 3, due_ns=None, source="arq:unavailable")
    first, second, third = list(runtime.sink.drain())
    assert list(first) == SCHEMA
    assert (first["attempt"], first["due_ns"], first["delay_s"], first["schedule"]) == (1, 5_000_000_000, 1.5, "native")
    assert (second["due_ns"], second["delay_s"], second["source"]) == (None, 0.0, "celery:no_eta")
    assert (third["due_ns"], third["delay_s"]) == (None, None)
    assert all(isinstance(e["observed_ns"], int) and e["pid"] > 0 for e in (first, second, third))


def test_a_native_terminal_names_its_source_and_writes_no_failure_record() -> None:
    app = RetryApp("reference", cell_id="s", scenario="sched", schedule="native")

    class JobExecutionFailed(RuntimeError):
        pass

    app.runtime.record_native_terminal("work", "j2", 3, JobExecutionFailed("max 3 retries exceeded"),
                                       source="arq:job_result")
    events = list(app.runtime.sink.drain())
    assert [e["type"] for e in events] == ["terminal"]
    term = events[0]
    assert (term["state"], term["attempts"], term["source"], term["schedule"]) == ("failure", 3, "arq:job_result",
                                                                                   "native")
    assert term["exc_type"].endswith("JobExecutionFailed") and term["exc_message"] == "max 3 retries exceeded"
    assert app.runtime.sink.failures == []  # type: ignore[attr-defined]  # no failure record: the finding


def test_native_mode_plans_no_delay_but_the_reference_backend_keeps_the_plan() -> None:
    for mode in ("native", "planned"):
        app = RetryApp("reference", cell_id="s", scenario="sched", schedule=mode)
        assert app.runtime.native is False  # reference: no library of its own to decide
    app = RetryApp("reference", cell_id="s", scenario="sched", schedule="native")
    app.runtime.native = True  # as on rq, arq and celery
    task = app.task(name="t", autoretry_for=["ConnectionError"], max_retries=2, intervals=[1])(lambda: None)
    outcome = app.runtime._failed(task, "j3", 1, ConnectionError("down"), None, 0)
    assert outcome.retry and outcome.delay is None  # the library computes it
    app.runtime.native = False
    outcome = app.runtime._failed(task, "j3", 1, ConnectionError("down"), None, 0)
    assert outcome.retry and outcome.delay == 1.0  # the plan's

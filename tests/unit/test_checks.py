"""Checkers and metrics over literal, hand-written histories with known answers.

Times in these histories are written in seconds from the run's start and turned into wall-clock ns by
the builders below, so every history reads as a small timeline.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.analysis.checks import (
    check_delivery,
    check_failure_log,
    check_retry_timing,
    check_throughput,
    is_retryable,
    lateness_values,
    percentile,
    summarize,
)
from harness.analysis.metrics import METRICS, format_value

T0 = 1_700_000_000_000_000_000  # an arbitrary wall-clock origin, in ns


def ns(seconds: float) -> int:
    return T0 + round(seconds * 1e9)


# -- builders: one line per event, fields spelled out --------------------------------------------------
def ev(type_: str, cell_id: str = "r1", **fields: Any) -> dict[str, Any]:
    return {"type": type_, "cell_id": cell_id, "backend": "reference", "scenario": "unit", **fields}


def header(*, max_retries: int = 3, tolerance_s: float = 0.002, **extra: Any) -> dict[str, Any]:
    policy = {"autoretry_for": ["ConnectionError"], "dont_autoretry_for": ["ValueError"],
              "max_retries": max_retries, "retry_backoff": False, "retry_backoff_max": 600,
              "retry_jitter": False, "default_retry_delay": 1.0, "intervals": None, "time_scale": 1.0}
    return ev("run", ts_ns=ns(0), repeat=0, policy=policy, faults=[], seed=42, time_scale=1.0, jobs=1,
              workers=1, concurrency=1, tolerance_s=tolerance_s, deadline_s=60.0, **extra)


def enqueue(job: str, at: float, expected: dict[str, Any] | None = None) -> dict[str, Any]:
    return ev("enqueue", job_id=job, task="work", ts_ns=ns(at), countdown=None, expected=expected)


def start(job: str, n: int, at: float) -> dict[str, Any]:
    return ev("attempt_start", job_id=job, task="work", attempt=n, host="h", pid=1, started_ns=ns(at),
              fault=None, native={})


def attempt(job: str, n: int, at: float, until: float, outcome: str, exc: str | None = None,
            delay: float | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"exc_type": exc, "exc_message": f"{exc} raised"} if exc else {}
    return ev("attempt", job_id=job, task="work", attempt=n, host="h", pid=1, started_ns=ns(at),
              finished_ns=ns(until), outcome=outcome, fault=None, expected_delay=delay, native={}, **fields)


def callback(name: str, job: str, n: int, at: float) -> dict[str, Any]:
    return ev("callback", name=name, job_id=job, task="work", attempt=n, ts_ns=ns(at))


def terminal(job: str, state: str, attempts: int, at: float) -> dict[str, Any]:
    return ev("terminal", job_id=job, task="work", state=state, attempts=attempts, ts_ns=ns(at))


def record(job: str, attempts: int, at: float, **override: Any) -> dict[str, Any]:
    fields = {"task": "work", "job_id": job, "args": [], "kwargs": {}, "exc_type": "ConnectionError",
              "exc_message": "down", "traceback": "Traceback ...", "attempts": attempts,
              "enqueued_ns": ns(0), "failed_ns": ns(at), "worker": "h:1"}
    return ev("failure_record", **{**fields, **override})


def native(*job_ids: str) -> dict[str, Any]:
    return ev("native", store="reference failed list", job_ids=list(job_ids))


def end(complete: bool = True, reason: str = "complete") -> dict[str, Any]:
    return ev("end", ts_ns=ns(100), complete=complete, reason=reason)


def one_retry_then_success(second_start: float) -> list[dict[str, Any]]:
    """j1 fails at t=1.0 asking for a 1 s delay; its second attempt starts at ``second_start``."""
    return [
        header(),
        enqueue("j1", 0.0, expected={"state": "success", "attempts": 2, "delays": [1.0]}),
        start("j1", 1, 0.5),
        attempt("j1", 1, 0.5, 1.0, "retry", "ConnectionError", delay=1.0),
        callback("on_retry", "j1", 1, 1.0),
        start("j1", 2, second_start),
        attempt("j1", 2, second_start, second_start + 0.1, "success"),
        terminal("j1", "success", 2, second_start + 0.1),
        native(),
        end(),
    ]


def failed_for_good(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """j1 raises ConnectionError twice with max_retries=1: a terminal failure (records added by caller)."""
    return [
        header(max_retries=1),
        enqueue("j1", 0.0, expected={"state": "failure", "attempts": 2, "delays": [1.0]}),
        start("j1", 1, 0.1),
        attempt("j1", 1, 0.1, 0.2, "retry", "ConnectionError", delay=1.0),
        callback("on_retry", "j1", 1, 0.2),
        start("j1", 2, 1.2),
        attempt("j1", 2, 1.2, 1.3, "failure", "ConnectionError"),
        *extra,
        terminal("j1", "failure", 2, 1.3),
        end(),
    ]


# -- retry timing ------------------------------------------------------------------------------------
def test_a_retry_10ms_late_has_lateness_10ms_and_is_valid() -> None:
    # Given a 1 s delay after the attempt that ended at t=1.0, when attempt 2 starts at t=2.010
    result = check_retry_timing(one_retry_then_success(second_start=2.010))
    # Then lateness is +10 ms, nothing ran early, and the verdict is valid
    assert result["retries_measured"] == 1
    assert result["lateness"] == pytest.approx([0.010], abs=1e-9)
    assert result["lateness_median"] == pytest.approx(0.010, abs=1e-9)
    assert result["median_by_retry"] == {"1": pytest.approx(0.010, abs=1e-9)}
    assert result["early_retries"] == 0 and result["valid"] is True


def test_a_retry_that_ran_early_is_a_violation() -> None:
    # When attempt 2 starts at t=1.5, half a second before its 1 s delay is up
    result = check_retry_timing(one_retry_then_success(second_start=1.5))
    assert result["lateness_min"] == pytest.approx(-0.5, abs=1e-9)
    assert result["early_retries"] == 1 and result["valid"] is False
    assert "j1" in result["examples"][0]


def test_early_by_less_than_the_tolerance_is_allowed_unless_the_tolerance_is_zero() -> None:
    history = one_retry_then_success(second_start=1.999)  # 1 ms early; the header allows 2 ms
    assert check_retry_timing(history)["valid"] is True
    assert check_retry_timing(history, tolerance_s=0.0)["early_retries"] == 1


def test_lateness_falls_back_to_the_plan_when_the_attempt_has_no_delay() -> None:
    history = one_retry_then_success(second_start=2.25)
    history[3] = attempt("j1", 1, 0.5, 1.0, "retry", "ConnectionError", delay=None)
    assert lateness_values(history) == pytest.approx([0.25], abs=1e-9)


def test_a_retry_with_no_next_attempt_is_unmeasured_not_wrong() -> None:
    history = [header(), enqueue("j1", 0.0), start("j1", 1, 0.1),
               attempt("j1", 1, 0.1, 0.2, "retry", "ConnectionError", delay=1.0), end()]
    result = check_retry_timing(history)
    assert (result["retries"], result["retries_measured"], result["unmeasured"]) == (1, 0, 1)
    assert result["lateness_median"] is None and result["valid"] is True


# -- throughput ----------------------------------------------------------------------------------------
def test_throughput_counts_from_first_enqueue_to_last_terminal() -> None:
    history = [
        header(), enqueue("a", 0.0), enqueue("b", 0.0),
        start("a", 1, 0.1), attempt("a", 1, 0.1, 1.0, "success"), terminal("a", "success", 1, 1.0),
        start("b", 1, 0.1), attempt("b", 1, 0.1, 2.0, "success"), terminal("b", "success", 1, 2.0),
        end(),
    ]
    result = check_throughput(history)
    assert result["duration_s"] == pytest.approx(2.0)
    assert result["throughput_jobs_s"] == pytest.approx(1.0)
    assert result["throughput_attempts_s"] == pytest.approx(1.0)
    assert result["latency_p50"] == pytest.approx(1.5) and result["latency_max"] == pytest.approx(2.0)
    assert result["valid"] is True


def test_throughput_of_a_run_without_jobs_is_not_valid() -> None:
    assert check_throughput([header(), end()])["valid"] is False


# -- failure log -----------------------------------------------------------------------------------------
def test_one_complete_record_per_failure_agreeing_with_callbacks_and_native_store_is_valid() -> None:
    history = failed_for_good(record("j1", 2, 1.3), callback("on_failure", "j1", 2, 1.3), native("j1"))
    result = check_failure_log(history)
    assert result["failure_log_completeness"] == 100.0
    assert result["missing_records"] == result["duplicate_records"] == result["native_mismatch"] == 0
    assert result["valid"] is True, result["examples"]


def test_a_terminal_failure_without_a_record_is_missing() -> None:
    result = check_failure_log(failed_for_good(callback("on_failure", "j1", 2, 1.3)))
    assert result["missing_records"] == 1 and result["valid"] is False
    assert result["failure_log_completeness"] is None  # no record to measure


def test_two_records_for_one_failure_are_a_duplicate() -> None:
    history = failed_for_good(record("j1", 2, 1.3), record("j1", 2, 1.3), callback("on_failure", "j1", 2, 1.3))
    result = check_failure_log(history)
    assert result["duplicate_records"] == 1 and result["missing_records"] == 0 and result["valid"] is False


def test_a_record_for_a_job_that_succeeded_is_unexpected() -> None:
    history = one_retry_then_success(second_start=2.0)
    history.insert(-1, record("j1", 2, 2.1))
    result = check_failure_log(history)
    assert result["unexpected_records"] == 1 and result["valid"] is False


def test_empty_fields_lower_completeness_but_empty_args_count_as_present() -> None:
    history = failed_for_good(record("j1", 2, 1.3, traceback="", enqueued_ns=None),
                              callback("on_failure", "j1", 2, 1.3))
    result = check_failure_log(history)
    assert result["field_completeness"]["args"] == 100.0
    assert result["field_completeness"]["traceback"] == 0.0
    assert result["failure_log_completeness"] == pytest.approx(100 * 10 / 12)
    assert result["valid"] is False


def test_native_store_disagreeing_with_the_failure_log_is_a_mismatch() -> None:
    # Given the backend's failed store lists j9 but not j1, which has a failure record
    history = failed_for_good(record("j1", 2, 1.3), callback("on_failure", "j1", 2, 1.3), native("j9"))
    result = check_failure_log(history)
    assert (result["native_only"], result["log_only"], result["native_mismatch"]) == (1, 1, 2)
    assert result["valid"] is False


def test_on_failure_must_run_exactly_once_and_record_attempts_must_match() -> None:
    history = failed_for_good(record("j1", 3, 1.3), callback("on_failure", "j1", 2, 1.3),
                              callback("on_failure", "j1", 2, 1.3))
    result = check_failure_log(history)
    assert result["on_failure_mismatch"] == 1 and result["on_retry_mismatch"] == 0
    assert result["record_attempts_mismatch"] == 1 and result["valid"] is False


# -- delivery ----------------------------------------------------------------------------------------------
def test_an_attempt_that_ran_twice_to_completion_is_a_duplicate_execution() -> None:
    history = [
        header(), enqueue("j1", 0.0),
        start("j1", 1, 0.1), start("j1", 1, 0.2),  # e.g. a redelivered message ran the same attempt again
        attempt("j1", 1, 0.1, 0.3, "success"), attempt("j1", 1, 0.2, 0.4, "success"),
        terminal("j1", "success", 1, 0.3), end(),
    ]
    result = check_delivery(history)
    assert result["duplicate_executions"] == 1 and result["valid"] is False


def test_rerunning_an_attempt_that_crashed_is_a_redelivery_not_a_duplicate() -> None:
    history = [
        header(), enqueue("j1", 0.0),
        start("j1", 1, 0.1),  # the worker was killed: no "attempt" event follows
        start("j1", 1, 5.0), attempt("j1", 1, 5.0, 5.1, "success"), terminal("j1", "success", 1, 5.1),
        end(),
    ]
    result = check_delivery(history)
    assert result["duplicate_executions"] == 0 and result["redelivered_attempts"] == 1
    assert result["valid"] is True


def test_an_attempt_after_the_job_succeeded_is_a_duplicate_execution() -> None:
    history = [
        header(), enqueue("j1", 0.0),
        start("j1", 1, 0.1), attempt("j1", 1, 0.1, 0.2, "success"), terminal("j1", "success", 1, 0.2),
        start("j1", 2, 1.0), attempt("j1", 2, 1.0, 1.1, "success"), end(),
    ]
    assert check_delivery(history)["duplicate_executions"] == 1


def test_a_job_never_terminal_is_unrecovered_not_lost_while_the_stores_were_not_searched() -> None:
    # Given a job that started once and never ended, and no search of the library's stores
    history = [header(), enqueue("j1", 0.0), start("j1", 1, 0.1), end(False, "deadline: 1 job(s) not terminal")]
    result = check_delivery(history)
    # Then the deadline alone does not make it lost
    assert (result["lost_jobs"], result["unrecovered_jobs"], result["valid"]) == (0, 1, False)
    assert result["unrecovered_in"] == {"stores not searched": 1}


def test_a_job_in_none_of_the_library_stores_is_lost() -> None:
    history = [header(), enqueue("j1", 0.0), start("j1", 1, 0.1),
               ev("whereabouts", jobs={"j1": []}, recovery={}), end(False, "deadline: 1 job(s) not terminal")]
    result = check_delivery(history)
    assert (result["lost_jobs"], result["unrecovered_jobs"], result["valid"]) == (1, 0, False)


def test_a_job_still_in_a_store_is_unrecovered_with_the_store_and_when_it_would_come_back() -> None:
    # Given ARQ's crash: the job's in-progress key outlives the deadline
    hint = "when that key expires (job_timeout + 10 s after the try began): within 290 s of the end of the run"
    history = [header(), enqueue("j1", 0.0), start("j1", 1, 0.1),
               ev("whereabouts", jobs={"j1": ["arq queue", "arq in-progress key"]},
                  recovery={"arq in-progress key": hint, "rq queue": "unused"}),
               end(False, "deadline: 1 job(s) not terminal")]
    result = check_delivery(history)
    assert (result["lost_jobs"], result["unrecovered_jobs"]) == (0, 1)
    assert result["unrecovered_in"] == {"arq queue": 1, "arq in-progress key": 1}
    assert result["recovery_hints"] == {"arq in-progress key": hint}


def test_a_job_in_the_library_failed_store_is_failed_natively_not_lost() -> None:
    # Given Celery's default crash: the task is FAILURE (WorkerLostError) in Celery's store, no on_failure ran
    history = [header(), enqueue("j1", 0.0), start("j1", 1, 0.1),
               ev("native", store="celery result backend (state FAILURE)", job_ids=["j1"]),
               ev("whereabouts", jobs={"j1": []}, recovery={}), end()]
    result = check_delivery(history)
    assert (result["lost_jobs"], result["unrecovered_jobs"], result["failed_natively"]) == (0, 0, 1)
    assert result["valid"] is True  # delivery accounts for it; the failure log is what it breaks
    assert check_failure_log(history)["valid"] is False


def test_in_an_interrupted_run_unfinished_jobs_are_not_counted_as_lost() -> None:
    history = [header(), enqueue("j1", 0.0), start("j1", 1, 0.1)]  # no end event
    result = check_delivery(history)
    assert (result["partial"], result["lost_jobs"], result["unfinished"]) == (True, 0, 1)


def test_a_job_terminal_only_after_the_deadline_is_late_not_lost() -> None:
    history = one_retry_then_success(second_start=2.0)
    result = check_delivery(history, deadline_ns=ns(1.5))
    assert (result["lost_jobs"], result["late_jobs"], result["valid"]) == (0, 1, False)


def test_a_non_retryable_error_that_was_retried_is_a_violation() -> None:
    # Given dont_autoretry_for=["ValueError"], when attempt 1 raised ValueError and attempt 2 still ran
    history = [
        header(), enqueue("j1", 0.0),
        start("j1", 1, 0.1), attempt("j1", 1, 0.1, 0.2, "retry", "ValueError", delay=1.0),
        start("j1", 2, 1.2), attempt("j1", 2, 1.2, 1.3, "success"), terminal("j1", "success", 2, 1.3),
        end(),
    ]
    result = check_delivery(history)
    assert result["non_retryable_retried"] == 1 and result["valid"] is False


def test_more_attempts_than_max_retries_plus_one_is_an_over_retry() -> None:
    history = [
        header(max_retries=1), enqueue("j1", 0.0),
        attempt("j1", 1, 0.1, 0.2, "retry", "ConnectionError", delay=1.0),
        attempt("j1", 2, 1.2, 1.3, "retry", "ConnectionError", delay=1.0),
        attempt("j1", 3, 2.3, 2.4, "failure", "ConnectionError"),
        terminal("j1", "failure", 3, 2.4), end(),
    ]
    result = check_delivery(history)
    assert result["over_retries"] == 1 and result["under_retries"] == 0 and result["valid"] is False


def test_giving_up_on_a_retryable_error_with_retries_left_is_an_under_retry() -> None:
    history = [
        header(max_retries=3), enqueue("j1", 0.0),
        attempt("j1", 1, 0.1, 0.2, "failure", "ConnectionError"), terminal("j1", "failure", 1, 0.2), end(),
    ]
    assert check_delivery(history)["under_retries"] == 1


def test_a_result_other_than_the_plan_is_a_plan_mismatch_with_an_example() -> None:
    history = [
        header(), enqueue("j1", 0.0, expected={"state": "success", "attempts": 1, "delays": []}),
        attempt("j1", 1, 0.1, 0.2, "failure", "ValueError"), terminal("j1", "failure", 1, 0.2), end(),
    ]
    result = check_delivery(history)
    assert result["plan_mismatches"] == 1
    assert result["plan_mismatch_examples"] == [
        "j1: plan says success after 1 attempt(s), history shows failure after 1"]


def test_policy_exception_names_match_builtin_subclasses_and_dont_autoretry_wins() -> None:
    policy = {"autoretry_for": ["OSError"], "dont_autoretry_for": ["ConnectionResetError"]}
    assert is_retryable("ConnectionRefusedError", policy) is True
    assert is_retryable("ConnectionResetError", policy) is False
    assert is_retryable("ValueError", policy) is False
    assert is_retryable("myapp.errors.Flaky", {"autoretry_for": ["myapp.errors.Flaky"]}) is True


# -- percentiles and summary --------------------------------------------------------------------------
def test_percentiles_interpolate_linearly_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def test_summarize_a_clean_run_is_valid_and_names_only_registered_metrics() -> None:
    history = one_retry_then_success(second_start=2.010) + [ev("workers_ready", startup_s=0.1),
                                                             ev("from_the_future", x=1)]
    summary = summarize(history)
    assert list(summary["metrics"]) == list(METRICS)  # every registered metric, in registry order
    assert summary["metrics"]["valid"] is True, summary["checks"]
    assert summary["metrics"]["lateness_median"] == pytest.approx(0.010, abs=1e-9)
    assert summary["run"] == {"cell_id": "r1", "backend": "reference", "scenario": "unit", "repeat": 0,
                              "complete": True, "partial": False, "reason": "complete"}
    assert "lateness" not in summary["checks"]["timing"]


def test_summarize_refuses_events_of_two_runs() -> None:
    with pytest.raises(ValueError, match="several runs"):
        summarize([header(), ev("enqueue", cell_id="r2", job_id="x", ts_ns=ns(0))])


def test_metric_values_are_formatted_from_the_registry() -> None:
    assert format_value("lateness_median", 0.0123) == "12.3"
    assert format_value("lateness_median", 0.0123, with_unit=True) == "12.3 ms"
    assert format_value("failure_log_completeness", 100.0, with_unit=True) == "100.0%"
    assert format_value("lost_jobs", 3) == "3" and format_value("lost_jobs", None) == "-"
    assert format_value("valid", False) == "no"

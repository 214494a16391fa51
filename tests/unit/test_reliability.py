"""The reliability checker over literal histories: crashes, time-outs, poison payloads, a broker restart."""

from __future__ import annotations

from typing import Any

from test_checks import attempt, enqueue, ev, header, ns, start

from harness.analysis.crashes import check_reliability
from harness.analysis.history import index_run


def terminal(job: str, at: float, state: str = "success", attempts: int = 1) -> dict[str, Any]:
    return ev("terminal", job_id=job, task="work", state=state, attempts=attempts, ts_ns=ns(at))


def end() -> dict[str, Any]:
    return ev("end", ts_ns=ns(100), complete=True, reason="complete", driver_peak_rss_mb=42.0)


def reliability(*events: dict[str, Any]) -> dict[str, Any]:
    return check_reliability(index_run([header(), *events, end()]))


def test_a_job_whose_worker_died_and_that_ran_again_is_recovered_with_the_time_it_took() -> None:
    # Given attempt 1 of job a started at 1 s and never finished, and attempt 2 started at 4 s and succeeded
    r = reliability(enqueue("a", 0), start("a", 1, 1), start("a", 2, 4), attempt("a", 2, 4, 4.1, "success"),
                    terminal("a", 4.1, attempts=2))
    # Then one attempt was interrupted, the job is recovered and recovery took 3 s
    assert (r["interrupted_attempts"], r["crash_hit_jobs"], r["recovered_jobs"], r["lost_after_crash"]) == (1, 1, 1, 0)
    assert r["recovery_median_s"] == r["recovery_max_s"] == 3.0
    assert r["duplicated_after_crash"] == 0 and r["driver_peak_rss_mb"] == 42.0


def test_a_redelivered_attempt_counts_the_earlier_copy_as_interrupted() -> None:
    # Given attempt 1 started twice (acks_late redelivery after the first copy's worker died)
    r = reliability(enqueue("a", 0), start("a", 1, 1), start("a", 1, 2.5), attempt("a", 1, 2.5, 2.6, "success"),
                    terminal("a", 2.6))
    assert r["interrupted_attempts"] == 1 and r["recovered_jobs"] == 1
    assert r["recovery_median_s"] == 1.5


def test_a_job_that_never_ran_again_is_lost_unless_the_library_failed_it() -> None:
    lost = reliability(enqueue("a", 0), start("a", 1, 1), ev("whereabouts", jobs={"a": []}))
    assert lost["lost_after_crash"] == 1 and lost["recovered_jobs"] == 0 and lost["recovery_max_s"] is None
    assert lost["examples"]
    # Still in one of the library's stores, or the stores were never searched: unrecovered, not lost
    held = reliability(enqueue("a", 0), start("a", 1, 1), ev("whereabouts", jobs={"a": ["rq StartedJobRegistry"]}))
    unsearched = reliability(enqueue("a", 0), start("a", 1, 1))
    assert [(r["lost_after_crash"], r["unrecovered_after_crash"]) for r in (held, unsearched)] == [(0, 1), (0, 1)]
    # When the library's own store lists it as failed (Celery's WorkerLostError), it is not lost
    native = reliability(enqueue("a", 0), start("a", 1, 1), ev("native", job_ids=["a"]))
    assert native["lost_after_crash"] == 0 and native["failed_natively_after_crash"] == 1


def test_a_job_that_completed_an_attempt_twice_after_a_crash_is_a_duplicate() -> None:
    # Given attempt 1 of b was interrupted, attempt 2 succeeded, and attempt 3 ran anyway (the success was
    # not acknowledged before its worker died, so the library ran the job again)
    r = reliability(enqueue("b", 0), start("b", 1, 1), start("b", 2, 3), attempt("b", 2, 3, 3.1, "success"),
                    terminal("b", 3.1), start("b", 3, 9), attempt("b", 3, 9, 9.1, "success"), terminal("b", 9.1))
    assert r["duplicated_after_crash"] == 1 and r["recovered_jobs"] == 1


def test_failure_after_a_crash_says_whether_on_failure_ran_and_what_the_record_says() -> None:
    record = ev("failure_record", job_id="a", task="work", exc_type="WorkerLostError",
                exc_message="Worker exited prematurely", attempts=2)
    r = reliability(enqueue("a", 0), start("a", 1, 1), start("a", 2, 3),
                    attempt("a", 2, 3, 3.1, "failure", exc="WorkerLostError"), terminal("a", 3.1, "failure", 2),
                    ev("callback", name="on_failure", job_id="a", attempt=2, ts_ns=ns(3.1)), record)
    assert r["on_failure_after_crash"] == 1
    assert r["crash_failure_says"] == "WorkerLostError: Worker exited prematurely"


def test_time_outs_are_counted_and_so_are_the_retried_ones() -> None:
    timed_out = attempt("a", 1, 1, 3, "retry", exc="TimeoutError", delay=1.0)
    timed_out["fault"] = "timeout"
    given_up = attempt("b", 1, 1, 3, "failure", exc="TimeoutError")
    given_up["fault"] = "timeout"
    r = reliability(enqueue("a", 0), start("a", 1, 1), timed_out, enqueue("b", 0), start("b", 1, 1), given_up)
    assert (r["timed_out_attempts"], r["timeouts_retried"]) == (2, 1)
    assert r["interrupted_attempts"] == 0  # a time-out the library stopped is a finished attempt


def test_poison_jobs_are_accounted_for_by_where_they_ended() -> None:
    poison = {"state": "poison"}
    refused = ev("enqueue_error", job_id="p1", task="work", ts_ns=ns(0), exc_type="EncodeError",
                 exc_message="not JSON serializable", expected=poison)
    r = reliability(refused, enqueue("p2", 0, poison), ev("native", job_ids=["p2"]),
                    enqueue("p3", 0, poison), ev("failure_record", job_id="p3", task="work", exc_type="PoisonPayload"),
                    enqueue("p4", 0, poison), enqueue("ok", 0), start("ok", 1, 1), attempt("ok", 1, 1, 1.1, "success"))
    assert r["poison_jobs"] == 4
    assert (r["poison_refused"], r["poison_failed_natively"], r["poison_recorded"], r["poison_unaccounted"]) == \
        (1, 1, 1, 1)
    assert r["interrupted_attempts"] == 0  # a poison job that never started is not a crash


def test_a_broker_restart_gives_its_downtime_and_the_time_until_work_finished_again() -> None:
    restart = ev("broker", event="restart", down_ns=ns(2), up_ns=ns(3), ts_ns=ns(3), appendonly=True)
    r = reliability(enqueue("a", 0), start("a", 1, 1), attempt("a", 1, 1, 1.5, "success"), restart,
                    enqueue("b", 2.5), start("b", 1, 3.2), attempt("b", 1, 3.2, 3.5, "success"))
    assert r["broker_down_s"] == 1.0
    assert abs(r["broker_recovery_s"] - 0.5) < 1e-9
    assert reliability(enqueue("a", 0))["broker_down_s"] is None

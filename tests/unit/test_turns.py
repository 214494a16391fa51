"""A retry's turn in the queue (harness/analysis/turns.py) and the timing contract counted from it
(``late_from = "turn"``, the backlog presets), on literal histories."""

from __future__ import annotations

import random
from typing import Any

import pytest

from harness.analysis.causes import causes_for
from harness.analysis.checks import check_retry_timing, summarize
from harness.analysis.turns import turn_waits
from harness.analysis.verdicts import cell_verdict
from tests.unit.test_checks import attempt, callback, end, enqueue, header, start, terminal

BUDGET = 5.0


def backlog(*, retry_start: float, older_starts: list[float]) -> list[dict[str, Any]]:
    """j0 fails at t=1.0 asking for no delay; jobs o0, o1, … were enqueued at t=0 (before it was due) and start
    at ``older_starts``; j0's second attempt starts at ``retry_start``."""
    events = [header(late_budget_s=BUDGET, late_from="turn"), enqueue("j0", 0.0)]
    events += [enqueue(f"o{i}", 0.0) for i in range(len(older_starts))]
    events += [start("j0", 1, 0.5), attempt("j0", 1, 0.5, 1.0, "retry", "ConnectionError", delay=0.0),
               callback("on_retry", "j0", 1, 1.0)]
    for i, at in enumerate(older_starts):
        events += [start(f"o{i}", 1, at), attempt(f"o{i}", 1, at, at + 0.01, "success"),
                   terminal(f"o{i}", "success", 1, at + 0.01)]
    events += [start("j0", 2, retry_start), attempt("j0", 2, retry_start, retry_start + 0.01, "success"),
               terminal("j0", "success", 2, retry_start + 0.01), end()]
    return events


def brute_force(retries: list[tuple[int, int]], others: list[tuple[int, int]]) -> list[float]:
    every = retries + others
    return [max([0] + [s - d for (dd, s) in every if dd < d and s < start]) / 1e9 for d, start in retries]


def test_a_retry_behind_older_work_waits_until_the_last_of_it_started() -> None:
    # Given a retry due at 10 and older work due at 0..5 that started up to 40 (and after the retry: 60)
    retries = [(10, 50)]
    others = [(0, 20), (5, 40), (3, 60), (12, 45)]  # (12, 45) is newer: it does not hold the retry back
    # Then the retry's turn came at 40: it waited 30 ns behind older work
    assert turn_waits(retries, others) == [pytest.approx(30 / 1e9)]


def test_nothing_older_started_after_the_retry_was_due_means_no_wait() -> None:
    assert turn_waits([(10, 50)], [(0, 5), (20, 30)]) == [0.0]


def test_turn_waits_agree_with_the_definition_on_random_histories() -> None:
    rng = random.Random(7)
    for _ in range(50):
        retries = [(rng.randrange(100), rng.randrange(200)) for _ in range(rng.randrange(1, 15))]
        others = [(rng.randrange(100), rng.randrange(200)) for _ in range(rng.randrange(0, 15))]
        assert turn_waits(retries, others) == pytest.approx(brute_force(retries, others))


def test_a_retry_that_waited_its_turn_behind_a_backlog_is_on_time_and_the_wait_is_said() -> None:
    # Given a retry due at 1.0 behind 3 older jobs, the last of which started at 20.0
    events = backlog(retry_start=20.1, older_starts=[5.0, 12.0, 20.0])
    # When the timing contract counts from the retry's turn
    t = check_retry_timing(events)
    # Then the retry is 19.1 s late from its delay but on time from its turn
    assert t["lateness_max"] == pytest.approx(19.1)
    assert (t["late_retries"], t["late_behind_older"], t["valid"]) == (0, 1, True)
    assert t["turn_wait_max_s"] == pytest.approx(19.0)
    verdict = cell_verdict({"backend": "rq", "checks": summarize(events)["checks"]})
    assert verdict["status"] == "pass"
    assert "1 waited behind older jobs, up to 19.0 s" in verdict["contracts"]["timing"]["reason"]


def test_a_retry_held_past_its_turn_while_the_queue_was_idle_is_late() -> None:
    # Given the older jobs had all started by 2.0 and the retry started only at 12.0
    events = backlog(retry_start=12.0, older_starts=[1.5, 2.0])
    t = check_retry_timing(events)
    # Then 10 s after its turn (2.0) is past the 5 s budget: a failure, measured from the turn
    assert (t["late_retries"], t["late_behind_older"], t["valid"]) == (1, 0, False)
    assert t["max_late_s"] == pytest.approx(10.0)
    reason = cell_verdict({"backend": "taskiq", "checks": summarize(events)["checks"]})["contracts"]["timing"]["reason"]
    assert "ran up to 10.0 s late past their turn in the queue (budget 5.0 s)" in reason


def test_counted_from_the_delay_the_same_wait_is_late() -> None:
    # Given the same backlog, but the scenario counts lateness from the delay (the default)
    events = backlog(retry_start=20.1, older_starts=[5.0, 12.0, 20.0])
    events[0] = header(late_budget_s=BUDGET)
    t = check_retry_timing(events)
    # Then the 19.1 s wait fails, and no turn is worked out
    assert (t["late_retries"], t["late_no_delay"], t["late_behind_older"]) == (1, 1, 0)
    assert t["turn_wait_max_s"] is None and t["late_from"] == "due"


def test_rq_s_late_retry_with_no_delay_is_put_down_to_the_back_of_the_queue_not_its_scheduler() -> None:
    events = backlog(retry_start=20.1, older_starts=[5.0, 12.0, 20.0])
    events[0] = header(late_budget_s=BUDGET)
    causes = causes_for("rq", summarize(events)["checks"], "timing")
    assert len(causes) == 1 and causes[0].startswith("RQ puts a retry with no delay at the back of the queue")
    # … while a late retry that asked for a delay goes through RQ's scheduler
    events[4] = attempt("j0", 1, 0.5, 1.0, "retry", "ConnectionError", delay=1.0)
    assert [c.split(":")[0] for c in causes_for("rq", summarize(events)["checks"], "timing")] == [
        "RQ's scheduler moves due jobs to the queue on a once-a-second tick"]

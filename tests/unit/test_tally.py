"""The driver's tally: when a run is over, counted from literal batches of events."""

from __future__ import annotations

from harness.bench.cell import Tally


def test_each_job_ends_once_however_often_it_is_terminal_and_poison_jobs_never_count() -> None:
    # Given three jobs, one of them poison (never counted in jobs: no task body ever ends it)
    tally = Tally(jobs=2)
    tally.poison_ids.add("p")
    # When a batch holds attempts, a success, a failure, a second terminal event of the same job (at-least-once
    # delivery after a crash) and a terminal event of the poison job
    tally.count([
        {"type": "enqueue", "job_id": "a"}, {"type": "attempt", "job_id": "a"}, {"type": "attempt", "job_id": "b"},
        {"type": "terminal", "job_id": "a", "state": "success"},
        {"type": "terminal", "job_id": "b", "state": "failure"},
        {"type": "terminal", "job_id": "a", "state": "success"},
        {"type": "terminal", "job_id": "p", "state": "failure"},
    ])
    # Then each real job counts once, the failure is known by id, and every attempt event counts
    assert (tally.terminal, tally.failed, tally.attempts) == (2, 1, 2)
    assert tally.failed_ids == {"b"} and tally.terminal_ids == {"a", "b", "p"}


def test_batches_add_up_and_a_batch_without_terminal_states_only_counts_attempts() -> None:
    tally = Tally(jobs=5)
    tally.count([{"type": "attempt_start"}, {"type": "attempt"}, {"type": "callback"}])
    tally.count([])
    tally.count([{"type": "attempt"}, {"type": "terminal", "job_id": "x", "state": "success"}])
    assert (tally.terminal, tally.failed, tally.attempts) == (1, 0, 2)


def test_an_event_without_a_type_is_counted_as_nothing_and_does_not_stop_the_count() -> None:
    tally = Tally(jobs=1)
    tally.count([{"job_id": "x"}, {"type": "attempt"}, {"type": "terminal", "job_id": "x", "state": "failure"}])
    assert (tally.terminal, tally.failed, tally.attempts) == (1, 1, 1)

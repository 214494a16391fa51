"""Reading the failure log as an operator: filters, time windows and a results directory as the source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.ops.failed import FailedJobsError, Filter, ResultsSource, find, open_source, parse_since, query

NOW = 1_800_000_000 * 10**9  # 2027-01-15T08:00:00Z


def record(job: str, *, backend: str = "rq", task: str = "work", exc: str = "ConnectionError",
           failed_s: float = 0.0, run: str = "abc001x0") -> dict[str, object]:
    return {"cell_id": run, "backend": backend, "scenario": "unit", "task": task, "job_id": job, "args": [1],
            "kwargs": {}, "exc_type": exc, "exc_message": "boom", "traceback": "Traceback…", "attempts": 4,
            "enqueued_ns": NOW - 10**10, "failed_ns": NOW + int(failed_s * 1e9), "worker": "h:1"}


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", NOW - 30 * 10**9), ("15m", NOW - 900 * 10**9), ("2h", NOW - 7200 * 10**9), ("1d", NOW - 86400 * 10**9),
    ("2027-01-15T08:00:00+00:00", NOW),
    ("2027-01-15T08:00:00", NOW),  # no zone given: UTC
])
def test_since_accepts_durations_ago_and_iso_times(text: str, expected: int) -> None:
    assert parse_since(text, now_ns=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "15 minutes", "-3h", "9" * 400 + "d", "10000-01-01"])
def test_a_bad_since_is_a_clear_error(text: str) -> None:
    with pytest.raises(FailedJobsError, match="expected a duration like 15m"):
        parse_since(text, now_ns=NOW)


def test_filters_combine_and_the_newest_failure_comes_first(tmp_path: Path) -> None:
    # Given a results directory whose failure log holds four records
    records = [record("a", failed_s=1), record("b", backend="arq", failed_s=3),
               record("c", exc="ValueError", failed_s=2), record("d", task="other", failed_s=4, run="zzz001x1")]
    (tmp_path / "failed_jobs.log").write_text("".join(json.dumps(r) + "\n" for r in records))
    source = open_source(redis_url=None, results=tmp_path)
    # Then the list is newest first, filters combine, and pages cut the sorted list
    assert [r["job_id"] for r in query(source, Filter())[1]] == ["d", "b", "c", "a"]
    assert [r["job_id"] for r in query(source, Filter(backend="rq", exc_type="ConnectionError"))[1]] == ["d", "a"]
    assert [r["job_id"] for r in query(source, Filter(run="abc"))[1]] == ["b", "c", "a"]
    assert [r["job_id"] for r in query(source, Filter(since_ns=NOW + 2 * 10**9))[1]] == ["d", "b", "c"]
    assert query(source, Filter(), offset=1, limit=2) == (4, [records[1], records[2]])


def test_show_finds_the_job_and_its_history(tmp_path: Path) -> None:
    (tmp_path / "failed_jobs.log").write_text(json.dumps(record("j1")) + "\n")
    events = [{"type": "enqueue", "cell_id": "abc001x0", "job_id": "j1", "ts_ns": NOW - 10**10},
              {"type": "attempt", "cell_id": "abc001x0", "job_id": "j1", "attempt": 1, "started_ns": NOW - 10**9,
               "outcome": "failure"},
              {"type": "attempt", "cell_id": "abc001x0", "job_id": "other", "attempt": 1, "started_ns": NOW}]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    found = find(ResultsSource(tmp_path), "j1")
    assert found is not None and found["records"] == 1
    assert [e["type"] for e in found["history"]] == ["enqueue", "attempt"]
    assert find(ResultsSource(tmp_path), "nope") is None


def test_sources_are_chosen_exactly_once_and_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FailedJobsError, match="exactly one of"):
        open_source(redis_url=None, results=None)
    with pytest.raises(FailedJobsError, match="exactly one of"):
        open_source(redis_url="redis://127.0.0.1:1/0", results=tmp_path)
    with pytest.raises(FailedJobsError, match="is this a retrybench results directory"):
        open_source(redis_url=None, results=tmp_path)
    with pytest.raises(FailedJobsError, match="cannot reach Redis"):
        open_source(redis_url="redis://127.0.0.1:1/0", results=None)
    (tmp_path / "failed_jobs.log").write_text("{not json\n")
    # A line that does not parse is listed as malformed (tests/security): it never breaks the list.
    [bad] = list(ResultsSource(tmp_path).records())
    assert bad["malformed"] == "not JSON (failed_jobs.log:1)"


def test_a_failure_record_of_event_schema_1_shows_its_cell_as_cell_id() -> None:
    from harness.ops.failed import normalize

    record = normalize(json.dumps({"job_id": "j1", "run_id": "abc001x0", "exc_type": "ValueError"}))
    assert record["cell_id"] == "abc001x0" and "run_id" not in record and Filter(run="abc001")(record)

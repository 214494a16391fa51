"""The driver's ``history.jsonl`` writer: as it comes for real queues, held back for in-process workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.bench.cell import HistoryWriter
from implementations.recording.jsonline import loads


def lines(path: Path) -> list[str]:
    return [loads(line)["job_id"] for line in path.read_bytes().splitlines()]


def test_without_hold_every_batch_is_on_disk_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history = HistoryWriter(str(path))
    history.write([{"type": "enqueue", "job_id": "a"}, {"type": "enqueue", "job_id": "b"}])
    assert lines(path) == ["a", "b"]  # flushed: a reader (or a crash) sees it now
    history.write([])
    history.close()
    assert lines(path) == ["a", "b"]


def test_held_events_are_written_in_order_once_enough_gather_and_the_rest_at_close(tmp_path: Path) -> None:
    # Given a history that holds 3 events (an in-process run's driver)
    path = tmp_path / "history.jsonl"
    history = HistoryWriter(str(path), hold=3)
    # When fewer than 3 have been written, nothing is on disk yet
    history.write([{"type": "enqueue", "job_id": "a"}, {"type": "enqueue", "job_id": "b"}])
    assert lines(path) == []
    # and the batch that reaches 3 writes all of them, in the order they came
    history.write([{"type": "enqueue", "job_id": "c"}, {"type": "enqueue", "job_id": "d"}])
    assert lines(path) == ["a", "b", "c", "d"]
    # Then write_held writes what is held at once (the driver's end of the measured window) and says how long
    history.write([{"type": "terminal", "job_id": "e"}])
    assert history.write_held() >= 0.0 and lines(path) == ["a", "b", "c", "d", "e"]
    assert history.write_held() >= 0.0 and lines(path) == ["a", "b", "c", "d", "e"]  # nothing twice
    # and write_through puts what is held, then its own events, on disk at once (the driver's milestones),
    # while with no events of its own (no worker was restarted) it leaves what is held alone
    history.write([{"type": "terminal", "job_id": "f"}])
    history.write_through([])
    assert lines(path)[-1] == "e"
    history.write_through([{"type": "workers_ready", "job_id": "!"}])
    assert lines(path)[-2:] == ["f", "!"]
    # and close writes whatever came after it (the end event)
    history.write([{"type": "end", "job_id": "-"}])
    history.close()
    assert lines(path) == ["a", "b", "c", "d", "e", "f", "!", "-"]


class _FailsOnce:
    """A shape whose expansion fails the first time (a disk or encoding error, as the driver sees one)."""

    failed = False

    def expand(self, record: tuple[object, ...]) -> dict[str, object]:
        if not _FailsOnce.failed and record[2] == "job-700":
            _FailsOnce.failed = True
            raise OSError("no space left on device")
        return {"type": "enqueue", "job_id": record[2]}


def test_a_held_write_that_fails_goes_on_from_where_it_failed_and_writes_nothing_twice(tmp_path: Path) -> None:
    # Given 1,200 held records (written 512 at a time), the 701st of which fails to be written once
    path = tmp_path / "history.jsonl"
    history = HistoryWriter(str(path), hold=10_000)
    shape = _FailsOnce()
    history.write([("enqueue", shape, f"job-{i}") for i in range(1200)])
    # When the write at the window's end fails
    with pytest.raises(OSError):
        history.write_held()
    # Then what came before the slice that failed is on disk, and close writes the rest, once each, in order
    assert lines(path) == [f"job-{i}" for i in range(512)]
    history.close()
    assert lines(path) == [f"job-{i}" for i in range(1200)]


def test_close_closes_the_file_even_when_what_is_held_cannot_be_written(tmp_path: Path) -> None:
    history = HistoryWriter(str(tmp_path / "history.jsonl"), hold=10)
    history.write([("enqueue", None)])  # a malformed record: no event in it
    with pytest.raises(IndexError):
        history.close()
    assert history._fh.closed

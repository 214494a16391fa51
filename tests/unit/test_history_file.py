"""The driver's ``history.jsonl`` writer: every batch on disk as soon as it is written."""

from __future__ import annotations

from pathlib import Path

from harness.bench.cell import HistoryWriter
from implementations.recording.jsonline import loads


def lines(path: Path) -> list[str]:
    return [loads(line)["job_id"] for line in path.read_bytes().splitlines()]


def test_every_batch_is_on_disk_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history = HistoryWriter(str(path))
    history.write([{"type": "enqueue", "job_id": "a"}, {"type": "enqueue", "job_id": "b"}])
    assert lines(path) == ["a", "b"]  # flushed: a reader (or a crash) sees it now
    history.write([])
    history.close()
    assert lines(path) == ["a", "b"]

"""The local event file: whole lines from many processes, each read once, nothing lost to a kill."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
from pathlib import Path

import pytest

import implementations.recording.filesink as filesink
from harness.bench.cell import Tally, poll_interval
from implementations.recording.events import DRAIN_MAX, RedisSink
from implementations.recording.filesink import FileSink
from implementations.recording.jsonline import dumps_line
from implementations.recording.memsink import MemorySink


def sink(path: Path) -> FileSink:
    # The Redis half is never touched by these tests: redis-py connects on the first command only.
    return FileSink(str(path), RedisSink("redis://127.0.0.1:1/0", "test"))


def test_events_from_forked_processes_arrive_whole_and_are_read_once(tmp_path: Path) -> None:
    # Given a sink the driver reads and eight forked processes writing through an inherited copy of it
    path = tmp_path / "events.jsonl"
    writer, reader = sink(path), sink(path)
    writer.emit({"type": "enqueue", "job_id": "parent"})
    pids = []
    for n in range(8):
        pid = os.fork()
        if pid == 0:
            for i in range(200):
                writer.emit({"type": "attempt", "job_id": f"{n}-{i}", "pad": "x" * 300},
                            {"type": "terminal", "job_id": f"{n}-{i}", "state": "success"})
            os._exit(0)
        pids.append(pid)
    # When they have all exited and the driver drains twice
    for pid in pids:
        os.waitpid(pid, 0)
    first, second = reader.drain(), reader.drain()
    # Then every event is there once, and each attempt is followed by its terminal state (one write)
    assert second == [] and len(first) == 1 + 8 * 200 * 2
    for attempt, terminal in zip(first[1::2], first[2::2], strict=True):
        assert (attempt["type"], terminal["type"], attempt["job_id"]) == ("attempt", "terminal", terminal["job_id"])


def test_a_line_still_being_written_is_read_when_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    reader = sink(path)
    assert reader.drain() == []  # no file yet: nothing, no error
    with open(path, "ab") as fh:
        fh.write(b'{"type": "attempt", "job_id": "a"}\n{"type": "term')
    assert [e["type"] for e in reader.drain()] == ["attempt"]
    with open(path, "ab") as fh:
        fh.write(b'inal", "job_id": "a", "state": "success"}\n')
    assert reader.drain() == [{"type": "terminal", "job_id": "a", "state": "success"}]


def test_an_event_written_before_a_kill_is_kept(tmp_path: Path) -> None:
    # Given a process that records the start of an attempt and is then SIGKILLed, as a crash fault does
    path = tmp_path / "events.jsonl"
    pid = os.fork()
    if pid == 0:
        sink(path).emit({"type": "attempt_start", "job_id": "j", "attempt": 1})
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    # Then the start is in the file: the evidence of the interrupted attempt survives its process
    assert sink(path).drain() == [{"type": "attempt_start", "job_id": "j", "attempt": 1}]


def test_the_terminal_state_of_a_job_is_found_in_the_file(tmp_path: Path) -> None:
    s = sink(tmp_path / "events.jsonl")
    s.emit({"type": "attempt", "job_id": "j"}, {"type": "terminal", "job_id": "j", "state": "failure"})
    assert s.state("j") == {"type": "terminal", "job_id": "j", "state": "failure"}
    assert s.state("other") is None


def test_the_driver_looks_at_the_run_slowly_early_and_every_20_ms_near_the_end() -> None:
    assert poll_interval("rq", Tally(jobs=1000, terminal=0), 1.0) == 0.02  # no rate yet
    assert poll_interval("rq", Tally(jobs=1000, terminal=100), 10.0) == 0.25  # 90 s to go, 10 s so far
    assert abs(poll_interval("rq", Tally(jobs=1000, terminal=900), 9.0) - 0.25) < 1e-12  # 1 s to go: a quarter
    assert poll_interval("rq", Tally(jobs=1000, terminal=995), 10.0) == 0.02  # 50 ms to go
    # In-process (reference), the same rule with a 2 ms floor
    assert abs(poll_interval("reference", Tally(jobs=1000, terminal=900), 0.09) - 0.0025) < 1e-12  # 10 ms to go
    assert poll_interval("reference", Tally(jobs=1000, terminal=999), 0.1) == 0.002


def test_an_early_low_rate_estimate_never_makes_the_driver_sleep_past_a_twentieth_of_the_run_so_far() -> None:
    # Given a run 10 ms in whose first jobs are still starting (8 of 1000 done: the rate says 1.2 s to go)
    # Then the driver looks again within 5% of the time so far (floor 2 ms), not a quarter of 1.2 s (0.25 s
    # capped, which outlasted whole 0.2 s reference runs), and so sees any end within 5% of the truth
    assert poll_interval("reference", Tally(jobs=1000, terminal=8), 0.01) == 0.002
    assert abs(poll_interval("reference", Tally(jobs=1000, terminal=100), 0.1) - 0.005) < 1e-12
    assert abs(poll_interval("rq", Tally(jobs=1000, terminal=100), 1.0) - 0.05) < 1e-12


def test_only_the_events_of_a_job_that_failed_for_good_are_copied_to_redis(tmp_path: Path) -> None:
    class Stream:
        failure_log = None

        def __init__(self) -> None:
            self.events: list[dict[str, object]] = []

        def emit(self, *events: dict[str, object]) -> None:
            self.events.extend(events)

    stream = Stream()
    s = FileSink(str(tmp_path / "events.jsonl"), stream)  # type: ignore[arg-type]
    # Given one job that succeeds after a retry and one that fails for good, drained in two batches
    s.mirror([{"type": "enqueue", "job_id": "ok"}, {"type": "enqueue", "job_id": "bad"},
              {"type": "attempt", "job_id": "ok", "attempt": 1, "outcome": "retry"},
              {"type": "attempt", "job_id": "bad", "attempt": 1, "outcome": "failure"}])
    s.mirror([{"type": "attempt", "job_id": "ok", "attempt": 2, "outcome": "success"},
              {"type": "terminal", "job_id": "ok", "state": "success"},
              {"type": "failure_record", "job_id": "bad"}, {"type": "terminal", "job_id": "bad", "state": "failure"}])
    # Then the stream holds the failed job's events (not its enqueue: the record has the time) and nothing else
    assert [(e["type"], e["job_id"]) for e in stream.events] == [
        ("attempt", "bad"), ("failure_record", "bad"), ("terminal", "bad")]


def test_a_failed_jobs_history_waits_out_a_redis_outage_and_is_sent_with_the_next_batch(tmp_path: Path) -> None:
    class Flaky:
        failure_log = None

        def __init__(self) -> None:
            self.calls, self.events = 0, []  # type: ignore[var-annotated]

        def emit(self, *events: dict[str, object]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("Redis is restarting")
            self.events.extend(events)

    stream = Flaky()
    s = FileSink(str(tmp_path / "events.jsonl"), stream)  # type: ignore[arg-type]
    s.mirror([{"type": "attempt", "job_id": "a"}, {"type": "terminal", "job_id": "a", "state": "failure"}])
    assert stream.events == []  # Redis away: nothing sent, nothing raised
    s.mirror([{"type": "attempt", "job_id": "b"}, {"type": "terminal", "job_id": "b", "state": "failure"}])
    assert [e["job_id"] for e in stream.events] == ["a", "a", "b", "b"]


def test_an_append_writes_every_byte_and_keeps_the_interpreter_lock(tmp_path: Path) -> None:
    # Given libc's write called the way ctypes calls Python's own C API: the interpreter lock stays held
    # (handing it to the event loop and waiting to get it back is what cost ARQ's 1 ms jobs)
    assert filesink._WRITE is not None and filesink._WRITE._flags_ & ctypes._FUNCFLAG_PYTHONAPI
    # When 4 MiB of lines are appended to a file in two calls
    path = tmp_path / "events.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        filesink.append(fd, b'{"n":1}\n' * (1 << 18))
        filesink.append(fd, b'{"n":2}\n' * (1 << 17) * 2)
    finally:
        os.close(fd)
    # Then every byte is there, in order; and a failed write is an OSError with its errno, not a count
    assert path.read_bytes() == b'{"n":1}\n' * (1 << 18) + b'{"n":2}\n' * (1 << 18)
    with pytest.raises(OSError) as info:
        filesink.append(fd, b"x")  # closed above
    assert info.value.errno == errno.EBADF


def test_a_drain_cut_at_its_chunk_size_says_more_is_waiting(tmp_path: Path) -> None:
    # Given more than one chunk of events in the local file and in memory (the reference backend's sink)
    path = tmp_path / "events.jsonl"
    file_sink, memory = sink(path), MemorySink()
    line = {"type": "attempt", "job_id": "j", "pad": "x" * 200}
    count = filesink.READ_BYTES // len(dumps_line(line)) + 10
    with open(path, "ab") as fh:
        fh.write(dumps_line(line) * count)
    memory.emit(*[line] * (DRAIN_MAX + 1))
    for reader, total in ((file_sink, count), (memory, DRAIN_MAX + 1)):
        # When the driver drains once, and again
        first = reader.drain()
        assert reader.behind()  # Then the first drain says to read again at once rather than sleep
        rest = reader.drain()
        # And the second, which reached the end, does not
        assert not reader.behind() and len(first) + len(rest) == total
    assert memory.drain() == [] and not memory.behind()

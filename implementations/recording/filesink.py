"""History events through a file shared by the workers of one host, the rest through Redis.

A worker on the harness's own host appends each event to one JSON-lines file (``O_APPEND``: one
``write`` per call, whole lines, the attempt's end and its terminal state in the same write) and the
driver tails it. That costs a system call where the Redis stream costs a round trip, a connection in
each of RQ's forked work horses, and CPU in the very Redis the queues run on: what the harness spends
there, the workers it measures cannot. An event is in the kernel once ``write`` returns, so it survives
its process being killed (SIGKILL, an OOM kill) as a Redis write would. Workers on other hosts
(``--external-workers``) keep the Redis stream.

What needs sharing between processes rather than a record (failure records for ``failed-jobs``, the
once-only crash marks, breaker deferrals, ready workers, enqueue times) stays in Redis.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from contextlib import AbstractContextManager
from typing import Any

from implementations.recording import schema
from implementations.recording.events import RedisSink
from implementations.recording.jsonline import dumps_lines, loads

POLL_S = 0.02  # how often drain() looks again while it blocks
READ_BYTES = 1 << 20


def _write_holding_the_lock() -> Any:
    """libc's ``write`` called with the interpreter lock held (``ctypes.PyDLL``), or None where it cannot be.

    ``os.write`` lets go of the interpreter lock for the system call, and a worker records from the thread
    that runs the task body (ARQ's executor, Celery's thread pool): the event loop or another thread takes
    the lock meanwhile, and the recording thread then waits for it to be handed back, far longer than the
    few microseconds an append to the page cache takes. At 1 ms of work that wait decided ARQ's throughput
    (docs/performance.md: one such write per job cost it 5-8%).
    """
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        write = libc.write
    except (OSError, AttributeError):  # pragma: no cover - not a POSIX libc: os.write it is
        return None
    write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    write.restype = ctypes.c_ssize_t
    return write


_WRITE = _write_holding_the_lock()


def append(fd: int, data: bytes | bytearray) -> None:
    """All of ``data`` to ``fd`` (opened ``O_APPEND``), without letting go of the interpreter lock."""
    if not isinstance(data, bytes):
        data = bytes(data)  # ctypes passes ``bytes`` alone as a char pointer
    if _WRITE is None:  # pragma: no cover
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return
    while data:  # one write in practice: a regular file takes it whole unless the disk is full
        n = _WRITE(fd, data, len(data))
        if n < 0:
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            raise OSError(err, os.strerror(err))
        if n == 0:  # never for a regular file and a non-empty buffer: fail rather than spin
            raise OSError(errno.EIO, "write() wrote nothing")
        data = data[n:]


class FileSink:
    """Events to a local JSON-lines file; everything else to ``RedisSink``."""

    def __init__(self, path: str, shared: RedisSink) -> None:
        self.path = path
        self.shared = shared
        self.failure_log = shared.failure_log
        self._fd: int | None = None
        self._reader: Any = None
        self._partial = b""
        self._behind = False
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._unsent: list[dict[str, Any]] = []

    def _write(self, events: tuple[dict[str, Any], ...]) -> None:
        if self._fd is None:
            # A forked child (RQ's work horse) may inherit it: with O_APPEND every write still lands whole.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        append(self._fd, dumps_lines(events))

    def emit(self, *events: dict[str, Any]) -> None:
        self._write(events)

    def record_failure(self, record: dict[str, Any], *events: dict[str, Any]) -> None:
        """The record goes to the failure log and Redis (``failed-jobs`` reads it there) before the events."""
        self.shared.store_failure(record)
        self._write((schema.failure_record(record), *events))

    def drain(self, block_ms: int = 0) -> list[dict[str, Any]]:
        """Whole lines appended since the last call (waiting up to ``block_ms`` when there are none)."""
        deadline = time.monotonic() + block_ms / 1000
        while True:
            events = self._read()
            if events or time.monotonic() >= deadline:
                return events
            time.sleep(POLL_S)

    def behind(self) -> bool:
        """Whether the last drain stopped at its chunk size: more events are waiting, read again now."""
        return self._behind

    def _read(self) -> list[dict[str, Any]]:
        if self._reader is None:
            try:
                self._reader = open(self.path, "rb")  # noqa: SIM115 - held for the run: reads go on from here
            except FileNotFoundError:
                return []
        # At most 1 MiB a call: a driver that fell behind (while it enqueued 100,000 jobs) catches up in
        # chunks rather than holding the backlog in memory at once.
        chunk = self._reader.read(READ_BYTES)
        self._behind = len(chunk) >= READ_BYTES
        data = self._partial + chunk
        # A write still being copied in may show as a line without its end: keep it for the next read.
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return [loads(line) for line in data[:cut].splitlines() if line]

    def mirror(self, events: list[dict[str, Any]]) -> None:
        """Keep each job's events until it ends; copy those of a job that failed for good to the Redis
        stream, where ``failed-jobs show --redis-url`` finds a failure's history. (The driver calls this
        on what it drains; jobs that succeed, most of them, never cost Redis a write.)"""
        failed = self._unsent
        for e in events:
            jid = e.get("job_id")
            if jid is None or e.get("type") == "enqueue":  # the record has enqueued_ns: no need to hold it
                continue
            self._pending.setdefault(jid, []).append(e)
            if e.get("type") == "terminal":
                held = self._pending.pop(jid)
                if e.get("state") == "failure":
                    failed.extend(held)
        if failed:
            try:
                self.shared.emit(*failed)
                failed.clear()
            except Exception:  # noqa: BLE001 - Redis is away (a broker restart): sent with a later batch
                pass

    def state(self, job_id: str) -> dict[str, Any] | None:
        # Only AsyncResult.get asks, and only an app the harness built for one run: a scan is enough.
        found = None
        try:
            with open(self.path, "rb") as fh:
                for line in fh:
                    if job_id.encode() in line:
                        event = loads(line)
                        if event.get("type") == "terminal" and event.get("job_id") == job_id:
                            found = event
        except FileNotFoundError:
            return None
        return found

    # -- shared state: Redis ---------------------------------------------------------------------
    def mark_enqueued(self, job_id: str, ts_ns: int) -> None:
        self.shared.mark_enqueued(job_id, ts_ns)

    def enqueued_ns(self, job_id: str) -> int | None:
        return self.shared.enqueued_ns(job_id)

    def mark_ready(self, worker: str) -> None:
        self.shared.mark_ready(worker)

    def ready_count(self) -> int:
        return self.shared.ready_count()

    def set_t0(self, ts_ns: int) -> None:
        self.shared.set_t0(ts_ns)

    def t0(self) -> int | None:
        return self.shared.t0()

    def save_config(self, config_json: str) -> None:
        self.shared.save_config(config_json)

    def add_deferral(self, job_id: str) -> None:
        self.shared.add_deferral(job_id)

    def deferrals(self, job_id: str) -> int:
        return self.shared.deferrals(job_id)

    def first_time(self, key: str) -> bool:
        return self.shared.first_time(key)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.shared.flush(timeout)

    def burst(self) -> AbstractContextManager[None]:
        return self.shared.burst()

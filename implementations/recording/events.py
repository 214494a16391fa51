"""Where history events and failure records go: a Redis stream per run (``memsink.MemorySink`` keeps them in
memory for ``reference``, ``filesink.FileSink`` in a local file for workers on the run's host).

Workers on any host append to the same stream; the runner drains it into ``history.jsonl``. Failure
records are also pushed to a Redis list (read by ``failed-jobs`` and ``serve``) and appended to a local
JSON-lines file, each write finished before the handler returns, so a record survives its worker dying.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from implementations.recording import schema
from implementations.recording.marks import MarkWriter, wait_for

# A simulated host (``retrybench run --hosts N``: network namespaces share the kernel's hostname and clock) is
# named by RETRYBENCH_HOST, and may be given a wrong clock, RETRYBENCH_CLOCK_SKEW_NS added to every time it
# records (docs/multi-host.md): the harness measures each host's offset and corrects it (implementations/clock.py).
HOST = os.environ.get("RETRYBENCH_HOST") or socket.gethostname()
CLOCK_SKEW_NS = int(os.environ.get("RETRYBENCH_CLOCK_SKEW_NS") or 0)

if CLOCK_SKEW_NS:
    def now_ns() -> int:
        return time.time_ns() + CLOCK_SKEW_NS
else:
    def now_ns() -> int:
        return time.time_ns()


MARK_WAIT_S = 2.0  # how long a failing job waits for its enqueue time (a burst's batch, normally in ms)
DRAIN_MAX = 5000  # events per drain: a reader that fell behind catches up in chunks, as XREAD's count


def events_key(prefix: str) -> str:
    return f"{prefix}:events"


def failures_key(prefix: str) -> str:
    return f"{prefix}:failures"


def config_key(prefix: str) -> str:
    return f"{prefix}:config"


class EventSink(Protocol):
    def emit(self, *events: dict[str, Any]) -> None:
        """Record ``events`` together; a job's terminal event, when a call has one, comes last (MemorySink
        looks there alone for the state ``AsyncResult`` waits on)."""
        ...

    def record_failure(self, record: dict[str, Any], *events: dict[str, Any]) -> None: ...

    def mark_enqueued(self, job_id: str, ts_ns: int) -> None: ...

    def enqueued_ns(self, job_id: str) -> int | None: ...

    def state(self, job_id: str) -> dict[str, Any] | None: ...

    def mark_ready(self, worker: str) -> None: ...

    def ready_count(self) -> int: ...

    def set_t0(self, ts_ns: int) -> None: ...

    def t0(self) -> int | None: ...

    def drain(self, block_ms: int = 0) -> list[dict[str, Any]]: ...

    def behind(self) -> bool: ...

    def save_config(self, config_json: str) -> None: ...

    def add_deferral(self, job_id: str) -> None: ...

    def deferrals(self, job_id: str) -> int: ...

    def first_time(self, key: str) -> bool: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def burst(self) -> AbstractContextManager[None]: ...


def harness_redis(url: str, **options: Any) -> Any:
    """A redis-py client for the harness's own writes, as cheap to open as the installed redis-py allows.

    RQ forks a work horse per job and each one opens its connections afresh: redis-py 8 spends about 2 ms
    of CPU per new connection reading its own version from package metadata for ``CLIENT SETINFO`` (two
    more round trips, plus ``HELLO 3``). The harness needs none of that, so its clients skip it; the
    libraries under test keep their own clients exactly as they configure them.
    """
    import inspect

    import redis

    accepted = inspect.signature(redis.connection.AbstractConnection.__init__).parameters \
        if hasattr(redis.connection, "AbstractConnection") else {}
    if "driver_info" in accepted:
        options.setdefault("driver_info", None)
    elif "lib_name" in accepted:
        options.setdefault("lib_name", None)
        options.setdefault("lib_version", None)
    if "protocol" in accepted:
        options.setdefault("protocol", 2)
    return redis.Redis.from_url(url, **options)


def append_line(path: str, data: dict[str, Any]) -> None:
    """One JSON line appended to ``path`` and fsynced (a failure record: it must outlive its worker)."""
    line = json.dumps(data, default=str) + "\n"
    # O_APPEND keeps lines whole when several worker processes write one file.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class RedisSink:
    """Events to ``XADD <prefix>:events``; failure records to a list and a JSON-lines file."""

    def __init__(self, redis_url: str, prefix: str, failure_log: str | None = None) -> None:
        import redis

        self.prefix = prefix
        self.failure_log = failure_log
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        # The harness's own events ride on the broker's Redis: across a broker restart (a few seconds) each
        # write waits and retries rather than fail the task it instruments, or vanish from the history.
        self._redis = harness_redis(
            redis_url, socket_timeout=30, socket_connect_timeout=10, retry_on_timeout=True,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 20),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
        self._key = events_key(prefix)
        self._reader: StreamReader | None = None
        self._behind = False
        self._marks = MarkWriter(self._redis, f"{prefix}:enqueued")

    def emit(self, *events: dict[str, Any]) -> None:
        """Append events in one round trip (an attempt's end and its job's terminal state go together)."""
        if len(events) == 1 and events[0].get("type") != "terminal":
            self._redis.xadd(self._key, {"e": json.dumps(events[0], default=str)})
            return
        pipe = self._redis.pipeline()  # MULTI/EXEC: the events are recorded together or not at all
        self._add(pipe, events)
        pipe.execute()

    def _add(self, pipe: Any, events: tuple[dict[str, Any], ...]) -> None:
        for event in events:
            data = json.dumps(event, default=str)
            pipe.xadd(self._key, {"e": data})
            if event.get("type") == "terminal":
                # Terminal states are also kept per job so that AsyncResult.get needs no stream scan.
                pipe.hset(f"{self.prefix}:states", event["job_id"], data)

    def state(self, job_id: str) -> dict[str, Any] | None:
        raw = self._redis.hget(f"{self.prefix}:states", job_id)
        return json.loads(raw) if raw is not None else None

    def mark_ready(self, worker: str) -> None:
        self._redis.sadd(f"{self.prefix}:ready", worker)

    def ready_count(self) -> int:
        return int(self._redis.scard(f"{self.prefix}:ready"))

    def set_t0(self, ts_ns: int) -> None:
        self._redis.set(f"{self.prefix}:t0", ts_ns)

    def t0(self) -> int | None:
        raw = self._redis.get(f"{self.prefix}:t0")
        return int(raw) if raw is not None else None

    def drain(self, block_ms: int = 0) -> list[dict[str, Any]]:
        """Events appended since the last call (blocking up to ``block_ms`` when there are none)."""
        if self._reader is None:
            self._reader = StreamReader(self._redis, self.prefix)
        events = list(self._reader.read(block_ms=block_ms or None, count=DRAIN_MAX))
        self._behind = len(events) >= DRAIN_MAX
        return events

    def behind(self) -> bool:
        """Whether the last drain stopped at its chunk size: more events are waiting, read again now."""
        return self._behind

    def mark_enqueued(self, job_id: str, ts_ns: int) -> None:
        self._marks.add(job_id, ts_ns)  # at once, or batched inside a burst (MarkWriter)

    def enqueued_ns(self, job_id: str) -> int | None:
        # A job can fail for good before the burst that enqueued it has sent its batch: give it a moment.
        raw = wait_for(lambda: self._redis.hget(f"{self.prefix}:enqueued", job_id), MARK_WAIT_S)
        return int(raw) if raw is not None else None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until this process's enqueue marks are in Redis."""
        return self._marks.flush(timeout)

    def burst(self) -> AbstractContextManager[None]:
        """A burst of enqueues from this thread: their marks are sent when it ends (``MarkWriter.burst``)."""
        return self._marks.burst()

    def add_deferral(self, job_id: str) -> None:
        self._redis.hincrby(f"{self.prefix}:deferrals", job_id, 1)

    def deferrals(self, job_id: str) -> int:
        return int(self._redis.hget(f"{self.prefix}:deferrals", job_id) or 0)

    def first_time(self, key: str) -> bool:
        """True for the first caller only, across every worker (SET NX)."""
        return bool(self._redis.set(f"{self.prefix}:once:{key}", 1, nx=True))

    def save_config(self, config_json: str) -> None:
        # What `retrybench failed-jobs requeue` needs to rebuild this app long after the run ended.
        self._redis.set(config_key(self.prefix), config_json)

    def store_failure(self, record: dict[str, Any]) -> None:
        """The record alone: the failure log and the list ``failed-jobs`` reads (``FileSink`` writes the rest)."""
        if self.failure_log:
            append_line(self.failure_log, record)
        self._redis.rpush(failures_key(self.prefix), json.dumps(record, default=str))

    def record_failure(self, record: dict[str, Any], *events: dict[str, Any]) -> None:
        """Store a failure record (then ``events``, in the same round trip)."""
        if self.failure_log:
            append_line(self.failure_log, record)
        pipe = self._redis.pipeline()
        pipe.rpush(failures_key(self.prefix), json.dumps(record, default=str))
        pipe.xadd(self._key, {"e": json.dumps(schema.failure_record(record), default=str)})
        self._add(pipe, events)
        pipe.execute()


class StreamReader:
    """Reads a run's event stream incrementally (the runner's side of ``RedisSink``)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._redis = client
        self._key = events_key(prefix)
        self._last = "0-0"

    def read(self, block_ms: int | None = None, count: int = 5000) -> Iterator[dict[str, Any]]:
        resp = self._redis.xread({self._key: self._last}, count=count, block=block_ms)
        for _stream, entries in resp or ():
            for entry_id, fields in entries:
                self._last = entry_id
                raw = fields.get(b"e") if b"e" in fields else fields.get("e")
                yield json.loads(raw)

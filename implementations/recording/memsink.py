"""The in-process sink: events queue in memory for the ``reference`` backend and unit tests, drained by the driver
in the same process (the one sink with no file and no Redis)."""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from contextlib import AbstractContextManager
from typing import Any

from implementations.recording import schema
from implementations.recording.events import DRAIN_MAX, append_line


class MemorySink:
    """In-process sink for the ``reference`` backend and unit tests: events queue in memory until the driver,
    in the same process, drains them."""

    def __init__(self, failure_log: str | None = None) -> None:
        # A deque: append and popleft are atomic, so the worker threads record without taking a lock. In
        # this one process every lock a worker waits on hands the interpreter lock to another thread and back,
        # and the control row's throughput is what recording is measured against.
        self.events: collections.deque[dict[str, Any]] = collections.deque()
        self._waiting = False  # the driver sleeps in drain(): only then does an emit need to wake it
        self.failures: list[dict[str, Any]] = []
        self.failure_log = failure_log
        self._lock = threading.Lock()
        self._enqueued: dict[str, int] = {}
        self._states: dict[str, dict[str, Any]] = {}
        self._ready: set[str] = set()
        self._deferrals: dict[str, int] = {}
        self._once: set[str] = set()
        self._behind = False
        self._t0: int | None = None
        self._cond = threading.Condition(self._lock)

    def set_t0(self, ts_ns: int) -> None:
        self._t0 = ts_ns

    def t0(self) -> int | None:
        return self._t0

    def mark_enqueued(self, job_id: str, ts_ns: int) -> None:
        self._enqueued.setdefault(job_id, ts_ns)

    def enqueued_ns(self, job_id: str) -> int | None:
        return self._enqueued.get(job_id)

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def burst(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def emit(self, *events: dict[str, Any]) -> None:
        if not events:
            return
        # A job's terminal state is the last event of the call that records it (Runtime.run_attempt,
        # fire_failure): one look, not one per event.
        last = events[-1]
        if last["type"] == "terminal":
            self._states[last["job_id"]] = last  # before the event: whoever drains it finds the state
        self.events.extend(events)  # one call, atomic under the interpreter lock: no lock for the workers
        if self._waiting:
            # Set under the condition's lock before drain() last looked: taking it here means drain() is
            # either waiting (and is woken) or has not looked yet (and will see these events).
            with self._cond:
                self._cond.notify_all()

    def state(self, job_id: str) -> dict[str, Any] | None:
        return self._states.get(job_id)

    def mark_ready(self, worker: str) -> None:
        self._ready.add(worker)

    def save_config(self, config_json: str) -> None:
        self.config_json = config_json

    def first_time(self, key: str) -> bool:
        with self._lock:
            if key in self._once:
                return False
            self._once.add(key)
            return True

    def add_deferral(self, job_id: str) -> None:
        with self._lock:
            self._deferrals[job_id] = self._deferrals.get(job_id, 0) + 1

    def deferrals(self, job_id: str) -> int:
        return self._deferrals.get(job_id, 0)

    def ready_count(self) -> int:
        return len(self._ready)

    def record_failure(self, record: dict[str, Any], *events: dict[str, Any]) -> None:
        if self.failure_log:
            append_line(self.failure_log, record)
        self.failures.append(record)
        self.emit(schema.failure_record(record), *events)

    def drain(self, block_ms: int = 0) -> list[dict[str, Any]]:
        """Events recorded since the last call, at most ``DRAIN_MAX`` (blocking up to ``block_ms`` when none)."""
        # What is drained is let go: a 100,000-job run must not hold its whole history in memory.
        if block_ms and not self.events:
            with self._cond:
                self._waiting = True
                if not self.events:
                    self._cond.wait(block_ms / 1000)
                self._waiting = False
        waiting = len(self.events)
        self._behind = waiting > DRAIN_MAX
        # popleft called from C (starmap), not a Python loop: this runs in the workers' own process.
        return list(itertools.starmap(self.events.popleft, itertools.repeat((), min(waiting, DRAIN_MAX))))

    def behind(self) -> bool:
        """Whether the last drain stopped at its chunk size: more events are waiting, read again now."""
        return self._behind

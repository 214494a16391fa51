"""Enqueue times (``HSETNX <prefix>:enqueued job_id ts_ns``): a failure record carries its job's first enqueue
time, which the worker that fails it for good reads from Redis.

``MarkWriter.add`` sends a mark at once, in the caller's thread. Inside ``burst()`` (the driver's enqueue loop,
the one place whose throughput is measured) marks are sent 64 to a command and the rest when the
burst ends: one round trip per job would cost that loop what the history-off baseline does not pay
(docs/performance.md, "What recording costs"). A mark Redis refused (a broker restart) stays pending, in order,
and goes with the next send, ``flush`` or the process's exit; none is dropped. A mark still pending in a burst
can reach Redis after its job has failed: ``wait_for`` bridges that lag where the time is read.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

BATCH = 64
# HSETNX for each (field, value) pair in ARGV: a batch of marks in one command and one reply.
HSETNX_MANY = "for i = 1, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end"
WAIT_POLL_S = 0.01
T = TypeVar("T")


class MarkWriter:
    """``HSETNX key job_id ts_ns`` for each ``add``; batched inside ``burst()``."""

    def __init__(self, client: Any, key: str) -> None:
        self._client = client
        self._key = key
        self._pending: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._bursts = 0  # open burst() blocks: their marks wait for a full batch or the block's end
        self._registered = False
        self._script = client.register_script(HSETNX_MANY)  # EVALSHA, loaded again after a restart

    def add(self, job_id: str, ts_ns: int) -> None:
        with self._lock:
            self._pending.append((job_id, ts_ns))
            if not self._bursts or len(self._pending) >= BATCH:
                self._send()  # on failure the marks stay pending, for the next send
            if self._pending and not self._registered:
                self._registered = True
                atexit.register(self.flush)  # a script that enqueues and exits still leaves its marks

    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Marks added inside go ``BATCH`` to a command, the rest in one when the block ends."""
        with self._lock:
            self._bursts += 1
        try:
            yield
        finally:
            with self._lock:
                self._bursts -= 1
                if self._pending:
                    self._send()

    def _send(self) -> bool:
        """Send what is pending (the lock is held); on failure keep it, in order, for the next try."""
        # HSETNX: a requeue or a native retry keeps the job's *first* enqueue time. A batch is one command (a
        # script of HSETNXs), not one pipelined HSETNX a mark: redis-py packs and parses every command of a
        # pipeline (docs/performance.md, "Enqueue marks").
        try:
            self._script(keys=[self._key], args=[x for mark in self._pending for x in mark])
        except Exception:  # noqa: BLE001 - Redis away: the marks stay pending
            return False
        self._pending.clear()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Send every mark added so far (False: Redis still refused them after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._pending or self._send():
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def wait_for(read: Callable[[], T | None], timeout: float) -> T | None:
    """``read()`` until it returns something other than None, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (value := read()) is None and time.monotonic() < deadline:
        time.sleep(WAIT_POLL_S)
    return value

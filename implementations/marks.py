"""Enqueue times written behind the enqueue, in pipelined batches.

A failure record carries the job's first enqueue time, which the worker that fails it for good reads
from Redis. Written with one ``HSETNX`` per ``apply_async``, it cost the enqueuing loop a round trip per
job that the history-off baseline does not pay (RQ's enqueue of 1,000 jobs: 4.5 s with the history on,
3.2 s off, medians of 8). Here the enqueuing thread sends them itself, 16 to a pipeline, and a timer
sends a mark still pending ``LAG_S`` after it was added (the tail of a burst, a lone ``delay()``). While
the loop enqueues more than 16 jobs per ``LAG_S``, the timer finds the old marks sent and only re-arms,
so the round trips stay in the loop's own thread rather than in one that takes the interpreter lock
from it. The price is a lag, which ``wait_for`` bridges on the rare failure that outruns it. README
"What recording costs" has the measurements.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

BATCH = 16
LAG_S = 0.05  # the longest a mark waits for company before the timer sends it alone
WAIT_POLL_S = 0.01
T = TypeVar("T")


class MarkWriter:
    """``HSETNX key job_id ts_ns`` for each ``add``, sent in pipelines."""

    def __init__(self, client: Any, key: str) -> None:
        self._client = client
        self._key = key
        self._pending: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._timer_pid = 0
        self._oldest = 0.0  # when the oldest pending mark was added (monotonic)
        self._registered = False

    def add(self, job_id: str, ts_ns: int) -> None:
        with self._lock:
            self._pending.append((job_id, ts_ns))
            if len(self._pending) == 1:
                self._oldest = time.monotonic()
            sent = len(self._pending) >= BATCH and self._send()
            if not sent and (self._timer is None or self._timer_pid != os.getpid()):  # a fork has no timer
                self._start_timer()  # sends the rest once the enqueuing pauses (or retries a failed send)
            if not self._registered:
                self._registered = True
                atexit.register(self.flush)  # a script that enqueues and exits still leaves its marks

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if not self._pending:
                return
            young = LAG_S - (time.monotonic() - self._oldest)
            if young > 0:
                # The loop is still enqueuing and sends its own batches: look again when these are due.
                self._start_timer(young)
            elif not self._send():
                self._start_timer()  # Redis is away (a broker restart): try again later, drop nothing

    def _start_timer(self, delay: float = LAG_S) -> None:
        self._timer = threading.Timer(delay, self._on_timer)
        self._timer.daemon = True
        self._timer.start()
        self._timer_pid = os.getpid()

    def _send(self) -> bool:
        """Send what is pending (the lock is held); on failure keep it, in order, for the next try."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for job_id, ts_ns in self._pending:
                # HSETNX: a requeue or a native retry keeps the job's *first* enqueue time.
                pipe.hsetnx(self._key, job_id, ts_ns)
            pipe.execute()
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

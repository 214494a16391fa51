"""Enqueue times written behind the enqueue, in pipelined batches.

A failure record carries the job's first enqueue time, which the worker that fails it for good reads
from Redis. Written with one ``HSETNX`` per ``apply_async``, it cost the enqueuing loop a round trip per
job that the history-off baseline does not pay (RQ's enqueue of 1,000 jobs: 4.5 s with the history on,
3.2 s off, medians of 8). Here the enqueuing thread sends them itself, 16 to a pipeline, and one sender
thread per process sends a mark still pending ``LAG_S`` after it was added (the tail of a burst, a lone
``delay()``). While the loop enqueues more than 16 jobs per ``LAG_S``, the sender finds the old marks
sent and only sleeps again, so the round trips stay in the loop's own thread.

A caller that enqueues in bursts (the harness's driver) wraps each in ``burst()``: the marks go 16 to a
round trip and the rest when the burst ends, and no other thread runs meanwhile. Any other thread costs
the loop on a loaded 2-core machine: a ``threading.Timer`` per pause (the earlier design) started a
thread about every 50 ms of enqueueing, and ``Thread.start`` waits until the new thread runs, which made
Celery's enqueue of 1,000 jobs 2.4 s instead of 1.7 s; even one sender thread's wake-ups cost it ~10%
(docs/performance.md). The sender is started once per process, the first time a mark is added
outside a burst. The price of writing behind is a lag, which ``wait_for`` bridges on the rare failure
that outruns it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

BATCH = 16
LAG_S = 0.05  # the longest a mark waits for company before the sender sends it alone
WAIT_POLL_S = 0.01
T = TypeVar("T")


class MarkWriter:
    """``HSETNX key job_id ts_ns`` for each ``add``, sent in pipelines."""

    def __init__(self, client: Any, key: str) -> None:
        self._client = client
        self._key = key
        self._pending: list[tuple[str, int]] = []
        self._cond = threading.Condition()
        self._sender_pid = 0  # the process whose sender thread runs (a fork has none)
        self._oldest = 0.0  # when the oldest pending mark was added (monotonic)
        self._bursts = 0  # open burst() blocks: their owner sends the tail, the sender stays asleep
        self._registered = False

    def add(self, job_id: str, ts_ns: int) -> None:
        with self._cond:
            self._pending.append((job_id, ts_ns))
            if len(self._pending) == 1:
                self._oldest = time.monotonic()
            if len(self._pending) >= BATCH:
                self._send()  # on failure the marks stay pending, for the next batch or the sender
            if not self._bursts:
                self._wake_sender()
            if not self._registered:
                self._registered = True
                atexit.register(self.flush)  # a script that enqueues and exits still leaves its marks

    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Marks added inside go 16 to a round trip, the rest in one when the block ends (one try: if Redis
        is away then, the sender keeps trying)."""
        with self._cond:
            self._bursts += 1
        try:
            yield
        finally:
            with self._cond:
                self._bursts -= 1
                if self._pending and not self._send() and not self._bursts:
                    self._wake_sender()

    def _wake_sender(self) -> None:
        """The condition's lock is held. Start this process's sender, or wake it for a first new mark."""
        if self._sender_pid != os.getpid():
            self._sender_pid = os.getpid()
            threading.Thread(target=self._sender, name="retrybench-marks", daemon=True).start()
        elif len(self._pending) == 1:
            self._cond.notify()  # the sender sleeps until there is something to send

    def _sender(self) -> None:
        with self._cond:
            while True:
                if not self._pending:
                    self._cond.wait()
                    continue
                young = LAG_S - (time.monotonic() - self._oldest)
                if young > 0:
                    # The loop is still enqueuing and sends its own batches: look again when these are due.
                    self._cond.wait(young)
                elif not self._send():
                    self._cond.wait(LAG_S)  # Redis is away (a broker restart): try again later, drop nothing

    def _send(self) -> bool:
        """Send what is pending (the condition's lock is held); on failure keep it, in order, for the next
        try."""
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
            with self._cond:
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

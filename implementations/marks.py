"""Enqueue times written behind the enqueue, in pipelined batches, by one thread of the enqueuing process.

A failure record carries the job's first enqueue time, which the worker that fails it for good reads
from Redis. Written one ``HSETNX`` per ``apply_async``, that cost the enqueuing loop a round trip per
job (about 0.05 ms of CPU, and on a machine busy with the workers up to a millisecond of waiting) that
the history-off baseline does not pay: RQ's enqueue of 1,000 jobs took 4.5 s with the history on and
3.2 s with it off (medians of 8 before this change). Pipelined, the same writes cost a few microseconds
each and the loop never waits for Redis. The price is a lag of a few milliseconds, which ``wait_for``
bridges on the rare failure that outruns it.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import Any

LINGER_S = 0.005
RETRY_S = 0.1  # Redis away (a broker restart): try the batch again this often
WAIT_POLL_S = 0.01


class MarkWriter:
    """``HSETNX key job_id ts_ns`` for each ``add``, sent by a daemon thread in pipelines."""

    def __init__(self, client: Any, key: str) -> None:
        self._client = client
        self._key = key
        self._pending: list[tuple[str, int]] = []
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, job_id: str, ts_ns: int) -> None:
        with self._cond:
            self._pending.append((job_id, ts_ns))
            if self._thread is None or self._pid != os.getpid():  # a forked child has no writer thread
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="retrybench-marks", daemon=True)
                self._thread.start()
                atexit.register(self.flush)  # a script that enqueues and exits still leaves its marks
            if len(self._pending) == 1:  # the writer waits only on an empty list (flush() may wait too)
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                self._busy = True
            # Let a batch gather (Kafka's linger.ms): woken per mark, the thread would send one command
            # per round trip and take the interpreter lock from the enqueuing loop as often.
            time.sleep(LINGER_S)
            with self._cond:
                batch, self._pending = self._pending, []
            try:
                pipe = self._client.pipeline(transaction=False)
                for job_id, ts_ns in batch:
                    # HSETNX: a requeue or a native retry keeps the job's *first* enqueue time.
                    pipe.hsetnx(self._key, job_id, ts_ns)
                pipe.execute()
                sent = True
            except Exception:  # noqa: BLE001 - Redis away: keep the batch, and its order, for the next try
                sent = False
            with self._cond:
                if not sent:
                    self._pending[:0] = batch
                self._busy = False
                self._cond.notify_all()
            if not sent:
                time.sleep(RETRY_S)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every mark added so far is in Redis (False: still not, after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or self._pid != os.getpid():
                    return False
                self._cond.wait(left)
        return True


def wait_for(read: Any, timeout: float) -> Any:
    """``read()`` until it returns something other than None, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (value := read()) is None and time.monotonic() < deadline:
        time.sleep(WAIT_POLL_S)
    return value

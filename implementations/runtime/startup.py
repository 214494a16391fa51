"""Comparable start-up: a probe job, run by each worker through its library's own queue and worker code.

Start-up of worker *i* is the time from the moment the harness spawned it (the driver's wall clock) until
that worker has completed a probe job: a no-op task (``PROBE_TASK``, registered by every ``RetryApp``)
enqueued through the library's own client, dequeued, deserialised and run by the library's own worker, in
its own work horse (RQ), pool child (Celery) or executor thread (ARQ), with that backend's imports done.
The same definition holds on every backend, whatever the library itself calls "ready".

A probe is never a job of the run: the runtime hands it here before the fault plan, the breaker or the
history see it (``Runtime.run_attempt``), so it writes no attempt, terminal or failure event, no failure
record, and the backends leave it out of their own counts. What it writes is one ``probe`` event through
the worker's event sink: its worker's index, pid and wall-clock ns, and ``state``:

- ``first``: the first probe this worker index completed (the one start-up is measured on);
- ``held``: a later probe, taken by a worker that already has its figure. It then waits (``Board``) until the
  driver releases the probes, so that a worker that came up early cannot take the probes the others need:
  none of the libraries lets a client address one worker (see ``harness/bench/startup.py``);
- ``done``: a held probe, released, has ended.

Each worker learns its index from ``INDEX_ENV`` (set by ``implementations.processes.worker`` from ``--index``, and
inherited by RQ's work horses and Celery's pool children, which fork from it) or, for the reference
backend's threads, from ``set_thread_index``.
"""

from __future__ import annotations

import math
import os
import threading
from typing import TYPE_CHECKING, Any

from implementations.recording import schema
from implementations.recording.events import HOST, harness_redis, now_ns
from implementations.runtime.attempt import WORKER_PID_ENV, Outcome

if TYPE_CHECKING:
    from implementations.api.app import RetryApp, Task
    from implementations.runtime.wrapper import Runtime

PROBE_TASK = "retrybench_probe"  # an identifier: Celery names the task's function after it
INDEX_ENV = "RB_WORKER_INDEX"
DEFINITION = "spawn to first completed probe job"
HOLD_MAX_S = 120.0  # a held probe gives up waiting for its release after this long (the driver died)
PROBE_ID_PREFIX = "rbprobe"  # not the run id: no store of the run's jobs (ARQ results by run id) lists a probe

_local = threading.local()


def set_thread_index(index: int) -> None:
    """The worker index of the calling thread (the reference backend's workers are threads)."""
    _local.index = index


def worker_index() -> int | None:
    """This worker's index: the thread's own, else the process's (``INDEX_ENV``); None when started elsewhere."""
    index = getattr(_local, "index", None)
    if index is not None:
        return int(index)
    raw = os.environ.get(INDEX_ENV)
    return int(raw) if raw and raw.lstrip("-").isdigit() else None


def is_probe(task: Task) -> bool:
    return task.name == PROBE_TASK


def probe_id(cell_id: str, n: int) -> str:
    return f"{PROBE_ID_PREFIX}-{cell_id}-{n:04d}"


def register(app: RetryApp) -> None:
    """Register the probe task on ``app`` (every app has it, so every worker can run it natively)."""

    def probe() -> None:
        """No-op: the runtime answers a probe itself (``run_probe``), before any of the run's bookkeeping."""

    app.task(name=PROBE_TASK, max_retries=0)(probe)


class Board:
    """Where probes and the driver meet: which worker indexes have their figure, and the release."""

    def first(self, index: int) -> bool:
        """True the first time ``index`` asks, across every process."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def wait_released(self, timeout: float) -> bool:
        raise NotImplementedError


class MemoryBoard(Board):
    """The reference backend's: its workers are threads of the driver's process."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._lock = threading.Lock()
        self._released = threading.Event()

    def first(self, index: int) -> bool:
        with self._lock:
            if index in self._seen:
                return False
            self._seen.add(index)
            return True

    def release(self) -> None:
        self._released.set()

    def wait_released(self, timeout: float) -> bool:
        return self._released.wait(timeout)


class RedisBoard(Board):
    """A set of indexes, and a release list that holds one token once released: each held probe waits on
    it with BLPOP (no polling) and pushes the token back for the next one."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self._url = redis_url
        self._seen = f"{prefix}:probe:seen"
        self._release = f"{prefix}:probe:release"
        self._client: Any = None
        self._pid = 0

    @property
    def client(self) -> Any:
        if self._client is None or self._pid != os.getpid():  # RQ's work horses fork: a client of their own
            self._client = harness_redis(self._url, socket_timeout=None, socket_connect_timeout=10)
            self._pid = os.getpid()
        return self._client

    def first(self, index: int) -> bool:
        return bool(self.client.sadd(self._seen, index))

    def release(self) -> None:
        self.client.rpush(self._release, 1)

    def wait_released(self, timeout: float) -> bool:
        got = self.client.blpop([self._release], timeout=max(1, math.ceil(timeout)))
        if got is None:
            return False
        self.client.rpush(self._release, 1)  # the token goes back: the next held probe, or a late one, gets it
        return True


def board_for(runtime: Runtime) -> Board:
    """The recorder's board, made once per process (the reference backend's threads share the driver's)."""
    board: Board | None = getattr(runtime, "_probe_board", None)
    if board is None:
        cfg = runtime.config
        board = (MemoryBoard() if runtime.in_process or not cfg.redis_url
                 else RedisBoard(cfg.redis_url, cfg.prefix))
        runtime._probe_board = board  # type: ignore[attr-defined]
    return board


def run_probe(runtime: Runtime, job_id: str, attempt: int) -> Outcome:
    """Run one probe job inside the library's worker (called by ``Runtime.run_attempt``): report, then end,
    or, for a worker that has its figure already, wait for the release first. Never raises: a probe must
    not reach a library's failure handling (Celery's ``on_failure`` would write a failure record)."""
    started = now_ns()
    index = worker_index()
    # pid: the process that ran it (an RQ work horse, a Celery pool child); worker_pid: the worker it belongs to.
    leader = os.environ.get(WORKER_PID_ENV)
    who: dict[str, Any] = {"probe_id": job_id, "index": index, "host": HOST, "pid": os.getpid(),
                           "worker_pid": int(leader) if leader else os.getpid()}
    try:
        board = board_for(runtime)
        if index is not None and board.first(index):
            runtime.sink.emit(schema.probe(runtime.base, **who, state="first", ts_ns=started))
        else:
            runtime.sink.emit(schema.probe(runtime.base, **who, state="held", ts_ns=now_ns()))
            released = board.wait_released(HOLD_MAX_S)
            runtime.sink.emit(schema.probe(runtime.base, **who, state="done", ts_ns=now_ns(), released=released))
    except Exception:  # noqa: BLE001, S110 - the driver sees a probe that never reported, and says so
        pass
    return Outcome(ok=True, value=None, started_ns=started, finished_ns=now_ns(), attempt=attempt)

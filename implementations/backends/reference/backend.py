"""In-process reference backend: worker threads and one timer heap, no Redis, no polling.

It shows what perfect retry timing looks like on this machine (the lateness left is the harness's and
the interpreter's own), and it is the fast backend for unit tests (like YCSB's BasicDB).
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from implementations.backends.base import Backend, BackendError
from implementations.recording.events import HOST, EventSink
from implementations.recording.memsink import MemorySink
from implementations.runtime.attempt import WorkerCrashed
from implementations.runtime.startup import is_probe, set_thread_index

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring
    from implementations.core.config import AppConfig


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    job: tuple[Task, tuple[Any, ...], dict[str, Any], str, int] = field(compare=False)


class ReferenceBackend(Backend):
    name = "reference"
    concurrency_as_workers = True
    libraries = ()

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self._cond = threading.Condition()
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.failed: list[str] = []
        self._spawned: dict[int, int] = {}  # thread index -> wall clock (ns) just before it was started
        self.done = 0  # jobs finished for good: the backend's own count, for runs without a history

    @classmethod
    def make_sink(cls, config: AppConfig) -> EventSink:
        return MemorySink(config.failure_log)

    def _push(self, at: float, job: tuple[Task, tuple[Any, ...], dict[str, Any], str, int]) -> None:
        with self._cond:
            heapq.heappush(self._heap, _Due(at, next(self._seq), job))
            self._cond.notify()

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        # Serialised like a real queue's message, so the control row sees the payloads the others see
        # (a poison argument fails where a worker decodes it, not in the caller's hands).
        payload = pickle.dumps((args, kwargs))
        self._push(time.monotonic() + (countdown or 0.0), (task, (payload,), {}, job_id, 0))

    def start_workers(self, count: int, concurrency: int) -> float:
        start = time.monotonic()
        self._stopping = False
        first = len(self._spawned)
        for i in range(first, first + count * max(1, concurrency)):
            thread = threading.Thread(target=self._work, args=(i,), name=f"reference-worker-{i}", daemon=True)
            self._spawned[i] = time.time_ns()
            thread.start()
            self._threads.append(thread)
            self.runtime.sink.mark_ready(thread.name)
        return time.monotonic() - start

    def spawned_ns(self) -> dict[int, int]:
        return dict(self._spawned)

    def stop_workers(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        alerts = self.runtime.alerts
        if alerts is not None:
            alerts.flush()  # the workers were threads of this process: deliver before it moves on

    @classmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        raise NotImplementedError("the reference backend runs its workers as threads in the caller")

    def _next(self) -> tuple[Task, tuple[Any, ...], dict[str, Any], str, int] | None:
        with self._cond:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0].at - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap).job
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _work(self, index: int = 0) -> None:
        set_thread_index(index)  # each thread is one worker of the start-up probe (implementations/runtime/startup.py)
        runtime = self.runtime
        while (job := self._next()) is not None:
            task, args, kwargs, job_id, attempt = job
            if attempt == 0:  # a new message: decode it once, as a worker fetching it would
                try:
                    args, kwargs = pickle.loads(args[0])
                except Exception as exc:  # noqa: BLE001 - an undecodable message fails that job, not the worker
                    self.done += 1
                    self.failed.append(job_id)
                    runtime.fire_failure(task, job_id, exc, traceback.format_exc(), 0, (), {},
                                         worker=f"{HOST}:{os.getpid()}:{threading.current_thread().name}")
                    continue
                job = (task, args, kwargs, job_id, 1)
                attempt = 1
            try:
                outcome = runtime.run_attempt(task, job_id, attempt, args, kwargs, native={"thread": True})
            except WorkerCrashed:
                # The control row for crash recovery: an at-least-once queue that notices the loss at
                # once and delivers the same attempt again, as acks_late with an instant requeue would.
                self._push(time.monotonic(), job)
                continue
            if outcome.ok:
                self.done += not is_probe(task)  # a start-up probe is not one of the run's jobs
                continue
            if outcome.retry:
                if not outcome.deferred:  # a breaker deferral is not one of the task's retries
                    runtime.fire_retry(task, job_id, outcome.exc, outcome.attempt, args, kwargs)
                # Due exactly `delay` after the attempt ended: the timer is the only source of lateness.
                due = time.monotonic() - (time.time_ns() - outcome.finished_ns) / 1e9 + (outcome.delay or 0.0)
                self._push(due, (task, args, kwargs, job_id, attempt + 1))
            else:
                self.done += 1
                self.failed.append(job_id)
                runtime.fire_failure(task, job_id, outcome.exc, outcome.tb, outcome.attempt, args, kwargs,
                                     worker=f"{HOST}:{os.getpid()}:{threading.current_thread().name}")

    def requeue(self, record: dict[str, Any]) -> str:
        raise BackendError("the reference backend runs in-process: its jobs end with the run that ran them")

    def native_terminal_count(self) -> int | None:
        return self.done

    def native_failures(self) -> dict[str, Any]:
        return {"store": "reference failed list", "job_ids": sorted(self.failed)}

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        # In-process: what the stopped workers had not run yet went with them.
        with self._cond:
            waiting = {entry.job[3] for entry in self._heap}
        return {"jobs": {j: ["reference timer heap"] if j in waiting else [] for j in job_ids},
                "recovery": {"reference timer heap": "never: the in-process queue ends with the run"}}

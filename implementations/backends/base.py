"""The one small interface every backend implements (YCSB's ``DB``), plus shared worker handling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from implementations.core.config import ENV_VAR, AppConfig
from implementations.core.procs import spawn, terminate
from implementations.recording.events import EventSink, RedisSink
from implementations.recording.filesink import FileSink

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.runtime.wrapper import Runtime

SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


class BackendError(RuntimeError):
    """A backend that cannot start or cannot be reached."""


@dataclass(frozen=True)
class Wiring:
    """What a backend is given, on the client side and in its workers: the run's config, the app's tasks by
    name (the app's own mapping, so a task registered later is seen), and the recorder: the shared attempt
    wrapper that times, injects faults and writes every event. A backend reaches nothing else of the app."""

    config: AppConfig
    tasks: Mapping[str, Task]
    runtime: Runtime


class Backend(ABC):
    """Client side of one queue library: enqueue jobs, start and stop its real workers."""

    name: ClassVar[str]
    libraries: ClassVar[tuple[str, ...]] = ()
    # perf_counter() when native_terminal_count() last went up, where a backend can tell it better than the
    # moment the driver saw the final count (see the Celery backend's stalled RETRY states).
    native_done_at: float | None = None
    stale_states = 0  # jobs the library's own store left unfinished although they had ended
    # ``concurrency`` runs as more worker processes (RQ) or threads (reference), not as more slots of one worker.
    concurrency_as_workers: ClassVar[bool] = False

    def probes_per_worker(self, concurrency: int) -> int:
        """How many start-up probes one worker can take off the queue before it has run its first
        (harness/bench/startup.py): one by default, a worker that takes one job at a time."""
        return 1

    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring
        self.config = wiring.config
        self.tasks = wiring.tasks
        self.runtime = wiring.runtime

    # -- the interface ----------------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        """Put one job on the queue through the library's own API."""

    @abstractmethod
    def start_workers(self, count: int, concurrency: int) -> float:
        """Start real workers; return seconds until all were ready."""

    @abstractmethod
    def stop_workers(self, timeout: float = 10.0) -> None: ...

    def spawned_ns(self) -> dict[int, int]:
        """Each worker index started so far, with the wall-clock ns at which the harness spawned it (the start
        of its start-up, implementations/runtime/startup.py)."""
        workers = getattr(self, "workers", None)
        return dict(workers.spawned_ns) if isinstance(workers, ProcessWorkers) else {}

    @classmethod
    @abstractmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        """Worker side: run the library's native worker in this process until told to stop."""

    def native_failures(self) -> dict[str, Any]:
        """What the library's own bookkeeping says failed, for cross-checking the failure log."""
        return {}

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        """Where each of ``job_ids`` (jobs never seen terminal) still is in the library's own stores, read once
        the workers have stopped: ``{"jobs": {job_id: [store, …]}, "recovery": {store: when it would come
        back}}``; an empty list means the job is in no store (lost). ``{}``: this backend cannot search."""
        return {}

    def attempt_errors(self, job_id: str) -> dict[str, Any]:
        """The errors the backend stored for job ``job_id``'s failed attempts, where the library keeps job
        metadata: ``{"errors": how many, "last": exc_type of the latest}`` ({}: not readable this way)."""
        return {}

    def native_terminal_count(self) -> int | None:
        """Jobs of this run the library itself holds as finished or failed for good (None: cannot tell).

        With the history off (``record_history=false``), this is how the driver knows the run is over. It is
        polled while the workers are measured, so it must cost the broker next to nothing: a keyspace SCAN
        here made ARQ's workers ~25% faster than with no such load (docs/performance.md)."""
        return None

    def requeue(self, record: dict[str, Any]) -> str:
        """Run a terminally failed job again through the library's own API; returns the job id it runs as.

        The default is a new ``apply_async`` with the same task, arguments and id (Celery's way).
        """
        task = self.tasks[record["task"]]
        task.apply_async(record.get("args") or (), record.get("kwargs") or {}, task_id=record["job_id"],
                         meta={"requeued_from": record["job_id"]})
        return str(record["job_id"])

    def revive_workers(self) -> list[dict[str, Any]]:
        """Restart workers that died during the run; what was restarted (empty: all alive)."""
        workers = getattr(self, "workers", None)
        return workers.revive() if isinstance(workers, ProcessWorkers) else []

    def worker_cpu_s(self) -> float | None:
        """CPU seconds the worker processes have used so far (None: not measurable, e.g. in-process)."""
        workers = getattr(self, "workers", None)
        return workers.cpu_seconds() if isinstance(workers, ProcessWorkers) else None

    @classmethod
    def make_sink(cls, config: AppConfig) -> EventSink:
        """Where this backend's events go, built before the backend (its recorder writes to it)."""
        if not config.redis_url:
            raise BackendError(f"backend {cls.name!r} needs a Redis URL")
        shared = RedisSink(config.redis_url, config.prefix, config.failure_log)
        if config.events_file:
            return FileSink(config.events_file, shared)
        return shared

    def state(self, job_id: str) -> dict[str, Any] | None:
        return self.runtime.sink.state(job_id)

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for lib in self.libraries:
            try:
                out[lib] = version(lib)
            except PackageNotFoundError:
                out[lib] = "not installed"
        return out

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing to close
        pass


class ProcessWorkers:
    """Real worker processes (``python -m implementations.processes.worker``), each in its own process group."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.procs: list[subprocess.Popen[bytes]] = []
        self._concurrency = 1
        self._next_index = 0
        self.spawned_ns: dict[int, int] = {}  # worker index -> wall clock (ns) just before it was spawned

    def _spawn(self, index: int, concurrency: int) -> subprocess.Popen[bytes]:
        cfg = self.backend.config
        env = dict(os.environ)
        env[ENV_VAR] = cfg.to_json()
        env["PYTHONPATH"] = SOURCE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        log_dir = cfg.options.get("log_dir")
        cmd = [sys.executable, "-m", "implementations.processes.worker", "--concurrency", str(concurrency),
               "--index", str(index)]
        log = os.path.join(log_dir, f"{cfg.backend}-worker-{index}.log") if log_dir else None
        self.spawned_ns[index] = time.time_ns()
        return spawn(cmd, env=env, log_path=log)

    def start(self, count: int, concurrency: int, *, ready_timeout: float = 60.0) -> float:
        cfg = self.backend.config
        log_dir = cfg.options.get("log_dir")
        sink = self.backend.runtime.sink
        start = time.monotonic()
        first = len(self.procs)
        self._concurrency = concurrency
        for i in range(first, first + count):
            self.procs.append(self._spawn(i, concurrency))
        self._next_index = first + count
        deadline = start + ready_timeout
        while sink.ready_count() < first + count:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise BackendError(f"{cfg.backend} worker exited with code {dead[0].returncode} during start-up"
                                   + (f" (log: {log_dir})" if log_dir else ""))
            if time.monotonic() > deadline:
                raise BackendError(f"{cfg.backend} workers not ready after {ready_timeout:.0f}s")
            time.sleep(0.05)
        return time.monotonic() - start

    def revive(self) -> list[dict[str, Any]]:
        """Replace every worker that has died, as a process supervisor (systemd ``Restart=always``,
        Kubernetes) would: a crash then costs what the library's own recovery costs, not the worker."""
        revived = []
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is None:
                continue
            terminate(proc, timeout=0.5)  # whatever it forked (work horse, pool children) goes with it
            index, self._next_index = self._next_index, self._next_index + 1
            self.procs[i] = self._spawn(index, self._concurrency)
            revived.append({"pid": proc.pid, "exit_code": code, "new_pid": self.procs[i].pid, "index": index})
        return revived

    def stop(self, timeout: float = 10.0) -> None:
        # Warm shutdown first: only the leader gets SIGTERM, so it can let its work horse / pool child
        # finish and store the result. Signalling the whole group at once made Celery's parent see its
        # pool child die and record a finished task as FAILURE (WorkerLostError).
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            terminate(proc, timeout=2.0)  # whatever is left of the group, then SIGKILL
        self.procs.clear()

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) of every live worker process group: the workers, what they forked
        and are still running (a Celery pool), and what they forked and reaped (RQ's work horses).

        Linux only (reads /proc); None elsewhere. Workers that died and were replaced are not counted."""
        groups = {p.pid for p in self.procs if p.poll() is None}
        if not groups or not os.path.isdir("/proc"):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    # Fields after the parenthesised command name; pgrp is 5th, utime..cstime 14th-17th.
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue  # gone between listdir and open
            if int(fields[2]) in groups:
                total += sum(int(f) for f in fields[11:15])
        return total / ticks

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


class ProcessBackend(Backend):
    """A backend whose workers are real processes (``ProcessWorkers``): every library's but the control's."""

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self.workers = ProcessWorkers(self)

    def start_workers(self, count: int, concurrency: int) -> float:
        return self.workers.start(count, concurrency)

    def stop_workers(self, timeout: float = 10.0) -> None:
        self.workers.stop(timeout)

"""The shared attempt wrapper: the one place that times attempts, injects faults and writes history.

Backends call ``Runtime.run_attempt`` once per native execution and translate its ``Outcome`` into
their own retry mechanism; they call ``fire_retry`` / ``fire_failure`` from their native hooks.
Backends never time anything themselves (YCSB's DBWrapper rule).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from implementations.core.faults import Fault, FaultPlan, plan_key
from implementations.core.policy import resolve_exception
from implementations.recording import schema
from implementations.recording.events import CLOCK_SKEW_NS, HOST, EventSink, now_ns
from implementations.recording.joblog import job_logger, log_attempt
from implementations.runtime.alerts import Alerts, webhook_url
from implementations.runtime.attempt import (
    WORKER_PID_ENV,
    BoundTask,
    Outcome,
    Request,
    RetryRequested,
    WorkerCrashed,
    as_timeout,
    exc_type_name,
    jsonable,
    retry_delay,
)
from implementations.runtime.breaker import Breakers, CircuitOpen
from implementations.runtime.startup import PROBE_TASK, run_probe

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.core.config import AppConfig


class Runtime:
    """The recorder, one per process and app config: sink, fault plan and run identity.

    ``in_process``: the backend runs its workers as threads of this process (the control), so there is no worker
    main to send alerts, no shared Redis for breakers, and a crash must unwind instead of killing the process."""

    def __init__(self, config: AppConfig, sink: EventSink, *, in_process: bool) -> None:
        cfg = config
        self.config = config
        self.sink = sink
        self.in_process = in_process
        self.plan = FaultPlan.from_list(cfg.faults, seed=cfg.seed).scaled(cfg.time_scale)
        self.base = {"cell_id": cfg.cell_id, "backend": cfg.label, "scenario": cfg.scenario}
        self._t0 = 0
        self.alerts: Alerts | None = None
        if cfg.options.get("alert_webhook"):
            # In-process backends (reference) have no worker main to run a sender: they queue in memory.
            shared = cfg.redis_url if not in_process else None
            self.alerts = Alerts(webhook_url(cfg.options["alert_webhook"]), prefix=cfg.prefix, redis_url=shared,
                                 window_s=float(cfg.options.get("alert_window_s", 60.0)))
        # Off only to measure the harness's own cost: no history, no failure log, the backend's count alone.
        self.record = bool(cfg.options.get("record_history", True))
        self._joblog = job_logger(str(cfg.options["log_json"])) if cfg.options.get("log_json") else None
        # Native schedules: the library computes each retry's delay (docs/schedules.md). The in-process reference
        # backend has no library of its own: it keeps the plan's delays in both modes.
        self.schedule = cfg.schedule
        self.native = cfg.schedule == "native" and not in_process
        self._breakers: Breakers | None = None
        self._breakers_lock = threading.Lock()  # reference workers are threads: one shared state per task

    @property
    def breakers(self) -> Breakers:
        # Built on first use: only tasks with a breaker policy need one (and its Redis client).
        with self._breakers_lock:
            if self._breakers is None:
                cfg = self.config
                self._breakers = Breakers(prefix=cfg.prefix,
                                          redis_url=cfg.redis_url if not self.in_process else None)
            return self._breakers

    def _elapsed(self) -> float | None:
        """Seconds since the run's first enqueue (published by the driver); only outages need it."""
        if not self.plan.time_dependent:
            return None
        if not self._t0:
            self._t0 = self.config.t0_ns or self.sink.t0() or 0
        return (time.time_ns() - self._t0) / 1e9 if self._t0 else None

    def emit(self, *events: schema.Event) -> None:
        """Record ``events`` (built by ``implementations.recording.schema``) in one write to the sink (one round
        trip to Redis); a job's terminal event, when there is one, last. Off (``record_history=false``): the
        caller builds nothing either (``self.record``), so the baseline pays nothing of what recording does."""
        if not self.record:
            return
        self.sink.emit(*events)
        if self._joblog is not None:
            for event in events:
                if event["type"] == "attempt":
                    log_attempt(self._joblog, event)

    def emit_enqueue(self, job_id: str, task: str, ts_ns: int, countdown: float | None,
                     meta: dict[str, Any] | None) -> None:
        """Record that the library now holds job ``job_id`` (``meta``'s fields added to the event)."""
        if self.record:
            self.emit(schema.enqueue(self.base, job_id=job_id, task=task, ts_ns=ts_ns, countdown=countdown,
                                     meta=meta))

    # -- one attempt ------------------------------------------------------------------------------
    def run_attempt(self, task: Task, job_id: str, attempt: int, args: tuple[Any, ...],
                    kwargs: dict[str, Any], native: dict[str, Any] | None = None,
                    store_error: Callable[[dict[str, Any]], None] | None = None,
                    cancel: threading.Event | None = None) -> Outcome:
        """Run attempt ``attempt`` (1-based, the backend's own count) and record it.

        ``cancel`` lets a backend whose time limit cannot interrupt a thread (ARQ's asyncio timeout)
        stop an injected ``timeout`` fault; the attempt then fails with ``TimeoutError``.
        """
        if task.name == PROBE_TASK:  # the start-up probe: no fault, breaker or history, not one of the run's jobs
            return run_probe(self, job_id, attempt)
        breaker = self.breakers.get(task) if task.policy.breaker_fail_max else None
        if breaker is not None:
            attempt -= self.sink.deferrals(job_id)
        fault = self.plan.fault_for(plan_key(job_id), attempt, elapsed_s=self._elapsed()) if self.plan.rules else None
        if fault is not None and fault.kind == "crash" and not self.sink.first_time(f"crash:{job_id}:{attempt}"):
            # A crash is one event: the worker died once. The copy a backend delivers again (acks_late,
            # an expired in-progress key) runs normally, as it would after a real machine failure.
            fault = None
        record, name, pid, native, base, emit = self.record, task.name, os.getpid(), native or {}, self.base, self.emit
        started = 0

        def call_dependency() -> Any:
            # Inside the breaker: while it is open this never runs, and no attempt is recorded.
            nonlocal started
            started = now_ns()
            if record:
                emit(schema.attempt_start(base, job_id=job_id, task=name, attempt=attempt, host=HOST, pid=pid,
                                          started_ns=started, fault=fault.kind if fault else None, native=native))
            self._inject(fault, task, cancel)
            if task.bind:
                return task.fn(BoundTask(task, Request(job_id, attempt - 1, args, kwargs)), *args, **kwargs)
            return task.fn(*args, **kwargs)

        try:
            value = breaker.call(call_dependency) if breaker is not None else call_dependency()
        except CircuitOpen as exc:
            if started:  # raised by the task body itself: an ordinary failure
                return self._record_failure(task, job_id, attempt, exc, fault, started, native, store_error)
            return self._defer(task, job_id, attempt, exc.wait)
        except BaseException as exc:  # noqa: B036 - every failure is recorded, then handed back
            if isinstance(exc, (KeyboardInterrupt, SystemExit, WorkerCrashed)):
                raise
            return self._record_failure(task, job_id, attempt, as_timeout(exc, task.time_limit), fault, started,
                                        native, store_error)
        finished = now_ns()
        if record:
            emit(schema.attempt(base, job_id=job_id, task=name, attempt=attempt, host=HOST, pid=pid, started_ns=started,
                                finished_ns=finished, outcome="success", fault=fault.kind if fault else None,
                                native=native),
                 schema.terminal(base, job_id=job_id, task=name, state="success", attempts=attempt, ts_ns=finished,
                                 result=jsonable(value)))
        return Outcome(ok=True, value=value, fault=fault, started_ns=started, finished_ns=finished, attempt=attempt)

    def _record_failure(self, task: Task, job_id: str, attempt: int, exc: BaseException, fault: Fault | None,
                        started: int, native: dict[str, Any],
                        store_error: Callable[[dict[str, Any]], None] | None) -> Outcome:
        outcome = self._failed(task, job_id, attempt, exc, fault, started)
        exc_type, exc_message = exc_type_name(outcome.exc or exc), str(outcome.exc or exc)
        if store_error is not None:
            store_error({"attempt": attempt, "exc_type": exc_type, "exc_message": exc_message,
                         "traceback": outcome.tb, "failed_ns": outcome.finished_ns})
        if self.record:
            self.emit(schema.attempt(self.base, job_id=job_id, task=task.name, attempt=attempt, host=HOST,
                                     pid=os.getpid(), started_ns=started, finished_ns=outcome.finished_ns,
                                     outcome="retry" if outcome.retry else "failure", exc_type=exc_type,
                                     exc_message=exc_message, fault=fault.kind if fault else None,
                                     expected_delay=outcome.delay, native=native))
        outcome.attempt = attempt
        return outcome

    def _defer(self, task: Task, job_id: str, attempt: int, wait: float) -> Outcome:
        # Fail fast without calling the dependency, and come back when the breaker may half-open. The
        # native retry this causes is not one of the policy's: the deferral count is subtracted again.
        now = now_ns()
        self.sink.add_deferral(job_id)
        self.emit(schema.deferral(self.base, job_id=job_id, task=task.name, attempt=attempt, host=HOST,
                                  pid=os.getpid(), started_ns=now, delay=wait))
        exc = CircuitOpen(f"circuit breaker for {task.name} is open: deferred {wait:.3f}s", wait)
        return Outcome(ok=False, exc=exc, retry=True, delay=wait, started_ns=now, finished_ns=now,
                       attempt=attempt, deferred=True, _tb="")

    def _inject(self, fault: Fault | None, task: Task, cancel: threading.Event | None = None) -> None:
        if fault is None:
            return
        scale = self.config.time_scale
        in_process = self.in_process
        if fault.kind == "crash":
            if in_process:  # killing this process would kill the harness: the reference worker unwinds
                raise WorkerCrashed(f"injected crash of {HOST}:{os.getpid()}")
            # SIGKILL: no finally blocks, no handlers — what an OOM kill looks like. Each worker leads its
            # own process group (RQ's work horse starts a session of its own), so "worker" signals the
            # group of the worker process itself, and with it everything that worker forked.
            leader = os.environ.get(WORKER_PID_ENV)
            if fault.target == "worker" and leader:
                os.killpg(int(leader), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        if fault.kind == "slow":
            time.sleep(fault.ms / 1000 * scale)
            return
        if fault.kind == "timeout":
            limit = task.time_limit
            if limit and in_process:
                time.sleep(limit)  # the reference backend enforces the limit exactly, by construction
                raise TimeoutError(f"time limit of {limit:g}s exceeded")
            if limit:
                # Outlive the backend's own time limit so that its native enforcement fires: a signal in
                # RQ and Celery interrupts the sleep, ARQ's cancellation sets ``cancel``.
                if cancel is None:
                    time.sleep(limit + 5)
                elif cancel.wait(limit + 5):
                    raise TimeoutError(f"time limit of {limit:g}s exceeded (the job was cancelled)")
        exc_cls = resolve_exception(fault.exc or "ConnectionError")
        raise exc_cls(f"injected {fault.kind} fault")

    def _failed(self, task: Task, job_id: str, attempt: int, exc: BaseException, fault: Fault | None,
                started: int) -> Outcome:
        policy = task.policy
        retries_done = attempt - 1
        delay: float | None = None
        real = exc
        if isinstance(exc, RetryRequested):
            real = exc.exc or exc
            retry = retries_done < policy.max_retries
            if retry:
                # An explicit countdown is the caller's in both modes; without one, the plan's or the library's.
                delay = (exc.countdown * policy.time_scale if exc.countdown is not None
                         else None if self.native else retry_delay(policy, self.config.seed, job_id, retries_done))
        else:
            retry = policy.will_retry(exc, retries_done)
            if retry and not self.native:  # native: the library computes the delay (None here)
                delay = retry_delay(policy, self.config.seed, job_id, retries_done)
        return Outcome(ok=False, exc=real, retry=retry, delay=delay, fault=fault, started_ns=started,
                       finished_ns=now_ns())

    # -- what the library itself did (read by the backend from the library's own data) -------------
    def record_schedule(self, job_id: str, attempt: int, *, due_ns: int | None, source: str,
                        handed_ns: int | None = None, delay_s: float | None = None) -> None:
        """One "schedule" event: after failed attempt ``attempt`` (1-based) the library will run the job again
        at ``due_ns`` (wall clock, None: at once / unknown), as read from its own data (``source``).

        ``delay_s`` defaults to ``due_ns`` minus ``handed_ns``, the moment the wrapper handed the failure to the
        library (after its own recording and ``on_retry``; the moment of observation when the backend cannot
        tell it): the delay the library really scheduled, its own rounding and overheads included, the
        harness's not."""
        if not self.record:
            return
        observed = now_ns()
        if due_ns is not None:
            # An injected skew (docs/multi-host.md) stands for the whole host's clock: the library's too.
            due_ns += CLOCK_SKEW_NS
        if delay_s is None and due_ns is not None:
            delay_s = (due_ns - (handed_ns or observed)) / 1e9
        self.emit(schema.schedule(self.base, job_id=job_id, attempt=int(attempt), due_ns=due_ns, delay_s=delay_s,
                                  source=source, observed_ns=observed, schedule=self.schedule, pid=os.getpid()))

    def record_native_terminal(self, task: str, job_id: str, attempts: int, exc: BaseException | None, *,
                               source: str) -> None:
        """The library failed the job for good on its own (e.g. ARQ's ``max_tries`` exceeded): a terminal event
        with the error the library stored, and deliberately no failure record and no ``on_failure``: the
        Celery-style handler never ran, and that is the finding."""
        if not self.record:
            return
        self.emit(schema.terminal(self.base, job_id=job_id, task=task, state="failure", attempts=attempts,
                                  ts_ns=now_ns(), exc_type=exc_type_name(exc) if exc is not None else "",
                                  exc_message=str(exc or ""), source=source, schedule=self.schedule, pid=os.getpid()))

    # -- callbacks (called from each backend's native hook) ----------------------------------------
    def fire_retry(self, task: Task, job_id: str, exc: BaseException | None, attempt: int,
                   args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.record:
            self.emit(schema.callback(self.base, name="on_retry", job_id=job_id, task=task.name, attempt=attempt,
                                      ts_ns=now_ns()))
        if task.on_retry is not None:
            task.on_retry(job_id, exc, "", args, kwargs, attempt)

    def fire_failure(self, task: Task, job_id: str, exc: BaseException | None, tb: str, attempts: int,
                     args: tuple[Any, ...], kwargs: dict[str, Any], *, worker: str = "") -> dict[str, Any]:
        """The terminal failure: one failure record, then the task's Celery-style ``on_failure``."""
        failed = now_ns()
        record = {
            **self.base, "task": task.name, "job_id": job_id, "args": list(args), "kwargs": kwargs,
            "exc_type": exc_type_name(exc) if exc is not None else "", "exc_message": str(exc or ""),
            "traceback": tb, "attempts": attempts,
            "enqueued_ns": self.sink.enqueued_ns(job_id) if self.record else None, "failed_ns": failed,
            "worker": worker or f"{HOST}:{os.getpid()}",
        }
        if self.record:
            self.sink.record_failure(
                record,
                schema.callback(self.base, name="on_failure", job_id=job_id, task=task.name, attempt=attempts,
                                ts_ns=failed),
                schema.terminal(self.base, job_id=job_id, task=task.name, state="failure", attempts=attempts,
                                ts_ns=failed, exc_type=record["exc_type"], exc_message=record["exc_message"]))
        if self.alerts is not None:
            self.alerts.notify(record)  # queued, never sent from here: a slow webhook cannot hold the job
        if task.on_failure is not None:
            task.on_failure(job_id, exc, tb, args, kwargs, attempts)
        return record

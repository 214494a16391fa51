"""Worker side of the RQ backend: the job function and the ``on_failure`` callback RQ calls."""

from __future__ import annotations

import os
import traceback
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq import Queue, SimpleWorker, Worker, get_current_job
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from implementations.backends.rq_backend import queue_name
from implementations.recording.events import HOST, now_ns

if TYPE_CHECKING:
    from implementations.backends.base import Wiring

_WIRING: Wiring | None = None  # set once per worker process; forked work horses inherit it


def _wiring() -> Wiring:
    if _WIRING is None:
        raise RuntimeError("the retrybench RQ worker was not started through implementations.processes.worker")
    return _WIRING


def attempt_of(job: Job) -> int:
    """RQ's own count: ``Retry`` decrements ``retries_left`` once per retry."""
    max_retries = int(job.meta.get("rb_max_retries", 0))
    if job.retries_left is None:
        return 1
    return max_retries - job.retries_left + 1


def execute(task_name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    wiring = _wiring()
    job = get_current_job()
    assert job is not None
    task = wiring.tasks[task_name]
    attempt = attempt_of(job)
    job._rb_attempt = attempt  # type: ignore[attr-defined]  # on_failure sees this very object

    def store_error(error: dict[str, Any]) -> None:
        # The lesson's pattern: the error of every failed attempt lives in the job's own metadata.
        job.meta["error"] = error
        job.meta.setdefault("errors", []).append(error)
        job.save_meta()

    native = {"retries_left": job.retries_left, "retry_intervals": job.retry_intervals,
              "worker": os.environ.get("RB_WORKER_NAME", "")}
    outcome = wiring.runtime.run_attempt(task, job.id, attempt, tuple(args), kwargs, native=native,
                                      store_error=store_error)
    job._rb_attempt = outcome.attempt  # type: ignore[attr-defined]  # the policy's count, deferrals excluded
    job._rb_deferred = outcome.deferred  # type: ignore[attr-defined]
    if outcome.ok:
        return outcome.value
    intervals = job.retry_intervals
    if not outcome.retry:
        # Not retryable under the policy (or a Retry-less job): tell RQ's own retry logic, which
        # reads ``retries_left`` right after our failure callback, that this failure is final.
        if job.retries_left:
            job.retries_left = 0
    elif intervals and job.retries_left and outcome.delay is not None:
        # self.retry(countdown=…) may ask for another delay than the schedule: RQ reads this slot next.
        intervals[max(len(intervals) - job.retries_left, 0)] = outcome.delay
    assert outcome.exc is not None
    raise outcome.exc


def on_failure(job: Job, connection: Redis, exc_type: type[BaseException], value: BaseException,
               tb: TracebackType | None) -> None:
    """RQ runs this after *every* failed execution, before deciding whether to retry."""
    wiring = _wiring()
    task_name, args, kwargs = job.args[0], tuple(job.args[1]), dict(job.args[2])
    task = wiring.tasks[task_name]
    # Read before ``retries_left`` was zeroed for a non-retryable error, so the count stays true.
    attempt = getattr(job, "_rb_attempt", None) or attempt_of(job)
    if job.should_retry:
        if not getattr(job, "_rb_deferred", False):  # a breaker deferral is not one of the task's retries
            wiring.runtime.fire_retry(task, job.id, value, attempt, args, kwargs)
        job._rb_handed_ns = now_ns()  # type: ignore[attr-defined]  # RQ's handle_job_failure runs its Retry next
        return
    text = "".join(traceback.format_exception(exc_type, value, tb))
    wiring.runtime.fire_failure(task, job.id, value, text, attempt, args, kwargs,
                             worker=f"{HOST}:{os.getpid()}")


def record_schedule(wiring: Wiring, job: Job, queue: Queue, attempt: int) -> None:
    """After RQ's own ``job.retry``: where RQ put the job, read back from RQ's data. A non-zero interval parks it
    in ``ScheduledJobRegistry`` scored by the due time in whole seconds (``calendar.timegm``, truncated); a zero
    one puts it straight back on the queue, stamped ``enqueued_at``."""
    runtime = wiring.runtime
    handed_ns = getattr(job, "_rb_handed_ns", None)  # None: the work horse died (the parent handles it)
    try:
        if job.get_status(refresh=False) == JobStatus.SCHEDULED:
            score = queue.connection.zscore(ScheduledJobRegistry(queue=queue).key, job.id)
            if score is not None:
                runtime.record_schedule(job.id, attempt, due_ns=int(score) * 1_000_000_000,
                                        source="rq:scheduled_registry", handed_ns=handed_ns)
                return
        elif job.enqueued_at is not None:
            at = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=timezone.utc)
            runtime.record_schedule(job.id, attempt, due_ns=datetime_ns(at), source="rq:enqueued_at",
                                    handed_ns=handed_ns)
            return
    except Exception:  # noqa: BLE001 - reading back is best effort: the retry itself is RQ's and has happened
        pass
    runtime.record_schedule(job.id, attempt, due_ns=None, source="rq:unavailable", handed_ns=handed_ns)


def datetime_ns(at: datetime) -> int:
    """An aware datetime as wall-clock ns, in integers (a float timestamp would lose the microseconds)."""
    delta = at - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


class ScheduleRecording:
    """Mixed into RQ's worker classes: after RQ handled a failure, record where its ``Retry`` put the job."""

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        # RQ's own rule (worker/base.py): a job stopped on request is never retried.
        retry = job.should_retry and getattr(self, "_stopped_job_id", None) != job.id
        # The policy's count (deferrals excluded), or RQ's own before it counts this retry down.
        attempt = getattr(job, "_rb_attempt", None) or attempt_of(job)
        # Whatever else this RQ release passes (3.0 adds ``execution``), passed on untouched.
        super().handle_job_failure(job, queue, *args, **kwargs)  # type: ignore[misc]
        if retry and not getattr(job, "_rb_deferred", False) and _WIRING is not None:
            record_schedule(_WIRING, job, queue, attempt)


class RecordingWorker(ScheduleRecording, Worker):
    pass


class RecordingSimpleWorker(ScheduleRecording, SimpleWorker):
    pass


def run(wiring: Wiring, index: int) -> None:
    global _WIRING
    _WIRING = wiring
    from implementations.core.procs import die_with_parent

    os.register_at_fork(after_in_child=die_with_parent)  # a work horse dies with its worker, even on SIGKILL
    cfg = wiring.config
    redis = Redis.from_url(cfg.redis_url or "")
    queue = Queue(queue_name(cfg.prefix), connection=redis)
    worker_cls = (RecordingSimpleWorker if cfg.options.get("rq_worker_class") == "SimpleWorker"
                  else RecordingWorker)
    name = f"{cfg.prefix}:w{index}:{os.getpid()}"
    os.environ["RB_WORKER_NAME"] = name
    # worker_ttl also sets how long an idle worker blocks waiting for a job (ttl - 15 s), and maintenance
    # (which finds the jobs of dead workers and restarts a crashed scheduler) only runs between waits.
    worker = worker_cls([queue], connection=redis, name=name,
                        maintenance_interval=int(cfg.options.get("rq_maintenance_interval", 600)),
                        worker_ttl=int(cfg.options.get("rq_worker_ttl", 420)))
    wiring.runtime.sink.mark_ready(name)
    worker.work(with_scheduler=cfg.options.get("rq_with_scheduler", True), logging_level="WARNING")

"""Client side of the RQ backend."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq import Callback, Queue, Retry
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from implementations.backends.base import ProcessBackend
from implementations.backends.rq_backend import queue_name
from implementations.runtime.attempt import retry_delay
from implementations.runtime.startup import is_probe

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring

EXECUTE = "implementations.backends.rq_backend.worker.execute"
ON_FAILURE = "implementations.backends.rq_backend.worker.on_failure"


def native_interval(task: Task) -> int | list[int | float]:
    """``Retry(interval=…)`` as an RQ user writes the policy: the ``intervals`` list exactly as given (RQ picks
    entries counting from the end of the list when it is shorter or longer than ``max``), one interval as a
    scalar, and a backoff as the list of its unjittered delays (RQ has neither backoff nor jitter); scaled by
    the run's time scale. RQ's ``Retry`` takes a scalar only as an ``int``: a fractional one stays a list."""
    policy = task.policy
    scale = policy.time_scale
    if policy.intervals is not None:
        given = [v * scale for v in policy.intervals]
    else:
        given = [policy.base_delay(n) * scale for n in range(max(1, policy.max_retries))]
        given = given[:1] if len(set(given)) == 1 else given  # a fixed delay: one interval
    whole: list[int | float] = [int(v) if float(v).is_integer() else v for v in given]  # what a user types
    if len(whole) == 1:
        return whole[0] if isinstance(whole[0], int) else whole
    return whole


def native_retry(task: Task) -> Retry:
    return Retry(max=task.policy.native_max_retries, interval=native_interval(task))  # type: ignore[arg-type]


class RQBackend(ProcessBackend):
    name = "rq"
    concurrency_as_workers = True
    libraries = ("rq", "redis")

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self.redis = Redis.from_url(self.config.redis_url or "")
        self.queue = Queue(queue_name(self.config.prefix), connection=self.redis)

    def retry_for(self, task: Task, job_id: str) -> Retry | None:
        """RQ's native ``Retry``: one interval per retry, so RQ's index (counted from the end of the list)
        lands on the delay the plan expects for that retry. Native schedules: ``native_retry``."""
        policy = task.policy
        if policy.native_max_retries == 0:
            return None
        if self.config.schedule == "native":
            return native_retry(task)
        schedule = [retry_delay(policy, self.config.seed, job_id, n) for n in range(policy.max_retries)] or [0.0]
        # With a circuit breaker, RQ gets room for deferrals; the worker writes each delay into the slot
        # RQ reads next, so the list stays right however the counts shift.
        return Retry(max=policy.native_max_retries, interval=schedule)

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        options: dict[str, Any] = {
            "job_id": job_id,
            "retry": self.retry_for(task, job_id),
            "on_failure": Callback(ON_FAILURE, timeout=60),
            "description": task.name,
            "meta": {"rb_max_retries": task.policy.native_max_retries},
            "job_timeout": task.time_limit or self.config.options.get("rq_job_timeout", 180),
            "failure_ttl": 7 * 24 * 3600,
        }
        if is_probe(task):
            # The start-up probe: never retried, and deleted once done (result_ttl=0), so that RQ's
            # FinishedJobRegistry, which native_terminal_count reads, only ever holds the run's jobs.
            options.update(retry=None, result_ttl=0)
        call_args = (task.name, list(args), kwargs)
        if countdown:
            self.queue.enqueue_in(timedelta(seconds=countdown), EXECUTE, *call_args, **options)
        else:
            self.queue.enqueue(EXECUTE, *call_args, **options)

    def start_workers(self, count: int, concurrency: int) -> float:
        # An RQ worker runs one job at a time: concurrency means more worker processes.
        return self.workers.start(count * max(1, concurrency), 1)

    @classmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        from implementations.backends.rq_backend.worker import run

        run(wiring, index)

    def native_failures(self) -> dict[str, Any]:
        registry = FailedJobRegistry(queue=self.queue)
        return {"store": "rq FailedJobRegistry", "job_ids": sorted(registry.get_job_ids())}

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        timeout = self.config.options.get("rq_job_timeout", 180)
        stores = {
            "rq queue": self.queue.get_job_ids(),
            "rq ScheduledJobRegistry": ScheduledJobRegistry(queue=self.queue).get_job_ids(),
            # A dead worker's job stays here until its heartbeat entry expires and a live worker's maintenance
            # (clean_registries) moves it on: rq.worker get_heartbeat_ttl, min(time left, 30 s) + 60 s.
            "rq StartedJobRegistry": StartedJobRegistry(queue=self.queue).get_job_ids(),
            "rq DeferredJobRegistry": DeferredJobRegistry(queue=self.queue).get_job_ids(),
        }
        found = {name: {i.split(":")[0] for i in ids} for name, ids in stores.items()}
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(f"rq:job:{job_id}")
        hashes = pipe.execute()
        jobs = {}
        for job_id, has_hash in zip(job_ids, hashes, strict=True):
            where = [name for name, ids in found.items() if job_id in ids]
            jobs[job_id] = where or (["rq job hash (in no queue or registry)"] if has_hash else [])
        return {"jobs": jobs, "recovery": {
            "rq queue": "when a worker is free",
            "rq ScheduledJobRegistry": "when its score comes due and a worker's scheduler moves it to the queue",
            "rq StartedJobRegistry": f"when its heartbeat entry expires, min({timeout} s job_timeout, 30 s) + 60 s "
                                     "after its worker died, at the next maintenance of a live worker",
            "rq DeferredJobRegistry": "when the jobs it depends on finish",
            "rq job hash (in no queue or registry)": "never by itself: only a manual requeue",
        }}

    def native_terminal_count(self) -> int | None:
        # Two ZCARDs in one round trip: the baseline polls this, and must cost the broker next to nothing.
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(FinishedJobRegistry(queue=self.queue).key)
        pipe.zcard(FailedJobRegistry(queue=self.queue).key)
        return sum(int(n) for n in pipe.execute())

    def requeue(self, record: dict[str, Any]) -> str:
        # RQ's own way (what `rq requeue` does): back on its queue, same job, same id, meta kept.
        FailedJobRegistry(queue=self.queue).requeue(record["job_id"])
        return str(record["job_id"])

    def close(self) -> None:
        self.redis.close()

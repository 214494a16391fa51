"""Client side of the Celery backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery.result import AsyncResult as CeleryResult

from ..base import Backend, ProcessWorkers
from .app import build_celery

if TYPE_CHECKING:
    from ..app import RetryApp, Task


class CeleryBackend(Backend):
    name = "celery"
    libraries = ("celery", "kombu", "redis")

    def __init__(self, app: RetryApp) -> None:
        super().__init__(app)
        self.celery = build_celery(app)
        self.workers = ProcessWorkers(self)

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        if task.name not in self.celery.tasks:
            # Tasks registered after the Celery app was built (tests, user scripts).
            self.celery = build_celery(self.app)
        self.celery.tasks[task.name].apply_async(args, kwargs, task_id=job_id, countdown=countdown)

    def start_workers(self, count: int, concurrency: int) -> float:
        return self.workers.start(count, concurrency)

    def stop_workers(self, timeout: float = 10.0) -> None:
        self.workers.stop(timeout)

    @classmethod
    def run_worker(cls, app: RetryApp, concurrency: int, index: int) -> None:
        from .worker import run

        run(app, concurrency, index)

    def native_failures(self) -> dict[str, Any]:
        import redis

        client = redis.Redis.from_url(self.config.redis_url or "", decode_responses=True)
        ids = sorted(client.hkeys(f"{self.config.prefix}:enqueued"))
        failed = [i for i in ids if CeleryResult(i, app=self.celery).state == "FAILURE"]
        return {"store": "celery result backend (state FAILURE)", "job_ids": failed}

    def close(self) -> None:
        self.celery.close()

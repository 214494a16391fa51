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
        self._counter: Any = None
        self._final: set[bytes] = set()

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

    def native_terminal_count(self) -> int | None:
        import redis

        # The result backend keeps one meta key per task; a retried task's says RETRY until its last run.
        # Keys already seen final are not read again: the polling must cost the broker as little as can be.
        if self._counter is None:
            self._counter = redis.Redis.from_url(self.config.redis_url or "")
        client = self._counter
        keys = [k for k in client.scan_iter(match=f"celery-task-meta-{self.config.run_id}*", count=1000)
                if k not in self._final]
        for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True):
            if raw is not None and (b'"status": "SUCCESS"' in raw or b'"status": "FAILURE"' in raw):
                self._final.add(key)
        return len(self._final)

    def close(self) -> None:
        self.celery.close()

"""Client side of the taskiq backend (taskiq is asyncio-only: a private loop serves the sync API)."""

from __future__ import annotations

import asyncio
import datetime
from typing import TYPE_CHECKING, Any

import redis
from taskiq.exceptions import SendTaskError
from taskiq.kicker import AsyncKicker

from implementations.backends.base import ProcessBackend
from implementations.backends.taskiq_backend.broker import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_UPDATE_INTERVAL_S,
    labels_for,
    make_broker,
    names,
    option,
)
from implementations.backends.taskiq_backend.stores import failed_results, find_jobs
from implementations.runtime.startup import is_probe

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


class TaskiqBackend(ProcessBackend):
    name = "taskiq"
    libraries = ("taskiq", "taskiq-redis", "redis")

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self._loop = asyncio.new_event_loop()
        self.broker, self.source = make_broker(self.config)
        # Declares the stream's consumer group (created at "$"): entries added before it exists are never delivered.
        self._loop.run_until_complete(self.broker.startup())
        self.redis = redis.Redis.from_url(self.config.redis_url or "")
        self.names = names(self.config.prefix)
        self.enqueued = 0  # jobs taskiq accepted from this client

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        kicker: AsyncKicker[Any, Any] = AsyncKicker(task.name, self.broker, labels_for(task)).with_task_id(job_id)
        if countdown:
            # taskiq's own deferral: a schedule in the source, sent by a worker's scheduler loop when due.
            at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=countdown)
            self._loop.run_until_complete(kicker.schedule_by_time(self.source, at, *args, **kwargs))
        else:
            try:
                self._loop.run_until_complete(kicker.kiq(*args, **kwargs))
            except SendTaskError as exc:
                # kiq wraps whatever the formatter raised: an argument JSON cannot encode is a refusal the
                # caller sees (pydantic's serialisation error is a ValueError), not a broker failure.
                if isinstance(exc.__cause__, (TypeError, ValueError)):
                    raise exc.__cause__ from exc
                raise
        if not is_probe(task):  # start-up probes are done before the run's first job: not counted
            self.enqueued += 1

    @classmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        from implementations.backends.taskiq_backend.worker import run

        run(wiring, concurrency, index)

    def native_failures(self) -> dict[str, Any]:
        return {"store": "taskiq results (is_err=True)",
                "job_ids": sorted(failed_results(self.redis, self.names["results"]))}

    def native_terminal_count(self) -> int | None:
        # One GET: the retry middleware's post_save counts each final result the result backend stored.
        return int(self.redis.get(self.names["done"]) or 0)

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        jobs = find_jobs(self.redis, self.names, self.source, job_ids)
        idle = option(self.config, "taskiq_idle_timeout", DEFAULT_IDLE_TIMEOUT_S)
        update = option(self.config, "taskiq_update_interval", DEFAULT_UPDATE_INTERVAL_S)
        tick = option(self.config, "taskiq_reclaim_tick", 0)
        return {"jobs": jobs, "recovery": {
            "taskiq stream, pending (delivered, unacked)":
                f"XAUTOCLAIM by a live worker once idle for idle_timeout ({idle:g} s), and only right after that "
                "worker's XREADGROUP returned new entries"
                + (f" (a tick every {tick:g} s)" if tick else ": never on an idle stream"),
            "taskiq stream, undelivered": "the next XREADGROUP of any worker",
            "taskiq schedule source": f"a worker's scheduler loop sends it once due (re-read every {update:g} s)",
        }}

    def requeue(self, record: dict[str, Any]) -> str:
        # The job's failed result keeps its id: a requeue under the same id would overwrite the native failure.
        import uuid

        new_id = f"{record['job_id']}.requeue-{uuid.uuid4().hex[:6]}"
        task = self.tasks[record["task"]]
        task.apply_async(record.get("args") or (), record.get("kwargs") or {}, task_id=new_id,
                         meta={"requeued_from": record["job_id"]})
        return new_id

    def close(self) -> None:
        self._loop.run_until_complete(self.broker.shutdown())
        self._loop.run_until_complete(self.source.shutdown())
        self._loop.close()
        self.redis.close()

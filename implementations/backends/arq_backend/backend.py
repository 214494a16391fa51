"""Client side of the ARQ backend (ARQ is asyncio-only: a private loop serves the sync API)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from implementations.backends.arq_backend import queue_name
from implementations.backends.base import ProcessBackend
from implementations.runtime.startup import is_probe

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


class ARQBackend(ProcessBackend):
    name = "arq"

    def probes_per_worker(self, concurrency: int) -> int:
        return max(1, concurrency)  # claims one job per free max_jobs slot
    libraries = ("arq", "redis")

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self._loop = asyncio.new_event_loop()
        self.settings = RedisSettings.from_dsn(self.config.redis_url or "")
        self.pool: ArqRedis = self._loop.run_until_complete(create_pool(self.settings))
        self.enqueued = 0  # jobs ARQ accepted from this client: with its queue's size, how many are done

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        job = self._loop.run_until_complete(self.pool.enqueue_job(
            task.name, *args, _job_id=job_id, _queue_name=queue_name(self.config.prefix),
            _defer_by=countdown or None, **kwargs))
        if job is None:
            raise ValueError(f"ARQ refused job id {job_id!r}: a job with that id exists")
        if not is_probe(task):  # start-up probes are done before the run's first job: not counted
            self.enqueued += 1

    @classmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        from implementations.backends.arq_backend.worker import run

        run(wiring, concurrency, index)

    def native_failures(self) -> dict[str, Any]:
        failed = self._loop.run_until_complete(self._failed_results())
        return {"store": "arq job results (success=False)", "job_ids": sorted(failed)}

    async def _failed_results(self) -> list[str]:
        # ARQ's all_job_results() loads every result in Redis at once (400 MB in the driver after 100,000
        # jobs): read this run's results a thousand at a time and keep only the ids of failures.
        from arq.constants import result_key_prefix
        from arq.jobs import deserialize_result

        failed: list[str] = []
        batch: list[bytes] = []

        async def flush() -> None:
            for raw in await self.pool.mget(batch) if batch else []:
                if raw is not None and not (r := deserialize_result(raw)).success and r.job_id:
                    failed.append(r.job_id)
            batch.clear()

        async for key in self.pool.scan_iter(match=f"{result_key_prefix}{self.config.cell_id}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await flush()
        await flush()
        return failed

    def native_terminal_count(self) -> int | None:
        # A job stays in its queue's sorted set while it waits, runs or waits for a retry; ARQ removes it
        # in the same transaction that stores its final result. One ZCARD, where counting the results
        # took a SCAN of the whole keyspace every poll (and that load made ARQ's own workers faster).
        waiting = self._loop.run_until_complete(self.pool.zcard(queue_name(self.config.prefix)))
        return self.enqueued - int(waiting)

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        return self._loop.run_until_complete(self._whereabouts(job_ids))

    async def _whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        from arq.constants import in_progress_key_prefix, job_key_prefix

        pipe = self.pool.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.zscore(queue_name(self.config.prefix), job_id)
            pipe.pttl(in_progress_key_prefix + job_id)
            pipe.exists(job_key_prefix + job_id)
        raw = await pipe.execute()
        jobs: dict[str, list[str]] = {}
        longest = 0
        for k, job_id in enumerate(job_ids):
            score, ttl_ms, has_job = raw[3 * k:3 * k + 3]
            where = []
            if score is not None:
                where.append("arq queue")
            if isinstance(ttl_ms, int) and ttl_ms != -2:
                where.append("arq in-progress key")
                longest = max(longest, ttl_ms)
            if not where and has_job:
                where.append("arq job key (in no queue)")
            jobs[job_id] = where
        return {"jobs": jobs, "recovery": {
            "arq queue": "when its score comes due and a worker polls (poll_delay) with no in-progress key on it",
            "arq in-progress key": f"when that key expires (job_timeout + 10 s after the try began): "
                                   f"within {longest / 1e3:.0f} s of the end of the run",
            "arq job key (in no queue)": "never by itself: only a manual requeue",
        }}

    def requeue(self, record: dict[str, Any]) -> str:
        # ARQ refuses an id whose result it still keeps (enqueue_job returns None), and that result is
        # the native failure record: so the job runs again under a derived id.
        import uuid

        new_id = f"{record['job_id']}.requeue-{uuid.uuid4().hex[:6]}"
        task = self.tasks[record["task"]]
        task.apply_async(record.get("args") or (), record.get("kwargs") or {}, task_id=new_id,
                         meta={"requeued_from": record["job_id"]})
        return new_id

    def close(self) -> None:
        self._loop.run_until_complete(self.pool.aclose())
        self._loop.close()

"""Client side of the SAQ backend (SAQ is asyncio-only: a private loop serves the sync API)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from saq import Job

from implementations.backends.base import ProcessBackend
from implementations.backends.saq_backend.native import (
    PACKED,
    job_timeout,
    make_queue,
    native_retry_fields,
    scheduled_at,
)
from implementations.backends.saq_backend.stores import failed_keys, whereabouts
from implementations.runtime.startup import is_probe

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


def job_ttl(options: dict[str, Any]) -> int:
    """``Job.ttl``: how long SAQ keeps a finished job's hash (its failed store); SAQ's default is 600 s."""
    return int(options.get("saq_ttl", 600))


class SAQBackend(ProcessBackend):
    name = "saq"
    libraries = ("saq", "redis")

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self._loop = asyncio.new_event_loop()
        self.queue = make_queue(self.config.redis_url or "", self.config.prefix)
        self._loop.run_until_complete(self.queue.connect())
        self.enqueued = 0  # jobs SAQ accepted from this client: with its incomplete set, how many are done

    def make_job(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                 countdown: float | None) -> Job:
        """One SAQ ``Job``: ``retries`` counts runs (``max_retries + 1``); the planned schedule sets
        ``retry_delay`` before each retry (worker side), the native one gives SAQ its own fields here."""
        fields: dict[str, Any] = native_retry_fields(task) if self.config.schedule == "native" else {}
        timeout = job_timeout(task, self.config)
        if timeout is not None:
            fields["timeout"] = timeout
        if self.config.options.get("saq_heartbeat"):
            fields["heartbeat"] = max(1, int(self.config.options["saq_heartbeat"]))
        if is_probe(task):
            # The start-up probe: one run, no time limit (a held probe waits for its release), not kept.
            fields.update(retries=1, timeout=0, heartbeat=0, ttl=-1)
        else:
            fields.update(retries=task.policy.native_max_retries + 1, ttl=job_ttl(self.config.options))
        return Job(function=task.name, kwargs={PACKED[0]: list(args), PACKED[1]: kwargs}, key=job_id,
                   scheduled=scheduled_at(countdown), **fields)

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        job = self.make_job(task, args, kwargs, job_id=job_id, countdown=countdown)
        if self._loop.run_until_complete(self.queue.enqueue(job)) is None:
            raise ValueError(f"SAQ refused job id {job_id!r}: a job with that key is queued or being aborted")
        if not is_probe(task):  # start-up probes are done before the run's first job: not counted
            self.enqueued += 1

    @classmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        from implementations.backends.saq_backend.worker import run

        run(wiring, concurrency, index)

    def native_failures(self) -> dict[str, Any]:
        failed = self._loop.run_until_complete(failed_keys(self.queue))
        return {"store": "saq job strings (status failed or aborted)", "job_ids": sorted(failed)}

    def native_terminal_count(self) -> int | None:
        # SAQ keeps a job in its queue's ``incomplete`` sorted set while it waits, runs or waits for a retry, and
        # removes it in the transaction that finishes it (RedisQueue._finish): one ZCARD, no SCAN.
        waiting = self._loop.run_until_complete(self.queue.count("incomplete"))
        return self.enqueued - int(waiting)

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        return self._loop.run_until_complete(whereabouts(self.queue, job_ids, self.config.options))

    def requeue(self, record: dict[str, Any]) -> str:
        # SAQ refuses a key that is still in its incomplete set; a failed job is not, and its kept hash (the
        # native failure record) is overwritten by the new run under the same key.
        return super().requeue(record)

    def close(self) -> None:
        self._loop.run_until_complete(self.queue.disconnect())
        self._loop.close()

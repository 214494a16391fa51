"""Client side of the Huey backend: a per-run ``RedisHuey`` (queue list, schedule zset, result hash)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from huey.utils import normalize_time

from implementations.backends.base import ProcessBackend
from implementations.backends.huey_backend.library import make_huey
from implementations.backends.huey_backend.worker import make_fn, meta_key
from implementations.runtime.attempt import retry_delay
from implementations.runtime.startup import is_probe

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


class HueyBackend(ProcessBackend):
    name = "huey"
    libraries = ("huey", "redis")

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self.huey, self.wrappers = make_huey(wiring, lambda t: make_fn(wiring, t))
        self.storage = self.huey.storage

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        options: dict[str, Any] = {"id": job_id}
        if countdown:
            options["eta"] = normalize_time(delay=countdown, utc=self.huey.utc)
        if is_probe(task):
            options["retries"] = 0
        elif self.config.schedule != "native" and task.policy.max_retries:
            # The plan's first delay, so Huey's own message shows it; the worker sets each later one.
            options["retry_delay"] = retry_delay(task.policy, self.config.seed, job_id, 0)
        self.huey.enqueue(self.wrappers[task.name].task_class(tuple(args), dict(kwargs), **options))

    @classmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        from implementations.backends.huey_backend.worker import run

        run(wiring, concurrency, index)

    def _results(self) -> dict[str, Any]:
        """Huey's result hash, decoded: job id → its return value or Huey's ``Error``."""
        out: dict[str, Any] = {}
        for field, raw in self.storage.conn.hscan_iter(self.storage.result_key, count=1000):
            try:
                out[field.decode()] = self.huey.serializer.deserialize(raw)
            except Exception:  # noqa: BLE001 - an undecodable result is nobody's failure record
                continue
        return out

    def native_failures(self) -> dict[str, Any]:
        from huey.utils import Error

        # Huey stores Error(metadata) as the result of a task whose retries are exhausted (Huey._execute).
        failed = [job_id for job_id, value in self._results().items()
                  if isinstance(value, Error) and not value.metadata.get("retries")]
        return {"store": "huey result store (Error, retries exhausted)", "job_ids": sorted(failed)}

    def attempt_errors(self, job_id: str) -> dict[str, Any]:
        import json

        key = meta_key(self.config.prefix, job_id)
        last = json.loads(self.storage.conn.hget(key, "error") or "{}")
        return {"errors": int(self.storage.conn.llen(f"{key}:errors")), "last": last.get("exc_type")}

    def native_terminal_count(self) -> int | None:
        # store_none=True and store_intermediate_errors=False: one field per job that ended (library.py).
        return int(self.storage.conn.hlen(self.storage.result_key))

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        st = self.storage
        queued = {t.id for t in self.huey._deserialize_all(st.conn.lrange(st.queue_key, 0, -1))}
        scheduled = {t.id for t in self.huey._deserialize_all(st.conn.zrange(st.schedule_key, 0, -1))}
        pipe = st.conn.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hexists(st.result_key, job_id)
        results = pipe.execute()
        jobs: dict[str, list[str]] = {}
        for job_id, has_result in zip(job_ids, results, strict=True):
            where = [name for name, ids in (("huey queue", queued), ("huey schedule", scheduled)) if job_id in ids]
            if has_result:
                where.append("huey result store")
            jobs[job_id] = where
        return {"jobs": jobs, "recovery": {
            "huey queue": "when a consumer's worker is free (BRPOP; popping is the acknowledgement)",
            "huey schedule": "when its eta comes due and a consumer's scheduler (every scheduler_interval, 1 s) "
                             "moves it to the queue",
            "huey result store": "never: Huey holds it as finished",
        }}

    def close(self) -> None:
        self.storage.conn.close()
        self.storage.pool.disconnect()

"""Client side of the Celery backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from implementations.backends.base import ProcessBackend
from implementations.backends.celery_backend.app import build_celery, queue_name
from implementations.runtime.startup import is_probe

# A result meta's state, matched in the raw JSON: the polling decodes nothing it does not need.
_SUCCESS, _FAILURE, _RETRY = b'"status": "SUCCESS"', b'"status": "FAILURE"', b'"status": "RETRY"'

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


STALL_S = 1.0  # no progress for this long, with tasks in RETRY: ask Celery whether anything is left


class CeleryBackend(ProcessBackend):
    name = "celery"

    def probes_per_worker(self, concurrency: int) -> int:
        return (int(self.config.options.get("celery_prefetch", 4)) + 1) * max(1, concurrency)  # prefetched
    libraries = ("celery", "kombu", "redis")

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self.celery = build_celery(wiring)
        self._counter: Any = None
        self._unfinished: list[str] = []  # ids enqueued through this client whose result is not final yet
        self._final: set[str] = set()
        self._seen = 0
        self._changed_at: float | None = None

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        if task.name not in self.celery.tasks:
            # Tasks registered after the Celery app was built (tests, user scripts).
            self.celery = build_celery(self.wiring)
        self.celery.tasks[task.name].apply_async(args, kwargs, task_id=job_id, countdown=countdown)
        if not self.runtime.record and not is_probe(task):
            self._unfinished.append(job_id)  # only the history-off baseline counts by asking Celery

    @classmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        from implementations.backends.celery_backend.worker import run

        run(wiring, concurrency, index)

    def native_failures(self) -> dict[str, Any]:
        import redis

        client = redis.Redis.from_url(self.config.redis_url or "")
        self.runtime.sink.flush()  # the ids come from the enqueue marks: a burst may still hold some
        keys = client.hkeys(f"{self.config.prefix}:enqueued")
        ids = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in keys)
        failed = [i for i, raw in self._result_metas(client, ids) if raw and _FAILURE in raw]
        return {"store": "celery result backend (state FAILURE)", "job_ids": failed}

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        import json

        import redis

        broker = self.config.broker_url or self.config.redis_url or ""
        if not broker.startswith(("redis://", "rediss://", "unix://")):
            return {}  # RabbitMQ holds unacked messages per channel, unreadable from outside: not searched
        client = redis.Redis.from_url(broker)
        wanted = set(job_ids)

        def task_id(raw: bytes | str) -> str | None:
            try:
                message = json.loads(raw)
                message = message[0] if isinstance(message, list) else message  # unacked: [message, exchange, key]
                return str(message["headers"]["id"])
            except (ValueError, KeyError, TypeError, IndexError):
                return None

        # kombu keeps a message of priority 3, 6 or 9 in "<queue>\x06\x16<priority>" (Channel._q_for_pri): a task
        # sent with a priority waits there, not in the queue's own list.
        name = queue_name(self.config.prefix)
        queued = {task_id(m) for key in (name, *(f"{name}\x06\x16{p}" for p in (3, 6, 9)))
                  for m in client.lrange(key, 0, 200_000)}
        unacked = {task_id(m) for m in client.hvals("unacked")} if client.type("unacked") == b"hash" else set()
        visibility = int(self.config.options.get("celery_visibility_timeout", 3600))
        client.close()
        jobs = {j: [name for name, ids in (("celery broker queue", queued), ("kombu unacked", unacked)) if j in ids]
                for j in wanted}
        return {"jobs": jobs, "recovery": {
            "celery broker queue": "when a worker is free",
            "kombu unacked": f"{visibility} s (visibility_timeout) after a worker took it, when a live worker's "
                             "restore sweep runs",
        }}

    def _result_metas(self, client: Any, ids: list[str]) -> Iterator[tuple[str, bytes | None]]:
        """Each id with its raw result meta (None: no result yet), a thousand a round trip (MGET)."""
        backend = self.celery.backend
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            yield from zip(chunk, client.mget([backend.get_key_for_task(i) for i in chunk]), strict=True)

    def native_terminal_count(self) -> int | None:
        import redis

        # The result backend keeps one meta key per task; a retried task's says RETRY until its last run.
        # Only the tasks not yet seen final are read, by key (MGET, a thousand a round trip): the polling
        # must cost the broker as little as can be, and a SCAN of the keyspace did not (see base.py).
        if self._counter is None:
            self._counter = redis.Redis.from_url(self.config.redis_url or "")
        client = self._counter
        retrying, still = [], []
        for job_id, raw in self._result_metas(client, self._unfinished):
            if raw is not None and (_SUCCESS in raw or _FAILURE in raw):
                self._final.add(job_id)
                continue
            if raw is not None and _RETRY in raw:
                retrying.append(job_id)
            still.append(job_id)
        self._unfinished = still
        now = time.perf_counter()
        if self._changed_at is None or len(self._final) != self._seen:
            if len(self._final) != self._seen:
                self.native_done_at = now
            self._seen, self._changed_at = len(self._final), now
        elif retrying and now - self._changed_at > STALL_S and self._idle():
            # The run has stalled on tasks stuck in RETRY: Celery stores RETRY after sending the retry, and
            # its guard against overwriting SUCCESS is a read then a write, so a retried copy that finished
            # first is overwritten (1 in ~1,000 retried tasks at interval 0). With nothing queued, reserved,
            # scheduled or running, they are done: counted, and the run's end stays the last real change.
            self._final.update(retrying)
            self._unfinished = [i for i in self._unfinished if i not in self._final]
            self._seen = len(self._final)
            self.stale_states += len(retrying)
        return len(self._final)

    def _idle(self) -> bool:
        """Nothing left anywhere in Celery: the queue is empty and no worker holds a task."""
        queue = queue_name(self.config.prefix)
        from kombu.exceptions import ChannelError

        with self.celery.connection_for_read() as conn:
            try:
                if conn.default_channel.queue_declare(queue, passive=True).message_count:
                    return False
            except ChannelError:
                pass  # Redis keeps no empty list: an empty queue is "not found"
        # limit: return once every live worker has answered, rather than always wait out the timeout.
        live = sum(p.poll() is None for p in self.workers.procs)
        inspect = self.celery.control.inspect(timeout=1.0, limit=live or None)
        return not any(any((getattr(inspect, what)() or {}).values()) for what in ("active", "reserved", "scheduled"))

    def close(self) -> None:
        self.celery.close()

"""Client side of the Dramatiq backend: messages through the actors' own broker, stores read from its Redis keys.

Redis keys of ``RedisBroker`` (``brokers/redis/dispatch.lua``), under the run's namespace ``ns``: the queue
``ns:q`` (a list of redis message ids) with its messages in ``ns:q.msgs``; delayed messages (a countdown, every
retry) in ``ns:q.DQ`` / ``ns:q.DQ.msgs``; fetched but not yet acked ids in ``ns:__acks__.<worker>.<queue>``;
the dead-letter queue ``ns:q.XQ`` (sorted by when they failed) / ``ns:q.XQ.msgs``; worker heartbeats in
``ns:__heartbeats__``. A message stays in its ``.msgs`` hash from enqueue until it is acked, and a retry is
enqueued on the delay queue before the failed run is acked, so a job is never in neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dramatiq.common import dq_name, xq_name
from dramatiq.message import Message
from redis import Redis

from implementations.backends.base import ProcessBackend
from implementations.backends.dramatiq_backend.broker import (
    broker_kind,
    declare_actors,
    make_broker,
    namespace,
    queue_name,
)
from implementations.runtime.startup import is_probe

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _client_body(task: Task) -> Any:
    def body(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Dramatiq actors run in retrybench's workers only")

    return body


class DramatiqBackend(ProcessBackend):
    name = "dramatiq"
    libraries = ("dramatiq", "redis", "pika")

    def __init__(self, wiring: Wiring) -> None:
        super().__init__(wiring)
        self.broker = make_broker(self.config)
        self.actors = declare_actors(wiring, self.broker, _client_body)
        self.queue = queue_name(self.config)
        self.on_redis = broker_kind(self.config) == "redis"
        self.redis = Redis.from_url(self.config.redis_url or "")
        self.enqueued = 0  # jobs Dramatiq accepted from this client: with its queues' sizes, how many are done

    def key(self, queue: str) -> str:
        return f"{namespace(self.config)}:{queue}"

    def enqueue(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, job_id: str,
                countdown: float | None) -> None:
        # Actor.send_with_options, with the job id as Dramatiq's message id (retries keep it).
        actor = self.actors.get(task.name)
        if actor is None:  # a task registered after the backend was made
            self.actors = declare_actors(self.wiring, self.broker, _client_body)
            actor = self.actors[task.name]
        message: Message[Any] = actor.message_with_options(args=tuple(args), kwargs=dict(kwargs)).copy(
            message_id=job_id)
        self.broker.enqueue(message, delay=int(countdown * 1000) if countdown else None)
        if not is_probe(task):
            self.enqueued += 1

    @classmethod
    def run_worker(cls, wiring: Wiring, concurrency: int, index: int) -> None:
        from implementations.backends.dramatiq_backend.worker import run

        run(wiring, concurrency, index)

    def _message_ids(self, hash_key: str) -> dict[str, str]:
        """redis message id -> Dramatiq message id (the job id) of every message in one ``.msgs`` hash."""
        out = {}
        for rid, data in self.redis.hscan_iter(hash_key, count=1000):
            try:
                out[_text(rid)] = Message.decode(data).message_id
            except Exception:  # noqa: BLE001 - an undecodable message is no job of this run
                continue
        return out

    def native_failures(self) -> dict[str, Any]:
        if not self.on_redis:
            return {"store": "dramatiq dead-letter queue (RabbitMQ XQ)", "job_ids": self._rabbitmq_dead_letters()}
        failed = self._message_ids(self.key(xq_name(self.queue)) + ".msgs")
        return {"store": "dramatiq dead-letter queue (XQ)", "job_ids": sorted(set(failed.values()))}

    def _rabbitmq_dead_letters(self) -> list[str]:
        """The ids in RabbitMQ's ``<queue>.XQ``, read without taking them: every message is fetched unacked on a
        channel of its own, and closing that channel gives them all back to the queue."""
        import pika

        from implementations.backends.dramatiq_backend.broker import rabbitmq_url

        ids: set[str] = set()
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url(self.config)))
        try:
            channel = connection.channel()
            while True:
                method, _props, body = channel.basic_get(xq_name(self.queue), auto_ack=False)
                if method is None:
                    break
                try:
                    ids.add(Message.decode(body).message_id)
                except Exception:  # noqa: BLE001 - an undecodable message is no job of this run
                    continue
        finally:
            connection.close()
        return sorted(ids)

    def native_terminal_count(self) -> int | None:
        if not self.on_redis:
            return None
        # Two HLENs in one round trip: what is still waiting, delayed or unacked.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hlen(self.key(self.queue) + ".msgs")
        pipe.hlen(self.key(dq_name(self.queue)) + ".msgs")
        return self.enqueued - sum(int(n) for n in pipe.execute())

    def whereabouts(self, job_ids: list[str]) -> dict[str, Any]:
        if not self.on_redis:
            return {}
        opts = self.config.options
        timeout_ms = int(opts.get("dramatiq_heartbeat_timeout", 60000))
        chance = int(opts.get("dramatiq_maintenance_chance", 1000))
        queue, delayed = self.key(self.queue), self.key(dq_name(self.queue))
        held = {**self._message_ids(queue + ".msgs"), **self._message_ids(delayed + ".msgs")}
        listed = {_text(r) for r in self.redis.lrange(queue, 0, -1)}
        listed_delayed = {_text(r) for r in self.redis.lrange(delayed, 0, -1)}
        unacked: dict[str, str] = {}
        acks_prefix = f"{namespace(self.config)}:__acks__."
        for key in self.redis.scan_iter(match=acks_prefix + "*", count=1000):
            worker = _text(key)[len(acks_prefix):].rsplit(".", 1)[0]
            for rid in self.redis.smembers(key):
                unacked[_text(rid)] = worker
        failed = self._message_ids(self.key(xq_name(self.queue)) + ".msgs")
        where_of: dict[str, list[str]] = {}
        for rid, job_id in held.items():
            if rid in listed:
                store = "dramatiq queue"
            elif rid in listed_delayed:
                store = "dramatiq delay queue (DQ)"
            elif rid in unacked:
                store = "dramatiq unacked (fetched by a worker)"
            else:
                store = "dramatiq message hash (in no queue)"
            where_of.setdefault(job_id, []).append(store)
        for job_id in set(failed.values()):
            where_of.setdefault(job_id, []).append("dramatiq dead-letter queue (XQ)")
        return {"jobs": {j: sorted(set(where_of.get(j, []))) for j in job_ids}, "recovery": {
            "dramatiq queue": "when a worker fetches it",
            "dramatiq delay queue (DQ)": "when a worker's delay consumer fetches it and its eta has passed",
            "dramatiq unacked (fetched by a worker)": f"when its worker's last heartbeat is {timeout_ms} ms old "
                                                      f"(heartbeat_timeout) and a maintenance of that queue runs "
                                                      f"({chance} in 10^6 broker commands: maintenance_chance)",
            "dramatiq message hash (in no queue)": "never by itself: only a manual requeue",
            "dramatiq dead-letter queue (XQ)": "never by itself: only a manual requeue",
        }}

    def close(self) -> None:
        if not self.on_redis:
            # RabbitMQ queues are durable and this run's alone (its id in the name): not left on a shared server.
            try:
                for name in (self.queue, dq_name(self.queue), xq_name(self.queue)):
                    self.broker.channel.queue_delete(name)
            except Exception:  # noqa: BLE001 - best effort: the server may be gone
                pass
        self.broker.close()
        self.redis.close()

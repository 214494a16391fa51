"""What the client and the workers of the Dramatiq backend share: the broker, the queue, the actors' options.

Facts from Dramatiq 2.2 that this module depends on:

- ``actor.py`` ``_queue_name_re``: a queue name is ``[a-zA-Z_][a-zA-Z0-9._-]*``, so the run's prefix (which has
  colons) goes into the Redis broker's ``namespace`` (every key is ``<namespace>:<queue>…``) and the queue is
  named after the run id.
- ``brokers/redis.py`` ``RedisBroker(heartbeat_timeout=60000, maintenance_chance=1000, dead_message_ttl=7 days)``:
  a worker whose last heartbeat is ``heartbeat_timeout`` ms old is dead, and the unacked messages it fetched
  go back on their queue at the next *maintenance* of that queue, which runs on ``maintenance_chance`` out of
  a million broker commands (``dispatch.lua``). ``-o dramatiq_heartbeat_timeout=…`` (ms) and
  ``-o dramatiq_maintenance_chance=…`` set them; the ``-recovery`` presets pass 5000 ms and 100000 (10 %).
- ``middleware/retries.py``: ``max_retries`` counts retries (``retries >= max_retries`` fails the message);
  a ``Retry(delay=ms)`` raised by the actor sets the delay, any other exception gets
  ``compute_backoff(retries, factor=min_backoff, max_backoff=max_backoff)``: ``min_backoff * 2**retries`` ms
  times ``uniform(1, 2)``, and when that exceeds ``max_backoff``, ``max_backoff * uniform(0.5, 1)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.broker import Broker

from implementations.runtime.startup import is_probe

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring
    from implementations.core.config import AppConfig

RABBITMQ_URL = "amqp://127.0.0.1:5672/%2F"  # no account named: pika uses RabbitMQ's local default one


def broker_kind(config: AppConfig) -> str:
    """``-o dramatiq_broker=…``; by default RabbitMQ when ``--broker-url`` is an AMQP URL (as Celery), else Redis."""
    default = "rabbitmq" if (config.broker_url or "").startswith("amqp") else "redis"
    kind = str(config.options.get("dramatiq_broker", default))
    if kind not in ("redis", "rabbitmq"):
        raise ValueError(f"dramatiq_broker must be redis or rabbitmq, got {kind!r}")
    return kind


def queue_name(config: AppConfig) -> str:
    """One queue per run (Dramatiq's queue-name rule: no colons)."""
    return "rb_" + re.sub(r"[^a-zA-Z0-9._-]", "_", config.cell_id)


def namespace(config: AppConfig) -> str:
    return f"{config.prefix}:dramatiq"


def rabbitmq_url(config: AppConfig) -> str:
    """``--broker-url`` when it is an AMQP URL (else it is the run's Redis), or the local RabbitMQ. Kombu's
    spelling of the default vhost, a trailing ``//``, is pika's empty vhost: it becomes ``/%2F``."""
    url = config.broker_url or ""
    if not url.startswith("amqp"):
        return RABBITMQ_URL
    return url[:-2] + "/%2F" if url.endswith("//") and url.count("/") == 4 else url


def make_broker(config: AppConfig) -> Broker:
    """The run's broker with Dramatiq's default middleware (AgeLimit, TimeLimit, ShutdownNotifications,
    Callbacks, Pipelines, Retries)."""
    opts = config.options
    if broker_kind(config) == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=rabbitmq_url(config))
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=config.redis_url, namespace=namespace(config),
                       heartbeat_timeout=int(opts.get("dramatiq_heartbeat_timeout", 60000)),
                       maintenance_chance=int(opts.get("dramatiq_maintenance_chance", 1000)))


def actor_options(task: Task, native: bool) -> dict[str, Any]:
    """The actor as a Dramatiq user declares the policy. ``max_retries`` is always the policy's (Dramatiq's
    default is 20); the backoff options only matter in native-schedule mode, where Dramatiq computes the delay:
    ``min_backoff`` is the policy's first delay (the backoff factor), ``max_backoff`` its cap (for a fixed delay
    or an interval list, the longest of them: Dramatiq knows only exponential backoff, always jittered)."""
    policy = task.policy
    options: dict[str, Any] = {"max_retries": 0 if is_probe(task) else policy.native_max_retries}
    if task.time_limit:
        options["time_limit"] = int(task.time_limit * 1000)
    if native:
        scale = policy.time_scale
        first = policy.base_delay(0) * scale
        if policy.intervals is None and policy.retry_backoff is not False:
            cap = policy.retry_backoff_max * scale
        else:
            cap = max(policy.base_delay(n) for n in range(max(1, policy.max_retries))) * scale
        options["min_backoff"] = max(1, int(first * 1000))
        options["max_backoff"] = max(1, int(cap * 1000))
    return options


def declare_actors(wiring: Wiring, broker: Broker, body: Callable[[Task], Callable[..., Any]]) -> dict[str, Any]:
    """One Dramatiq actor per task, named after it, on the run's queue."""
    native = wiring.config.schedule == "native"
    queue = queue_name(wiring.config)
    return {task.name: dramatiq.actor(body(task), actor_name=task.name, queue_name=queue, broker=broker,
                                      **actor_options(task, native))
            for task in wiring.tasks.values()}

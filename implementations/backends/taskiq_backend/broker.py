"""The taskiq objects both sides build the same way: broker, result backend, schedule source, task labels.

Facts from taskiq 0.13 / taskiq-redis 1.2 sources that this module depends on:

- ``RedisStreamBroker`` (taskiq_redis/redis_broker.py) delivers with ``XREADGROUP`` and acknowledges with ``XACK``
  after the result is saved (``Receiver.callback``, ``AcknowledgeType.WHEN_SAVED``): a message whose worker dies
  stays in the group's pending entries list. ``listen()`` reclaims such entries with ``XAUTOCLAIM`` (``idle_timeout``,
  600,000 ms by default) only after an ``XREADGROUP`` returned new messages (an empty read ``continue``s first). Its
  "autoclaim" lock is taken on a pipeline, so SET NX, XAUTOCLAIM and the release go out in one MULTI/EXEC: it never
  blocks and a killed worker cannot leave it set (``unacknowledged_lock_timeout`` changes nothing). ``ListQueueBroker``
  (``BRPOP``) has no acknowledgement at all: a killed worker's message is gone. So the stream broker, the one that
  gives at-least-once delivery.
- ``RedisStreamBroker`` creates its consumer group with ``consumer_id="$"``: only entries added after the group exists
  are delivered, so the client declares it (``startup``) before its first enqueue.
- ``SmartRetryMiddleware.on_send`` with a ``schedule_source`` calls ``kicker.schedule_by_time(source, now + delay)``;
  without one it kicks at once with a ``delay`` label that neither taskiq nor taskiq-redis reads (no delay at all
  on Redis). ``ListRedisScheduleSource`` files schedules under one list per minute; a ``TaskiqScheduler`` loop
  (taskiq/cli/scheduler/run.py ``SchedulerLoop``) re-reads them every ``update_interval`` (60 s in the CLI) and sends
  those due at whole-second ticks. Its ``_get_previous_time_schedules`` (run on every read) lists past minutes with
  a SCAN of the whole keyspace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskiq_redis import ListRedisScheduleSource, RedisAsyncResultBackend, RedisStreamBroker

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.core.config import AppConfig

DEFAULT_IDLE_TIMEOUT_S = 600.0  # RedisStreamBroker(idle_timeout=600000) ms
DEFAULT_XREAD_COUNT = 100  # RedisStreamBroker(xread_count=100)
DEFAULT_UPDATE_INTERVAL_S = 1.0  # `taskiq scheduler --update-interval 1`; the CLI's default is 60 s
TICK_TASK = "retrybench_taskiq_tick"  # a no-op kicked every taskiq_reclaim_tick s (0: never): see worker.py


def names(prefix: str) -> dict[str, str]:
    """Redis names of one run: the stream, its consumer group, the result keys' and the schedules' prefixes."""
    return {"stream": f"{prefix}:taskiq", "group": "taskiq", "results": f"{prefix}:taskiq-result",
            # No colon: ListRedisScheduleSource._parse_time_key reads the time as key.split(":", 2)[2], so with a
            # colon in the prefix no past minute's list is ever found again, and a retry not sent within the
            # minute it was due in is never sent.
            "schedules": prefix.replace(":", "_") + "_taskiq-schedule", "meta": f"{prefix}:taskiq-meta",
            "done": f"{prefix}:taskiq-done"}


def option(cfg: AppConfig, key: str, default: float) -> float:
    value = cfg.options.get(key)
    return float(default if value is None else value)


def make_broker(cfg: AppConfig) -> tuple[RedisStreamBroker, ListRedisScheduleSource]:
    """The stream broker with its result backend, and the schedule source delayed retries go through."""
    url, n = cfg.redis_url or "", names(cfg.prefix)
    broker = RedisStreamBroker(
        url, queue_name=n["stream"], consumer_group_name=n["group"],
        idle_timeout=int(option(cfg, "taskiq_idle_timeout", DEFAULT_IDLE_TIMEOUT_S) * 1000),
        xread_count=int(option(cfg, "taskiq_xread_count", DEFAULT_XREAD_COUNT)),
    ).with_result_backend(RedisAsyncResultBackend(url, prefix_str=n["results"]))
    from implementations.backends.taskiq_backend.schedule import ClaimingScheduleSource

    return broker, ClaimingScheduleSource(url, prefix=n["schedules"])


def labels_for(task: Task) -> dict[str, Any]:
    """The labels a taskiq user puts on the task: ``retry_on_error`` for the retry middleware, ``max_retries``
    counting runs (``_retries + 1 < max_retries`` retries: see SmartRetryMiddleware.on_error), and the time limit
    as ``timeout`` (``anyio.fail_after`` in ``Receiver.run_task``)."""
    labels: dict[str, Any] = {"retry_on_error": True, "max_retries": task.policy.native_max_retries + 1}
    if task.time_limit:
        labels["timeout"] = float(task.time_limit)
    return labels

"""What the SAQ backend hands SAQ's ``Job`` for a task: retry count, delay fields, timeout, key names.

Facts from saq 0.26 (``saq/job.py``, ``saq/utils.py``, ``saq/queue/redis.py``, ``saq/worker.py``):

- ``Job.retries`` counts runs, the first included: the worker adds 1 to ``Job.attempts`` before each run, and
  ``Job.retryable`` is ``retries > attempts``. ``retries = max_retries + 1`` gives Celery's ``max_retries + 1``
  runs. SAQ retries every exception (it has no exception filter).
- ``Job.next_retry_delay()``: ``retry_delay`` as is, or with ``retry_backoff`` (True, or a number: the cap in
  seconds) ``utils.exponential_backoff``: ``min(cap, retry_delay * 2 ** (attempts - 1)) * random()`` — always
  full jitter, unseeded.
- ``RedisQueue._retry`` reads that delay from the job object the worker holds, at the moment of the retry: a
  non-zero delay scores the job ``time.time() + delay`` (float seconds) in the ``incomplete`` sorted set, whence
  the worker's ``schedule`` timer (every 1 s by default) moves due jobs to the ``queued`` list; 0 pushes it
  straight back onto ``queued``.
- ``Job.scheduled`` (enqueue) is an ``int`` of epoch seconds.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from saq.queue.redis import RedisQueue

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.core.config import AppConfig

# Job.meta keys, as the RQ backend names them in RQ's job.meta: the error of every failed attempt in order, and the
# last one (SAQ's own ``Job.error`` keeps only the last attempt's traceback).
ERRORS, ERROR = "errors", "error"
PACKED = ("rb_args", "rb_kwargs")  # Job.kwargs keys: SAQ calls a function with keyword arguments only


def queue_name(prefix: str) -> str:
    """The run's SAQ queue: keys ``saq:<name>:queued|active|incomplete…`` and job hashes ``saq:job:<name>:<key>``."""
    return f"{prefix}:saq"


def native_retry_fields(task: Task) -> dict[str, Any]:
    """``retry_delay`` / ``retry_backoff`` as a SAQ user writes the policy, scaled by the run's time scale.

    A Celery backoff factor becomes SAQ's base ``retry_delay`` (SAQ doubles it per attempt from the first
    retry on, as Celery does), ``retry_backoff_max`` its cap; SAQ always jitters a backoff (full jitter), whatever
    ``retry_jitter`` says, and never jitters a fixed delay. SAQ has no interval list: ``intervals`` keeps its
    first entry as a fixed ``retry_delay``. Without backoff: ``default_retry_delay``."""
    policy = task.policy
    scale = policy.time_scale
    if policy.intervals is not None:
        return {"retry_delay": policy.intervals[0] * scale, "retry_backoff": False}
    if policy.retry_backoff is False:
        return {"retry_delay": float(policy.default_retry_delay) * scale, "retry_backoff": False}
    factor = 1.0 if policy.retry_backoff is True else float(policy.retry_backoff)
    return {"retry_delay": factor * scale, "retry_backoff": float(policy.retry_backoff_max) * scale}


def job_timeout(task: Task, config: AppConfig) -> int | None:
    """SAQ's ``Job.timeout`` (whole seconds; the worker cancels the coroutine after it, and the sweep calls an
    active job stuck once it has run longer): the task's time limit, else ``saq_job_timeout``, else None (SAQ's
    default, 10 s)."""
    limit = task.time_limit or config.options.get("saq_job_timeout")
    return max(1, math.ceil(float(limit))) if limit else None


def scheduled_at(countdown: float | None) -> int:
    """``Job.scheduled`` for a countdown: whole epoch seconds, rounded up so that the job never runs early."""
    return math.ceil(time.time() + countdown) if countdown else 0


def make_queue(redis_url: str, prefix: str) -> RedisQueue:
    """``saq.Queue.from_url`` for a Redis URL is ``RedisQueue.from_url``: typed as the Redis queue here."""
    return RedisQueue.from_url(redis_url, name=queue_name(prefix))

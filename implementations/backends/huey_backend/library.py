"""The ``RedisHuey`` both sides build for one run, with every task of the app registered on it.

Facts from huey 3.5 (``huey/api.py``) this backend relies on:

- ``Task.retries`` is the number of retries LEFT: ``Huey._execute`` computes ``final = not task.retries``
  after a failure, and ``_requeue_task`` decrements it once per retry. ``retries=N``: N retries after the
  first run, N + 1 runs.
- ``RetryTask`` does not consume a retry (``_execute`` adds one before ``_requeue_task`` takes it off), so a
  retry through it would never end: the worker re-raises the real error instead and lets Huey count.
- ``_requeue_task`` schedules a retry at now + ``task.retry_delay`` (then multiplies the delay by
  ``retry_backoff`` when set); ``retry_delay`` travels in the message, so a value set on the running task
  instance is the one this retry uses. A zero delay puts the task straight back on the queue.
- With ``store_none=True`` and ``store_intermediate_errors=False`` the result hash holds one entry per job
  that ended: its return value, or Huey's ``Error`` (metadata ``retries`` 0) once its retries are exhausted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from huey import RedisHuey

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


def huey_name(prefix: str) -> str:
    """One Huey per run: its name keys the queue list, schedule zset and result hash (RedisStorage strips
    every character but letters, digits and ``_`` from it)."""
    return f"{prefix}:huey"


def native_settings(task: Task, native: bool) -> dict[str, Any]:
    """``@huey.task(retries=…, retry_delay=…, retry_backoff=…)`` as a Huey user writes the policy.

    Planned schedules: the worker sets each retry's delay on the running task, so the task starts with no
    backoff. Native schedules: Huey's own ``retry_delay`` times ``retry_backoff`` per retry, i.e. the policy's
    first delay, doubled per retry for an exponential backoff (Huey has no cap, no jitter, no list of
    intervals: a list gives its first interval, fixed)."""
    policy = task.policy
    settings: dict[str, Any] = {"retries": policy.native_max_retries, "retry_delay": 0, "retry_backoff": 0}
    if native and policy.max_retries:
        settings["retry_delay"] = policy.base_delay(0) * policy.time_scale
        if policy.intervals is None and policy.retry_backoff is not False:
            settings["retry_backoff"] = 2.0
    if task.time_limit:
        settings["timeout"] = task.time_limit
    return settings


def make_huey(wiring: Wiring, fn_for: Any) -> tuple[RedisHuey, dict[str, Any]]:
    """The run's Huey and its task wrappers by task name; ``fn_for(task)`` gives the function Huey runs."""
    cfg = wiring.config
    huey = RedisHuey(huey_name(cfg.prefix), url=cfg.redis_url or "", results=True, store_none=True,
                     store_intermediate_errors=False, utc=True)
    native = cfg.schedule == "native"
    wrappers = {name: huey.task(context=True, name=name, **native_settings(task, native))(fn_for(task))
                for name, task in wiring.tasks.items()}
    return huey, wrappers

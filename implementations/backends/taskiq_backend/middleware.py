"""taskiq's SmartRetryMiddleware, told by the shared runtime what each failed attempt was and what was planned.

The retry itself is taskiq's: ``SmartRetryMiddleware.on_error`` checks the ``retry_on_error`` label, counts
``_retries + 1 < max_retries`` and re-sends the message, same task id, ``_retries`` + 1, through
``kicker.schedule_by_time(schedule_source, now + make_delay(...))``; the result of a retried attempt becomes
``NoResultError`` (not stored). This subclass only (1) skips taskiq's retry when the runtime says the error is
not retried (Celery's ``dont_autoretry_for``), (2) gives ``make_delay`` the planned delay (planned mode) or keeps
taskiq's own formula per task (native mode), (3) reads the schedule back and fires on_retry / on_failure.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import os
from typing import TYPE_CHECKING, Any

import redis
from taskiq import TaskiqMessage, TaskiqResult
from taskiq.exceptions import NoResultError
from taskiq.kicker import AsyncKicker
from taskiq.middlewares import SmartRetryMiddleware
from taskiq.serializers import PickleSerializer

from implementations.backends.taskiq_backend.broker import TICK_TASK, names
from implementations.backends.taskiq_backend.schedule import ClaimingScheduleSource
from implementations.recording.events import HOST, now_ns
from implementations.runtime.startup import PROBE_TASK

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring
    from implementations.runtime.attempt import Outcome

CANCEL_GRACE_S = 1.0
CURRENT: contextvars.ContextVar[TaskiqMessage] = contextvars.ContextVar("taskiq_message")


def attempt_of(message: TaskiqMessage) -> int:
    """taskiq's own run counter: ``_retries`` (set by the retry middleware on each re-send) + 1."""
    return int(message.labels.get("_retries", 0)) + 1


def native_middleware(task: Task) -> SmartRetryMiddleware:
    """The policy as a taskiq user writes it for SmartRetryMiddleware: ``default_delay`` the base delay,
    ``use_delay_exponent`` (delay * retries, capped at ``max_delay_exponent``) for a backoff, ``use_jitter`` (adds
    random() s) for jitter. taskiq has no interval list: an ``intervals`` policy gives its first interval."""
    p, scale = task.policy, task.policy.time_scale
    if p.intervals is not None:
        return SmartRetryMiddleware(default_delay=p.intervals[0] * scale, use_jitter=p.retry_jitter)
    if p.retry_backoff is False:
        return SmartRetryMiddleware(default_delay=p.default_retry_delay * scale, use_jitter=p.retry_jitter)
    factor = 1.0 if p.retry_backoff is True else float(p.retry_backoff)
    return SmartRetryMiddleware(default_delay=factor * scale, use_delay_exponent=True,
                                max_delay_exponent=p.retry_backoff_max * scale, use_jitter=p.retry_jitter)


class RecordingRetryMiddleware(SmartRetryMiddleware):
    def __init__(self, wiring: Wiring, source: ClaimingScheduleSource) -> None:
        super().__init__(schedule_source=source, default_retry_label=True)
        self.wiring = wiring
        self.native = {t.name: native_middleware(t) for t in wiring.tasks.values()}
        # (task id, attempt) -> the attempt's future and what it ran with; filled by the task wrapper.
        self.attempts: dict[tuple[str, int], tuple[asyncio.Future[Outcome], Task, tuple[Any, ...], dict[str, Any]]] = {}
        self._planned: dict[str, float | None] = {}
        self._handed: dict[str, tuple[int, int]] = {}  # task id -> (failed attempt, when handed to taskiq)
        self._redis = redis.Redis.from_url(wiring.config.redis_url or "")
        self._done_key = names(wiring.config.prefix)["done"]

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        CURRENT.set(message)  # read by the task wrapper: same asyncio task (Receiver.callback awaits run_task)
        return message

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        planned = self._planned.get(message.task_id)
        if planned is not None:
            return planned
        own = self.native.get(message.task_name)
        return own.make_delay(message, retries) if own is not None else super().make_delay(message, retries)

    async def on_send(self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float) -> None:
        # SmartRetryMiddleware.on_send with a schedule source, keeping the schedule it created to read back.
        assert isinstance(self.schedule_source, ClaimingScheduleSource)
        target = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delay)
        created = await kicker.schedule_by_time(self.schedule_source, target, *message.args, **message.kwargs)
        key = self.schedule_source.data_key(created.schedule_id)
        raw = await self._in_thread(lambda: self._redis.get(key))
        due = None
        if raw is not None:
            stored = PickleSerializer().loadb(raw)  # ListRedisScheduleSource's own serializer
            when = datetime.datetime.fromisoformat(str(stored["time"]))
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            due = int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
        # Not attempt_of(message): on_error's kicker shares message.labels and with_labels(_retries=…) updated it.
        attempt, handed = self._handed[message.task_id]
        await self._in_thread(lambda: self.wiring.runtime.record_schedule(
            message.task_id, attempt, due_ns=due, source="taskiq:schedule_source" if due else "taskiq:unavailable",
            handed_ns=handed))

    async def on_error(self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException) -> None:
        entry = self.attempts.pop((message.task_id, attempt_of(message)), None)
        if entry is None:
            return  # no attempt of ours ran (a tick, an undecodable argument): taskiq stores the error as it is
        future, task, args, kwargs = entry
        try:
            outcome = await asyncio.wait_for(asyncio.shield(future), CANCEL_GRACE_S)
        except asyncio.TimeoutError:
            return  # a body that ignored its cancellation: taskiq stores its TimeoutError, no retry, no on_failure
        if outcome.ok:
            return  # finished after taskiq's time limit fired: taskiq already counts it a failure
        runtime = self.wiring.runtime
        if outcome.retry:
            if not outcome.deferred:  # a breaker deferral is not one of the task's retries
                await self._in_thread(lambda: runtime.fire_retry(task, message.task_id, outcome.exc, outcome.attempt,
                                                                 args, kwargs))
            self._planned[message.task_id] = outcome.delay
            self._handed[message.task_id] = (outcome.attempt, now_ns())
            try:
                await super().on_error(message, result, exception)
            finally:
                self._planned.pop(message.task_id, None)
                self._handed.pop(message.task_id, None)
            if isinstance(result.error, NoResultError):
                return  # taskiq re-sent it
        await self._in_thread(lambda: runtime.fire_failure(task, message.task_id, outcome.exc, outcome.tb,
                                                           outcome.attempt, args, kwargs,
                                                           worker=f"{HOST}:{os.getpid()}"))

    async def post_save(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        # The result backend now holds this job's final result (retried attempts store none): one INCR, so the
        # driver can count finished jobs without a SCAN of the result keys.
        if message.task_name not in (PROBE_TASK, TICK_TASK):
            await self._in_thread(lambda: self._redis.incr(self._done_key))

    async def _in_thread(self, fn: Any) -> Any:
        # The loop's default executor: the task bodies' pool may be full of bodies that ignore their time limit.
        return await asyncio.get_running_loop().run_in_executor(None, fn)

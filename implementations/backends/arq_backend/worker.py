"""Worker side of the ARQ backend: one coroutine per task that maps outcomes onto ``arq.Retry``."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis
from arq.connections import RedisSettings
from arq.worker import JobExecutionFailed, Retry, Worker, func

from implementations.backends.arq_backend import queue_name
from implementations.recording.events import HOST, now_ns

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring

CANCEL_GRACE_S = 1.0


def make_job(wiring: Wiring, task: Task, executor: ThreadPoolExecutor, meta: redis.Redis) -> Any:
    runtime = wiring.runtime
    prefix = wiring.config.prefix

    async def job(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        job_id, attempt = ctx["job_id"], ctx["job_try"]  # ARQ's own try counter, from 1

        def store_error(error: dict[str, Any]) -> None:
            # ARQ keeps no per-job metadata: the equivalent of RQ's job.meta['error'] is a hash per job.
            key = f"{prefix}:arq-meta:{job_id}"
            pipe = meta.pipeline()
            pipe.hset(key, "error", json.dumps(error))
            pipe.rpush(f"{key}:errors", json.dumps(error))
            pipe.execute()

        native = {"job_try": attempt, "max_tries": task.policy.native_max_retries + 1}
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        # Task bodies are synchronous: run them off the event loop so max_jobs really run at once.
        attempt_done = loop.run_in_executor(
            executor, lambda: runtime.run_attempt(task, job_id, attempt, args, kwargs, native=native,
                                                  store_error=store_error, cancel=cancel))
        try:
            outcome = await asyncio.shield(attempt_done)
        except asyncio.CancelledError:
            # ARQ's job timeout (or shutdown) cancels this coroutine, but nothing can stop the thread.
            # A body that honours ``cancel`` (the injected timeout) ends at once and its TimeoutError is
            # retried below through arq.Retry: ARQ itself never retries a time-out. A body that does not
            # is left running, as ARQ would leave it; the job is then ARQ's to fail.
            cancel.set()
            try:
                outcome = await asyncio.wait_for(asyncio.shield(attempt_done), CANCEL_GRACE_S)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                raise asyncio.CancelledError() from None
        if outcome.ok:
            return outcome.value
        if outcome.retry:
            if not outcome.deferred:  # a breaker deferral is not one of the task's retries
                await loop.run_in_executor(
                    executor, lambda: runtime.fire_retry(task, job_id, outcome.exc, outcome.attempt, args, kwargs))
                ctx[SCHEDULED] = (outcome.attempt, now_ns())  # handed to ARQ now; read back by after_job_end
            raise Retry(defer=outcome.delay if outcome.delay is not None else native_defer(task, outcome.attempt))
        if (runtime.native and outcome.exc is not None and task.policy.is_retryable(outcome.exc)
                and not task.policy.breaker_fail_max):
            # Native schedule, retries used up: an ARQ user's ``except …: raise Retry(defer=…)`` does not know
            # this was the last try, and nothing rescues the real error. ARQ runs the job once more, finds
            # job_try > max_tries and stores JobExecutionFailed in its place (Worker.finish_failed_job below).
            # (With a circuit breaker, max_tries has room for deferrals: the wrapper must end the job itself.)
            ctx[SCHEDULED] = (outcome.attempt, now_ns())
            raise Retry(defer=native_defer(task, outcome.attempt))
        await loop.run_in_executor(
            executor, lambda: runtime.fire_failure(task, job_id, outcome.exc, outcome.tb, outcome.attempt, args, kwargs,
                                                   worker=f"{HOST}:{os.getpid()}"))
        assert outcome.exc is not None
        raise outcome.exc

    job.__qualname__ = task.name
    return job


SCHEDULED = "rb_scheduled"  # ctx key: (failed attempt, when it was handed to ARQ) of a job that raised arq.Retry


def native_defer(task: Task, attempt: int) -> float:
    """``Retry(defer=…)`` as an ARQ user writes the policy: ARQ has no backoff or jitter of its own, so the
    task computes the policy's delay before retry ``attempt`` itself (jitter unseeded, as ``random`` gives it)."""
    return task.policy.delay(attempt - 1)


async def after_job_end(wiring: Wiring, ctx: dict[str, Any], queue: str) -> None:
    """After ARQ's own ``finish_job``: the job's score in the queue's sorted set (ms) is when ARQ runs it again.
    A zero ``defer`` leaves the score as it was (the job is due at once)."""
    scheduled = ctx.get(SCHEDULED)
    if scheduled is None:
        return
    attempt, handed_ns = scheduled
    runtime = wiring.runtime
    loop = asyncio.get_running_loop()
    try:
        score = await ctx["redis"].zscore(queue, ctx["job_id"])
    except Exception:  # noqa: BLE001 - reading back is best effort: the retry itself is ARQ's and has happened
        score = None
    if score is None:
        due, source, delay = None, "arq:unavailable", None
    elif int(score) == int(ctx.get("score") or -1):
        due, source, delay = None, "arq:queue_score", 0.0  # Retry(defer=0): ARQ left the score alone
    else:
        due, source, delay = int(score) * 1_000_000, "arq:queue_score", None
    await loop.run_in_executor(None, lambda: runtime.record_schedule(
        ctx["job_id"], attempt, due_ns=due, source=source, handed_ns=handed_ns, delay_s=delay))


class RecordingWorker(Worker):  # type: ignore[misc]
    """ARQ's worker, plus a look at what ARQ stored when it fails a job on its own (``max_tries`` exceeded): in
    the native schedule that is the job's end, with JobExecutionFailed instead of the real error."""

    rb_wiring: Wiring

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        await super().finish_failed_job(job_id, result_data)
        wiring = self.rb_wiring
        if not wiring.runtime.native:
            return  # planned: the wrapper ends every job itself; what ARQ fails alone is the checkers' to find
        from arq.constants import result_key_prefix
        from arq.jobs import deserialize_result

        try:
            raw = await self.pool.get(result_key_prefix + job_id)
            result = deserialize_result(raw or result_data, deserializer=self.job_deserializer)
        except Exception:  # noqa: BLE001 - an unreadable result is not this kind of failure
            return
        exc = result.result
        # Only ARQ's own "max N retries exceeded": not an expired or undecodable (poison) job, which no task
        # body ever saw and which the run does not wait for.
        if not (isinstance(exc, JobExecutionFailed) and "retries exceeded" in str(exc)):
            return
        task = wiring.tasks.get(result.function)
        if task is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, lambda: wiring.runtime.record_native_terminal(
            task.name, job_id, max(1, int(result.job_try or 1) - 1), exc, source="arq:job_result"))


def run(wiring: Wiring, concurrency: int, index: int) -> None:
    cfg = wiring.config
    executor = ThreadPoolExecutor(max_workers=max(1, concurrency))
    meta = redis.Redis.from_url(cfg.redis_url or "")
    functions = [
        func(make_job(wiring, t, executor, meta), name=t.name, max_tries=t.policy.native_max_retries + 1,
             timeout=t.time_limit or cfg.options.get("arq_job_timeout", 300))
        for t in wiring.tasks.values()
    ]
    name = f"{cfg.prefix}:w{index}:{os.getpid()}"

    async def on_startup(ctx: dict[str, Any]) -> None:
        wiring.runtime.sink.mark_ready(name)

    settings = RedisSettings.from_dsn(cfg.redis_url or "")
    retries = int(cfg.options.get("arq_conn_retries", 0))
    if retries:
        # ARQ's worker exits on the first lost connection (redis-py's asyncio client retries nothing by
        # default); with this, commands retry with backoff across a broker restart.
        from redis.asyncio.retry import Retry as RedisRetry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        settings.retry = RedisRetry(ExponentialBackoff(cap=2, base=0.2), retries)
        settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    queue = queue_name(cfg.prefix)

    async def job_ended(ctx: dict[str, Any]) -> None:
        await after_job_end(wiring, ctx, queue)

    RecordingWorker.rb_wiring = wiring
    # after_job_end (ARQ >= 0.25) is where the queue score is read back; an older pinned ARQ runs without it.
    hooks: dict[str, Any] = ({"after_job_end": job_ended}
                             if "after_job_end" in inspect.signature(Worker.__init__).parameters else {})
    worker = RecordingWorker(functions=functions, queue_name=queue,
                             redis_settings=settings, max_jobs=max(1, concurrency),
                             poll_delay=float(cfg.options.get("arq_poll_delay", 0.5)), on_startup=on_startup,
                             handle_signals=True, log_results=False, **hooks)
    worker.run()

"""Worker side of the ARQ backend: one coroutine per task that maps outcomes onto ``arq.Retry``."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis
from arq.connections import RedisSettings
from arq.worker import Retry, Worker, func

from ..events import HOST
from .backend import queue_name

if TYPE_CHECKING:
    from ..app import RetryApp, Task

CANCEL_GRACE_S = 1.0


def make_job(app: RetryApp, task: Task, executor: ThreadPoolExecutor, meta: redis.Redis) -> Any:
    runtime = app.runtime
    prefix = app.config.prefix

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
            raise Retry(defer=outcome.delay)
        await loop.run_in_executor(
            executor, lambda: runtime.fire_failure(task, job_id, outcome.exc, outcome.tb, outcome.attempt, args, kwargs,
                                                   worker=f"{HOST}:{os.getpid()}"))
        assert outcome.exc is not None
        raise outcome.exc

    job.__qualname__ = task.name
    return job


def run(app: RetryApp, concurrency: int, index: int) -> None:
    cfg = app.config
    executor = ThreadPoolExecutor(max_workers=max(1, concurrency))
    meta = redis.Redis.from_url(cfg.redis_url or "")
    functions = [
        func(make_job(app, t, executor, meta), name=t.name, max_tries=t.policy.native_max_retries + 1,
             timeout=t.time_limit or cfg.options.get("arq_job_timeout", 300))
        for t in app.tasks.values()
    ]
    name = f"{cfg.prefix}:w{index}:{os.getpid()}"

    async def on_startup(ctx: dict[str, Any]) -> None:
        app.runtime.sink.mark_ready(name)

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
    worker = Worker(functions=functions, queue_name=queue_name(cfg.prefix),
                    redis_settings=settings, max_jobs=max(1, concurrency),
                    poll_delay=float(cfg.options.get("arq_poll_delay", 0.5)), on_startup=on_startup,
                    handle_signals=True, log_results=False)
    worker.run()

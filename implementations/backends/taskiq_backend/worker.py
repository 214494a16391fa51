"""Worker side of the taskiq backend: taskiq's ``Receiver`` and a ``TaskiqScheduler`` loop in one process.

This is what ``taskiq worker`` (taskiq/cli/worker/run.py ``start_listen``) and ``taskiq scheduler`` do, run
programmatically so that the ProcessWorkers supervisor starts, stops and restarts both: SIGTERM sets the
receiver's finish event (the CLI's soft kill), ``max_async_tasks`` = concurrency, sync task bodies run in a thread
pool of that size (the wrapper is a coroutine, as in the ARQ backend, so taskiq's ``timeout`` label cancels it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import redis
from taskiq import TaskiqScheduler
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver

from implementations.backends.taskiq_backend.broker import (
    DEFAULT_UPDATE_INTERVAL_S,
    TICK_TASK,
    labels_for,
    make_broker,
    names,
    option,
)
from implementations.backends.taskiq_backend.middleware import CURRENT, RecordingRetryMiddleware, attempt_of

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


def make_job(wiring: Wiring, task: Task, executor: ThreadPoolExecutor, retry: RecordingRetryMiddleware,
             meta: redis.Redis) -> Any:
    runtime = wiring.runtime
    meta_key = names(wiring.config.prefix)["meta"]

    async def job(*args: Any, **kwargs: Any) -> Any:
        message = CURRENT.get()
        job_id, attempt = message.task_id, attempt_of(message)

        def store_error(error: dict[str, Any]) -> None:
            # taskiq keeps no per-attempt metadata (a retried attempt's result is NoResultError, never stored): a
            # hash per job, as for ARQ.
            pipe = meta.pipeline()
            pipe.hset(f"{meta_key}:{job_id}", "error", json.dumps(error))
            pipe.rpush(f"{meta_key}:{job_id}:errors", json.dumps(error))
            pipe.execute()

        native = {"_retries": attempt - 1, "max_retries": int(message.labels.get("max_retries", 0))}
        cancel = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            executor, lambda: runtime.run_attempt(task, job_id, attempt, args, kwargs, native=native,
                                                  store_error=store_error, cancel=cancel))
        retry.attempts[(job_id, attempt)] = (future, task, args, kwargs)
        try:
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            # taskiq's time limit (anyio.fail_after on the ``timeout`` label) cancels this coroutine but cannot stop
            # the thread: a body that honours ``cancel`` ends at once; the middleware's on_error waits for it.
            cancel.set()
            raise
        if outcome.ok:
            retry.attempts.pop((job_id, attempt), None)
            return outcome.value
        assert outcome.exc is not None
        raise outcome.exc  # the real error: SmartRetryMiddleware.on_error re-sends it or taskiq stores it failed

    job.__qualname__ = task.name
    return job


async def tick() -> None:
    """A no-op: its only effect is that the worker that reads it runs RedisStreamBroker's reclaim pass."""


def run(wiring: Wiring, concurrency: int, index: int) -> None:
    cfg = wiring.config
    executor = ThreadPoolExecutor(max_workers=max(1, concurrency))
    broker, source = make_broker(cfg)
    retry = RecordingRetryMiddleware(wiring, source)
    broker.add_middlewares(retry)
    broker.is_worker_process = True
    meta = redis.Redis.from_url(cfg.redis_url or "")
    for task in wiring.tasks.values():
        broker.register_task(make_job(wiring, task, executor, retry, meta), task_name=task.name, **labels_for(task))
    broker.register_task(tick, task_name=TICK_TASK)
    name = f"{cfg.prefix}:w{index}:{os.getpid()}"
    asyncio.run(_serve(wiring, broker, source, executor, concurrency, name))


async def _serve(wiring: Wiring, broker: Any, source: Any, executor: ThreadPoolExecutor, concurrency: int,
                 name: str) -> None:
    cfg = wiring.config
    finish = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finish.set)
    receiver = Receiver(broker, executor=executor, validate_params=False, max_async_tasks=max(1, concurrency),
                        run_startup=False)
    await broker.startup()
    await source.startup()
    scheduler = SchedulerLoop(TaskiqScheduler(broker, [source]), event_loop=loop)
    update = timedelta(seconds=option(cfg, "taskiq_update_interval", DEFAULT_UPDATE_INTERVAL_S))
    helpers = [loop.create_task(scheduler.run(update_interval=update))]
    every = option(cfg, "taskiq_reclaim_tick", 0)
    if every > 0:
        helpers.append(loop.create_task(_ticks(broker, every)))
    wiring.runtime.sink.mark_ready(name)
    try:
        await receiver.listen(finish)
    finally:
        for helper in helpers:
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await helper
        with contextlib.suppress(Exception):
            await broker.shutdown()
        with contextlib.suppress(Exception):
            await source.shutdown()


async def _ticks(broker: Any, every: float) -> None:
    """Recovery setting ``taskiq_reclaim_tick``: RedisStreamBroker.listen() runs its XAUTOCLAIM pass only after an
    XREADGROUP returned new entries, so on an idle stream a dead worker's pending messages are never reclaimed.
    A tick task sent through the broker every ``every`` seconds gives some worker such a read."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(Exception):
            await AsyncKicker(TICK_TASK, broker, {}).kiq()

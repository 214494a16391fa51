"""Worker side of the SAQ backend: one coroutine per task that maps outcomes onto SAQ's own retry fields.

SAQ's worker (saq 0.26, ``saq/worker.py`` ``Worker.process``) runs ``function(ctx, **job.kwargs)`` under
``asyncio.wait_for(…, job.timeout)``; when the coroutine raises, it retries the job it holds (``job.retry``,
delay from ``Job.next_retry_delay()``) while ``job.retryable`` (``retries > attempts``), else finishes it
``failed``, storing the traceback in ``job.error``. SAQ has no exception filter: the wrapper decides with the
policy and tells SAQ through that same job object before raising — the delay of this retry
(``retry_delay``, backoff off) in the planned schedule, nothing in the native one, and ``retries = attempts``
(not retryable) for a final failure.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from saq import Worker

from implementations.backends.saq_backend.native import ERROR, ERRORS, PACKED, make_queue, native_retry_fields
from implementations.recording.events import HOST, now_ns
from implementations.runtime.attempt import Outcome, jsonable

if TYPE_CHECKING:
    from saq import Job

    from implementations.api.app import Task
    from implementations.backends.base import Wiring

# A time limit cancels the coroutine; the body's thread cannot be stopped. SAQ then waits
# ``cancellation_hard_deadline_s`` (1 s by default) for the coroutine to end before it retries or fails the job:
# the wrapper's own wait for an injected timeout to honour ``cancel`` stays well inside it.
CANCEL_GRACE_S = 0.5
SCHEDULED = "rb_scheduled"  # ctx key: (failed attempt, when it was handed to SAQ) of a job SAQ is to retry


def tell_saq(task: Task, job: Job, outcome: Outcome) -> None:
    """Set the fields SAQ reads when the coroutine has raised: synchronous, so they are in place even if SAQ
    stops waiting for a cancelled coroutine."""
    if not outcome.retry:
        job.retries = job.attempts  # Job.retryable is False: SAQ finishes the job with status failed
    elif outcome.delay is not None:  # the plan's delay, an explicit countdown, or a breaker deferral
        job.retry_delay, job.retry_backoff = outcome.delay, False


def make_function(wiring: Wiring, task: Task, executor: ThreadPoolExecutor) -> Any:
    runtime = wiring.runtime
    native_fields = native_retry_fields(task) if runtime.native else None

    async def settle(ctx: dict[str, Any], job: Job, outcome: Outcome, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> None:
        """The Celery-style callbacks of a failed attempt: ``on_retry`` per retry, ``on_failure`` once."""
        loop = asyncio.get_running_loop()
        if outcome.retry:
            if not outcome.deferred:  # a breaker deferral is not one of the task's retries
                await loop.run_in_executor(
                    executor, lambda: runtime.fire_retry(task, job.key, outcome.exc, outcome.attempt, args, kwargs))
            ctx[SCHEDULED] = (outcome.attempt, now_ns())  # handed to SAQ now; read back by after_process
            return
        await loop.run_in_executor(
            executor, lambda: runtime.fire_failure(task, job.key, outcome.exc, outcome.tb, outcome.attempt, args,
                                                   kwargs, worker=f"{HOST}:{os.getpid()}"))

    async def function(ctx: dict[str, Any], **packed: Any) -> Any:
        job: Job = ctx["job"]
        args, kwargs = tuple(packed.get(PACKED[0]) or ()), dict(packed.get(PACKED[1]) or {})
        attempt = job.attempts  # SAQ's own run counter, from 1 (Worker.process adds 1 before each run)
        if native_fields is not None:  # undo a deferral's or countdown's delay: SAQ's own backoff again
            job.retry_delay, job.retry_backoff = native_fields["retry_delay"], native_fields["retry_backoff"]
        errors: list[dict[str, Any]] = job.meta.setdefault(ERRORS, [])  # saved with the job on retry and finish

        def store_error(error: dict[str, Any]) -> None:
            errors.append(error)
            job.meta[ERROR] = error
        native = {"attempts": attempt, "retries": job.retries}
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        # Task bodies are synchronous: run them off the event loop so `concurrency` jobs really run at once.
        attempt_done = loop.run_in_executor(
            executor, lambda: runtime.run_attempt(task, job.key, attempt, args, kwargs, native=native,
                                                  store_error=store_error, cancel=cancel))
        pulse = asyncio.create_task(heartbeat(job)) if job.heartbeat else None
        try:
            outcome = await asyncio.shield(attempt_done)
        except asyncio.CancelledError:
            # SAQ's timeout (or its shutdown) cancels this coroutine, but nothing can stop the thread. A body that
            # honours ``cancel`` (the injected timeout) ends at once with TimeoutError, which is then settled like
            # any failure; SAQ itself retries a timed-out job while it is retryable. A body that does not is left
            # running, as SAQ would leave it, and the job is SAQ's to retry or fail.
            cancel.set()
            try:
                outcome = await asyncio.wait_for(asyncio.shield(attempt_done), CANCEL_GRACE_S)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                raise asyncio.CancelledError() from None
            finally:
                if pulse is not None:
                    pulse.cancel()
            if not outcome.ok:
                tell_saq(task, job, outcome)
                await settle(ctx, job, outcome, args, kwargs)
            raise
        if pulse is not None:
            pulse.cancel()
        if outcome.ok:
            return jsonable(outcome.value)  # SAQ stores the result as JSON
        tell_saq(task, job, outcome)
        await settle(ctx, job, outcome, args, kwargs)
        assert outcome.exc is not None
        raise outcome.exc

    function.__qualname__ = task.name
    return function


async def heartbeat(job: Job) -> None:
    """SAQ's heartbeat is the job's own: ``Job.heartbeat`` makes the sweep call an active job stuck once it has not
    been touched for that long, and a job beats by calling ``job.update()`` (saq/job.py). Twice per period."""
    while True:
        await asyncio.sleep(job.heartbeat / 2)
        try:
            await job.update()
        except Exception:  # noqa: BLE001 - a missed beat (broker restarting) is what the sweep is there to judge
            pass


async def after_process(wiring: Wiring, ctx: dict[str, Any]) -> None:
    """After SAQ's own retry (``RedisQueue._retry``): the job's score in the ``incomplete`` set (epoch seconds)
    is when it comes due; a zero delay leaves it at ``job.scheduled`` and pushes the job straight onto ``queued``."""
    scheduled = ctx.get(SCHEDULED)
    if scheduled is None:
        return
    attempt, handed_ns = scheduled
    job: Job = ctx["job"]
    queue = job.get_queue()
    try:
        score = await queue.redis.zscore(queue.namespace("incomplete"), job.id)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - reading back is best effort: the retry itself is SAQ's and has happened
        score = None
    if score is None:
        due, source, delay = None, "saq:unavailable", None
    elif float(score) == float(job.scheduled or 0):
        due, source, delay = None, "saq:incomplete_score", 0.0  # no delay: queued at once
    else:
        due, source, delay = int(float(score) * 1e9), "saq:incomplete_score", None
    await asyncio.get_running_loop().run_in_executor(None, lambda: wiring.runtime.record_schedule(
        job.key, attempt, due_ns=due, source=source, handed_ns=handed_ns, delay_s=delay))


def run(wiring: Wiring, concurrency: int, index: int) -> None:
    asyncio.run(serve(wiring, concurrency, index))


async def serve(wiring: Wiring, concurrency: int, index: int) -> None:
    cfg = wiring.config
    executor = ThreadPoolExecutor(max_workers=max(1, concurrency))
    queue = make_queue(cfg.redis_url or "", cfg.prefix)
    functions = [(t.name, make_function(wiring, t, executor)) for t in wiring.tasks.values()]
    name = f"{cfg.prefix}:w{index}:{os.getpid()}"

    async def startup(ctx: dict[str, Any]) -> None:
        wiring.runtime.sink.mark_ready(name)

    async def processed(ctx: dict[str, Any]) -> None:
        await after_process(wiring, ctx)

    # SAQ's timers: ``sweep`` (60 s) finds stuck active jobs, ``schedule`` (1 s) moves due retries to the queue.
    # Each is also the seconds of a Redis lock (SETEX) that lets one worker at a time run it: whole seconds >= 1.
    timers = {key: max(1, int(cfg.options[f"saq_{key}"])) for key in ("sweep", "schedule")
              if f"saq_{key}" in cfg.options}
    worker = Worker(queue, functions, id=name, concurrency=max(1, concurrency), startup=startup,
                    after_process=processed, timers=timers)  # type: ignore[arg-type]
    await queue.connect()
    try:
        await worker.start()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        await queue.disconnect()

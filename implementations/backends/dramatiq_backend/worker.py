"""Worker side of the Dramatiq backend: the actors' body, the recording middleware, and Dramatiq's own Worker.

Facts from Dramatiq 2.2 this depends on:

- ``worker.py`` ``WorkerThread.process_message``: the actor's exception goes to every middleware's
  ``after_process_message`` in order; ``Retries`` (last of the defaults) either calls ``message.fail()`` or
  ``broker.enqueue(message, delay=…)`` (which calls ``after_enqueue`` with the new message, ``eta`` in its
  options, in the same thread); then the consumer acks, or nacks a failed message onto the dead-letter queue.
  ``Broker.emit_after`` calls the middleware in *reverse* order, so ``Recording``, added just before ``Retries``,
  runs after it: it sees ``message.failed`` and fires the Celery-style ``on_failure`` then, once per job.
- ``Callbacks``' ``on_failure`` actor option sends a message after *every* failed run, and ``Retries``'
  ``on_retry_exhausted`` only when the count runs out (not for ``throws``): neither is Celery's final
  ``on_failure``, so neither is used.
- ``middleware/retries.py`` reads ``message.options["max_retries"]`` before the actor's option: a failure the
  policy does not retry sets it to the retries already done, and Dramatiq fails the message itself.
- ``middleware/time_limit.py``: ``TimeLimitExceeded`` is raised asynchronously in the worker thread
  (``PyThreadState_SetAsyncExc``), checked every ``interval`` (1 s); it lands only when the thread runs Python
  bytecode, never inside a blocking call. The injected ``timeout`` fault waits on an ``Interruptible`` event
  (Python-level waits of 50 ms), as a body doing Python work would, so Dramatiq's limit can stop it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import redis
from dramatiq import Middleware, Retry, Worker
from dramatiq.middleware import CurrentMessage, Retries, TimeLimit

from implementations.backends.dramatiq_backend.broker import declare_actors, make_broker
from implementations.recording.events import HOST, now_ns

if TYPE_CHECKING:
    from dramatiq.broker import Broker

    from implementations.api.app import Task
    from implementations.backends.base import Wiring
    from implementations.runtime.attempt import Outcome

_local = threading.local()  # per worker thread: the outcome of the message being processed, the retry handed over


class Interruptible(threading.Event):
    """An event whose ``wait`` returns to Python every 50 ms, so an asynchronous exception can land in it."""

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if step <= 0:
                return self.is_set()
            if super().wait(step):
                return True


def make_body(wiring: Wiring, broker: Broker, meta: redis.Redis | None) -> Any:
    runtime = wiring.runtime
    prefix = wiring.config.prefix
    limits = [m for m in broker.middleware if isinstance(m, TimeLimit)]

    def body_for(task: Task) -> Any:
        def body(*args: Any, **kwargs: Any) -> None:
            message = CurrentMessage.get_current_message()
            assert message is not None
            job_id = message.message_id
            retries = int(message.options.get("retries", 0))  # Dramatiq's own count, set by Retries

            def store_error(error: dict[str, Any]) -> None:
                # Dramatiq keeps only the last traceback, in the message's options: each error goes to a hash.
                if meta is None:
                    return
                key = f"{prefix}:dramatiq-meta:{job_id}"
                pipe = meta.pipeline()
                pipe.hset(key, "error", json.dumps(error))
                pipe.rpush(f"{key}:errors", json.dumps(error))
                pipe.execute()

            native = {"retries": retries, "max_retries": task.policy.native_max_retries}
            _local.outcome = None
            outcome = runtime.run_attempt(task, job_id, retries + 1, args, kwargs, native=native,
                                          store_error=store_error, cancel=Interruptible())
            for limit in limits:  # the attempt is over: a time limit must not strike the hand-over below
                limit.manager.remove_timeout(threading.get_ident())
            _local.outcome = outcome
            if outcome.ok:
                return None  # recorded by the wrapper; Dramatiq keeps no results without a Results backend
            assert outcome.exc is not None
            if outcome.retry:
                if not outcome.deferred:  # a breaker deferral is not one of the task's retries
                    runtime.fire_retry(task, job_id, outcome.exc, outcome.attempt, args, kwargs)
                    _local.handed = (job_id, outcome.attempt, now_ns())
                if outcome.delay is not None:  # the plan's delay (or an explicit countdown), in ms
                    raise Retry(f"{type(outcome.exc).__name__}: {outcome.exc}",
                                delay=int(round(outcome.delay * 1000))) from outcome.exc
                raise outcome.exc  # native schedule: Dramatiq's own backoff
            if retries < int(message.options.get("max_retries", task.policy.native_max_retries)):
                message.options["max_retries"] = retries  # final under the policy: Dramatiq fails it now
            raise outcome.exc

        body.__name__ = task.name
        return body

    return body_for


class Recording(Middleware):  # type: ignore[misc]
    """After ``Retries``: the final failure (``message.failed``) fires ``on_failure``; a retry's ``eta`` is
    recorded as the schedule Dramatiq keeps."""

    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring

    def after_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        handed = getattr(_local, "handed", None)
        if handed is None or delay is None or handed[0] != message.message_id:
            return
        _local.handed = None
        job_id, attempt, handed_ns = handed
        eta = message.options.get("eta")
        self.wiring.runtime.record_schedule(job_id, attempt, due_ns=int(eta) * 1_000_000 if eta is not None else None,
                                         source="dramatiq:eta", handed_ns=handed_ns)

    def after_process_message(self, broker: Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        outcome: Outcome | None = getattr(_local, "outcome", None)
        _local.outcome = None
        _local.handed = None
        if exception is None or not message.failed:
            return
        wiring = self.wiring
        task = wiring.tasks.get(message.actor_name)
        if task is None:
            return
        if outcome is None or outcome.ok or outcome.retry:
            # Dramatiq failed a job the wrapper had not ended (an error outside the attempt): its own verdict.
            attempts = int(message.options.get("retries", 1))
            wiring.runtime.record_native_terminal(task.name, message.message_id, attempts, exception,
                                               source="dramatiq:message.failed")
            return
        tb = outcome.tb or "".join(traceback.format_exception(exception))
        wiring.runtime.fire_failure(task, message.message_id, outcome.exc, tb, outcome.attempt,
                                 tuple(message.args), dict(message.kwargs), worker=f"{HOST}:{os.getpid()}")


def run(wiring: Wiring, concurrency: int, index: int) -> None:
    cfg = wiring.config
    broker = make_broker(cfg)
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(Recording(wiring), before=Retries)  # its after_* hooks run after Retries' (reverse order)
    meta = redis.Redis.from_url(cfg.redis_url) if cfg.redis_url else None
    declare_actors(wiring, broker, make_body(wiring, broker, meta))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    broker.emit_after("process_boot")  # what the dramatiq CLI does first: starts TimeLimit's timer thread
    worker = Worker(broker, worker_threads=max(1, concurrency),
                    worker_timeout=int(cfg.options.get("dramatiq_worker_timeout", 1000)))
    worker.start()
    wiring.runtime.sink.mark_ready(f"{cfg.prefix}:w{index}:{os.getpid()}")
    while not stop.wait(0.5):
        pass
    # Stops the threads, then requeues the messages it fetched but did not start (RedisBroker: requeue).
    worker.stop(timeout=int(cfg.options.get("dramatiq_shutdown_timeout_ms", 8000)))
    broker.close()

"""Worker side of the Huey backend: the function Huey runs for each task, Huey's signals, and its consumer.

Huey (``huey/api.py``, ``Huey._execute``) runs a task and, when it raises, emits ``SIGNAL_ERROR`` with the
exception, then either stores the error as the job's result (``final = not task.retries``) or emits
``SIGNAL_RETRYING`` and requeues it (``_requeue_task``: one retry fewer, eta now + ``retry_delay``, emitting
``SIGNAL_SCHEDULED``, or ``SIGNAL_ENQUEUED`` for no delay). The wrapper below tells Huey what the policy
decided through Huey's own task fields: ``retries = 0`` for a failure that must not be retried, the plan's
``retry_delay`` for the next retry. The Celery-style hooks hang on the signals: ``on_retry`` on
``SIGNAL_RETRYING``, ``on_failure`` on the final ``SIGNAL_ERROR`` (once, as Huey emits it once per failure).
"""

from __future__ import annotations

import calendar
import datetime
import json
import os
from typing import TYPE_CHECKING, Any

import redis
from huey import signals as S
from huey.consumer import Consumer

from implementations.backends.huey_backend.library import make_huey
from implementations.recording.events import HOST, now_ns
from implementations.runtime.startup import is_probe

if TYPE_CHECKING:
    from huey import RedisHuey
    from huey.api import Task as HueyTask

    from implementations.api.app import Task
    from implementations.backends.base import Wiring
    from implementations.runtime.attempt import Outcome

OUTCOME = "_rb_outcome"  # on Huey's task instance: the wrapper's Outcome of this execution
HANDED = "_rb_handed"  # on Huey's task instance: (failed attempt, when the retry was handed to Huey)


def attempt_of(task: Task, htask: HueyTask) -> int:
    """Huey's own count: ``retries`` starts at ``native_max_retries`` and loses one per retry."""
    return task.policy.native_max_retries - int(htask.retries or 0) + 1


def eta_ns(eta: datetime.datetime) -> int:
    """Huey's eta (naive UTC with ``utc=True``) as wall-clock ns, in integers."""
    return calendar.timegm(eta.utctimetuple()) * 1_000_000_000 + eta.microsecond * 1000


def meta_key(prefix: str, job_id: str) -> str:
    """The hash holding a job's latest error (``error``); ``<key>:errors`` lists every attempt's."""
    return f"{prefix}:huey-meta:{job_id}"


def make_fn(wiring: Wiring, own: Task, meta: redis.Redis | None = None) -> Any:
    """The function registered with Huey for ``own`` (``context=True``: Huey passes its task as ``task=``)."""
    prefix = wiring.config.prefix

    def run(*args: Any, task: HueyTask, **kwargs: Any) -> Any:
        htask = task
        job_id = htask.id

        def store_error(error: dict[str, Any]) -> None:
            # Huey keeps one result per job and no per-job metadata: every attempt's error goes to a list.
            if meta is not None:
                key = meta_key(prefix, job_id)
                pipe = meta.pipeline()
                pipe.hset(key, "error", json.dumps(error))
                pipe.rpush(f"{key}:errors", json.dumps(error))
                pipe.execute()

        native = {"retries": htask.retries, "retry_delay": htask.retry_delay, "pid": os.getpid()}
        outcome = wiring.runtime.run_attempt(own, job_id, attempt_of(own, htask), args, kwargs, native=native,
                                          store_error=store_error)
        if outcome.ok:
            return outcome.value
        outcome.extra["tb"] = outcome.tb  # formatted before the raise below adds this frame
        setattr(htask, OUTCOME, outcome)
        if not outcome.retry:
            htask.retries = 0  # Huey's own rule then makes this failure final
        elif outcome.delay is not None:
            htask.retry_delay = outcome.delay  # what _requeue_task schedules this retry with
        assert outcome.exc is not None
        raise outcome.exc

    run.__name__ = run.__qualname__ = own.name
    return run


def connect_signals(wiring: Wiring, huey: RedisHuey) -> None:
    runtime = wiring.runtime

    def outcome_of(htask: HueyTask) -> tuple[Task | None, Outcome | None]:
        return wiring.tasks.get(type(htask).__name__), getattr(htask, OUTCOME, None)

    @huey.signal(S.SIGNAL_ERROR)
    def on_error(_signal: str, htask: HueyTask, exc: BaseException | None = None) -> None:
        task, outcome = outcome_of(htask)
        if task is None or outcome is None or htask.retries:
            return  # not final: SIGNAL_RETRYING follows
        if outcome.retry:
            # Huey ran out of retries before the policy did (breaker deferrals used up its allowance).
            runtime.record_native_terminal(task.name, htask.id, outcome.attempt, outcome.exc, source="huey:retries")
            return
        runtime.fire_failure(task, htask.id, outcome.exc, outcome.extra.get("tb", ""), outcome.attempt,
                             tuple(htask.args), dict(htask.kwargs), worker=f"{HOST}:{os.getpid()}")

    @huey.signal(S.SIGNAL_RETRYING)
    def on_retrying(_signal: str, htask: HueyTask) -> None:
        task, outcome = outcome_of(htask)
        if task is None or outcome is None:
            return
        if not outcome.deferred:  # a breaker deferral is not one of the task's retries
            runtime.fire_retry(task, htask.id, outcome.exc, outcome.attempt, tuple(htask.args), dict(htask.kwargs))
            setattr(htask, HANDED, (outcome.attempt, now_ns()))

    @huey.signal(S.SIGNAL_SCHEDULED, S.SIGNAL_ENQUEUED)
    def on_requeued(signal_name: str, htask: HueyTask) -> None:
        # Right after _requeue_task stored the retry: its eta is what Huey's schedule zset is scored by.
        handed = getattr(htask, HANDED, None)
        if handed is None:
            return
        delattr(htask, HANDED)
        attempt, handed_ns = handed
        if signal_name == S.SIGNAL_SCHEDULED and htask.eta is not None:
            runtime.record_schedule(htask.id, attempt, due_ns=eta_ns(htask.eta), source="huey:schedule_eta",
                                    handed_ns=handed_ns)
        else:
            runtime.record_schedule(htask.id, attempt, due_ns=None, source="huey:queue", delay_s=0.0)

    @huey.signal(S.SIGNAL_COMPLETE)
    def on_complete(_signal: str, htask: HueyTask) -> None:
        task = wiring.tasks.get(type(htask).__name__)
        if task is not None and is_probe(task):
            huey.delete(htask.id)  # the result hash then counts the run's jobs alone (native_terminal_count)


def worker_type(wiring: Wiring) -> str:
    """Huey's default is threads; its ``timeout`` is enforced only in process workers (SIGALRM in
    ``ProcessEnvironment.timeout``; ``ThreadEnvironment`` inherits a no-op), so a task with a time limit gets
    process workers unless ``huey_worker_type`` says otherwise."""
    chosen = wiring.config.options.get("huey_worker_type")
    if chosen:
        return str(chosen)
    return "process" if any(t.time_limit for t in wiring.tasks.values()) else "thread"


class ReadyConsumer(Consumer):  # type: ignore[misc]
    """Huey's consumer, marking this worker ready once its scheduler and workers have started."""

    rb_ready: Any = None

    def start(self) -> None:
        super().start()
        if self.rb_ready is not None:
            self.rb_ready()


def run(wiring: Wiring, concurrency: int, index: int) -> None:
    from implementations.core.procs import die_with_parent

    os.register_at_fork(after_in_child=die_with_parent)  # process workers die with their consumer, even on SIGKILL
    cfg = wiring.config
    meta = redis.Redis.from_url(cfg.redis_url or "")
    huey, _ = make_huey(wiring, lambda t: make_fn(wiring, t, meta))
    connect_signals(wiring, huey)
    name = f"{cfg.prefix}:w{index}:{os.getpid()}"
    consumer = ReadyConsumer(
        huey, workers=max(1, concurrency), periodic=False, worker_type=worker_type(wiring),
        scheduler_interval=int(cfg.options.get("huey_scheduler_interval", 1)),
        # SIGTERM (what the supervisor sends) is Huey's graceful stop: running tasks finish first.
        graceful_signal="TERM")
    consumer.rb_ready = lambda: wiring.runtime.sink.mark_ready(name)
    consumer.run()

"""Builds the real Celery app and tasks that both the client and the worker side use."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery import Task as CeleryTask
from celery.exceptions import Retry as CeleryRetry
from celery.signals import before_task_publish

from implementations.recording.events import HOST, now_ns

if TYPE_CHECKING:
    from implementations.api.app import Task
    from implementations.backends.base import Wiring


def queue_name(prefix: str) -> str:
    return f"{prefix}:celery"


# The retry message a worker thread is publishing right now: its task id, then the ETA header Celery wrote.
_PUBLISHING = threading.local()
_UNSEEN = object()


@before_task_publish.connect(weak=False, dispatch_uid="retrybench-retry-eta")
def _capture_eta(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Celery's own retry message, as it leaves: its ``eta`` header is when Celery will run the retry."""
    if headers and getattr(_PUBLISHING, "task_id", None) == headers.get("id"):
        _PUBLISHING.eta = headers.get("eta")


def eta_ns(eta: str) -> int:
    """Celery's ISO-8601 ETA (timezone-aware; naive taken as UTC) as wall-clock ns, in integers."""
    at = datetime.fromisoformat(eta)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    delta = at - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


class RetryBenchTask(CeleryTask):  # type: ignore[misc]
    """A Celery task whose handlers feed the shared runtime."""

    rb_wiring: Wiring
    rb_task: Task

    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None, throw: bool = True,
              eta: Any = None, countdown: float | None = None, max_retries: int | None = None,
              **options: Any) -> Any:
        # autoretry_for calls this with Celery's own countdown (whole seconds from retry_backoff, and an
        # unseeded jitter). In the planned schedule the harness needs a delay it can predict, so the plan's
        # delay for this attempt replaces it; the retry itself — a new message with an ETA — is Celery's. In the
        # native schedule the runtime plans nothing (rb_delay is None but for an explicit countdown or a
        # breaker deferral) and Celery's countdown, or its default_retry_delay, stands.
        request = self.request
        if getattr(request, "rb_final", False) and exc is not None:
            # The shared runtime said the retries are used up. Celery's own limit only differs when a
            # circuit breaker made room for deferrals; this failure is final either way.
            raise exc
        planned = getattr(request, "rb_delay", None)
        if planned is not None:
            countdown, eta = planned, None
        _PUBLISHING.task_id, _PUBLISHING.eta = request.id, _UNSEEN
        handed = now_ns()
        try:
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        except CeleryRetry:
            if not getattr(request, "rb_deferred", False):  # a breaker deferral is not one of the task's retries
                self._rb_record_schedule(_PUBLISHING.eta, handed)
            raise
        finally:
            _PUBLISHING.task_id = None

    def _rb_record_schedule(self, eta: Any, handed_ns: int) -> None:
        """The retry message Celery sent: its ETA is when Celery will run the job again (none: at once)."""
        request, runtime = self.request, self.rb_wiring.runtime
        attempt = self._rb_attempt()
        if eta is _UNSEEN:
            runtime.record_schedule(request.id, attempt, due_ns=None, source="celery:unavailable", handed_ns=handed_ns)
        elif not eta:
            runtime.record_schedule(request.id, attempt, due_ns=None, source="celery:no_eta", handed_ns=handed_ns,
                                    delay_s=0.0)
        else:
            runtime.record_schedule(request.id, attempt, due_ns=eta_ns(str(eta)), source="celery:eta",
                                    handed_ns=handed_ns)

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if getattr(self.request, "rb_deferred", False):  # a breaker deferral is not one of the task's retries
            return
        self.rb_wiring.runtime.fire_retry(self.rb_task, task_id, exc, self._rb_attempt(), tuple(args), dict(kwargs))

    def _rb_attempt(self) -> int:
        return int(getattr(self.request, "rb_attempt", None) or self.request.retries + 1)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        tb = getattr(einfo, "traceback", "") or ""
        self.rb_wiring.runtime.fire_failure(self.rb_task, task_id, exc, tb, self._rb_attempt(), tuple(args),
                                         dict(kwargs), worker=f"{HOST}:{os.getpid()}")


def make_body(wiring: Wiring, task: Task) -> Any:
    policy = task.policy

    def body(self: RetryBenchTask, *args: Any, **kwargs: Any) -> Any:
        runtime = wiring.runtime
        attempt = self.request.retries + 1  # Celery's own count: a retry is a new message, retries + 1
        native = {"retries": self.request.retries, "autoretry": hasattr(self, "_orig_run"),
                  "hostname": self.request.hostname}
        outcome = runtime.run_attempt(task, self.request.id, attempt, args, kwargs, native=native)
        if outcome.ok:
            return outcome.value
        self.request.rb_delay = outcome.delay
        self.request.rb_attempt = outcome.attempt
        self.request.rb_deferred = outcome.deferred
        self.request.rb_final = not outcome.retry
        assert outcome.exc is not None
        if outcome.retry and (outcome.deferred or not policy.is_retryable(outcome.exc)):
            # A bound task's explicit self.retry(): Celery's explicit retry, not autoretry_for.
            raise self.retry(exc=outcome.exc, countdown=outcome.delay)
        # autoretry_for / dont_autoretry_for / max_retries decide natively from here.
        raise outcome.exc

    # Celery compiles a signature check from the function's name: a user task's "charges.charge" is not an
    # identifier (its Celery name is given as name= below).
    body.__name__ = "".join(c if c.isalnum() or c == "_" else "_" for c in task.name)
    return body


def transport_options(options: dict[str, Any]) -> dict[str, Any]:
    # Retries wait as ETA messages in a worker's memory; the Redis broker redelivers any unacked message
    # older than the visibility timeout. Size it above the longest retry delay of a run. Messages of a
    # worker that died are only restored by a sweep every unacked_restore_interval × throttle seconds
    # (kombu's defaults: 10 × 10).
    out = {"visibility_timeout": int(options.get("celery_visibility_timeout", 3600))}
    for key in ("unacked_restore_interval", "unacked_restore_throttle"):
        if f"celery_{key}" in options:  # only when asked: older kombu releases do not know them
            out[key] = int(options[f"celery_{key}"])
    return out


def native_retry_options(task: Task) -> dict[str, Any]:
    """The policy as a Celery user writes it, left for Celery to compute: ``retry_backoff`` (a factor; Celery
    itself makes it ``int(max(1.0, factor))`` and countdowns ``min(int(retry_backoff_max), factor * 2**retries)``,
    whole seconds), ``retry_jitter`` (``random.randrange(countdown + 1)``, unseeded) and, without a backoff,
    ``default_retry_delay``. Seconds are scaled by the run's time scale before Celery rounds them. Celery has
    no interval list: with ``intervals`` the policy's backoff is off and ``default_retry_delay`` applies."""
    policy = task.policy
    scale = policy.time_scale
    backoff = policy.retry_backoff
    factor = 0.0 if backoff is False or policy.intervals is not None else (1.0 if backoff is True else float(backoff))
    return {"retry_backoff": factor * scale if factor else False,
            "retry_backoff_max": policy.retry_backoff_max * scale,
            "retry_jitter": policy.retry_jitter,
            "default_retry_delay": policy.default_retry_delay * scale}


def build_celery(wiring: Wiring) -> Celery:
    cfg = wiring.config
    celery = Celery(f"retrybench-{cfg.cell_id}", broker=cfg.broker_url or cfg.redis_url,
                    backend=cfg.redis_url, set_as_current=False)
    queue = queue_name(cfg.prefix)
    celery.conf.update(
        task_default_queue=queue,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=int(cfg.options.get("celery_prefetch", 4)),
        broker_connection_retry_on_startup=True,
        result_expires=7 * 24 * 3600,
        broker_transport_options=transport_options(cfg.options),
        # Worker loss (a pool child killed mid-task). Celery's defaults ack before running, so the task is
        # marked FAILURE (WorkerLostError) by the parent and never run again; the documented recovery is
        # late acks with a requeue on loss, and since 5.7 a retry on loss that counts against max_retries.
        task_acks_late=bool(cfg.options.get("celery_acks_late", False)),
        task_reject_on_worker_lost=bool(cfg.options.get("celery_reject_on_worker_lost", False)),
        task_retry_on_worker_lost=bool(cfg.options.get("celery_retry_on_worker_lost", False)),
    )
    for task in wiring.tasks.values():
        policy = task.policy
        options: dict[str, Any] = {
            "name": task.name, "bind": True, "base": RetryBenchTask,
            "autoretry_for": policy.autoretry_for, "dont_autoretry_for": policy.dont_autoretry_for,
            "max_retries": policy.native_max_retries, "retry_jitter": policy.retry_jitter,
            "retry_backoff": policy.retry_backoff if policy.intervals is None else False,
            "retry_backoff_max": int(policy.retry_backoff_max),
            "default_retry_delay": policy.default_retry_delay * policy.time_scale,
            "rb_wiring": wiring, "rb_task": task,
        }
        if cfg.schedule == "native":
            options.update(native_retry_options(task))
        if task.time_limit:
            # The soft limit raises SoftTimeLimitExceeded inside the task, which the runtime maps to a
            # retryable TimeoutError; the hard limit (which kills the pool child) is only a backstop.
            options["soft_time_limit"] = task.time_limit
            options["time_limit"] = task.time_limit + max(1.0, task.time_limit)
        celery.task(**options)(make_body(wiring, task))
    return celery

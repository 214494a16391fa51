"""What one attempt is: its outcome, the ``self`` of a bound task, and the time-out and crash exceptions.

The shared wrapper (``runtime.Runtime``) makes these; backends read an ``Outcome`` and act on it natively.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from implementations.core.faults import Fault, plan_key
from implementations.core.policy import RetryPolicy

if TYPE_CHECKING:
    from implementations.api.app import Task


class RetryRequested(Exception):
    """Raised by a bound task's ``self.retry(...)``: retry now, whatever ``autoretry_for`` says."""

    def __init__(self, exc: BaseException | None, countdown: float | None) -> None:
        super().__init__(repr(exc) if exc else "retry requested")
        self.exc = exc
        self.countdown = countdown


WORKER_PID_ENV = "RB_WORKER_PID"  # set by the worker entry point; forked children inherit it


class WorkerCrashed(BaseException):  # noqa: N818 - named for what it stands for, like SystemExit
    """The in-process reference backend's stand-in for SIGKILL: unwinds the attempt, records nothing."""


# Each library's own time-limit exception, as raised inside the task: RQ's work horse (SIGALRM), Celery's
# soft limit (SIGUSR1 in the pool child), Dramatiq's TimeLimit middleware, Huey's process workers (SIGALRM,
# TaskTimeout). Mapped to the builtin TimeoutError, so one policy entry (autoretry_for TimeoutError) retries a
# time-out on every backend and the checkers can judge it by name.
NATIVE_TIMEOUTS = frozenset({"JobTimeoutException", "SoftTimeLimitExceeded", "TaskTimeout", "TimeLimitExceeded"})


def as_timeout(exc: BaseException, limit: float | None) -> BaseException:
    if type(exc).__name__ not in NATIVE_TIMEOUTS:
        return exc
    mapped = TimeoutError(f"time limit of {limit:g}s exceeded ({type(exc).__name__}: {exc})" if limit
                          else f"time limit exceeded ({type(exc).__name__}: {exc})")
    mapped.__cause__ = exc
    return mapped.with_traceback(exc.__traceback__)


class Request:
    """Celery's ``self.request``: the id of the job and how many retries came before this attempt."""

    def __init__(self, job_id: str, retries: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.id = job_id
        self.retries = retries
        self.args = args
        self.kwargs = kwargs


class BoundTask:
    """What a ``bind=True`` task receives as ``self``."""

    def __init__(self, task: Task, request: Request) -> None:
        self.task = task
        self.name = task.name
        self.request = request
        self.max_retries = task.policy.max_retries

    def retry(self, exc: BaseException | None = None, countdown: float | None = None) -> RetryRequested:
        raise RetryRequested(exc, countdown)


@dataclass
class Outcome:
    """What one attempt came to, for the backend to act on natively."""

    ok: bool
    value: Any = None
    exc: BaseException | None = None
    retry: bool = False
    delay: float | None = None  # seconds before the next attempt, when retry
    fault: Fault | None = None
    started_ns: int = 0
    finished_ns: int = 0
    attempt: int = 0  # the policy's count: the backend's own count minus circuit-breaker deferrals
    deferred: bool = False  # the breaker was open: the dependency was not called, no retry was used
    extra: dict[str, Any] = field(default_factory=dict)
    _tb: str | None = field(default=None, repr=False, compare=False)

    @property
    def tb(self) -> str:
        """The failure's formatted traceback ("" for none), formatted when first read.

        Read it before re-raising ``exc``: a raise adds the raising frame to the traceback it formats.
        """
        # Formatting one costs more than the rest of an attempt (3.11 parses the source of every frame for
        # its carets), and a retried attempt's is read only where the backend keeps every attempt's error
        # (RQ's job.meta, ARQ's hash): the reference backend and Celery read it for a final failure alone.
        if self._tb is None:
            exc = self.exc
            self._tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc else ""
        return self._tb


def exc_type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def retry_delay(policy: RetryPolicy, seed: int, job_id: str, retry_number: int) -> float:
    """The delay the plan expects before retry ``retry_number`` of this job (jitter seeded per job)."""
    rng = random.Random(f"{seed}:jitter:{plan_key(job_id)}:{retry_number}")
    return policy.delay(retry_number, rng)


def jsonable(value: Any) -> Any:
    """``value`` if JSON has a type for it, else its ``repr`` (a task's result, for the history)."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return repr(value)

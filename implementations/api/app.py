"""The shared, Celery-style task API: ``RetryApp``, ``@app.task``, ``.delay`` and ``.apply_async``.

The same decorated function runs on RQ, ARQ, Celery or the in-process reference backend, each
through its own native retry mechanism.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from implementations.core.config import AppConfig
from implementations.core.policy import RetryPolicy
from implementations.recording import schema
from implementations.recording.events import now_ns

if TYPE_CHECKING:
    from implementations.backends.base import Backend
    from implementations.runtime.wrapper import Runtime

# on_failure(task_id, exc, traceback, args, kwargs, attempts) — Celery's order, plus attempts.
FailureHandler = Callable[[str, BaseException | None, str, tuple[Any, ...], dict[str, Any], int], None]


class TaskFailed(Exception):
    """Raised by ``AsyncResult.get`` when the job ended in a terminal failure."""


class AsyncResult:
    """A handle on one enqueued job; ``get`` waits for its terminal state."""

    def __init__(self, app: RetryApp, job_id: str) -> None:
        self.app = app
        self.id = job_id

    def state(self) -> dict[str, Any] | None:
        return self.app.backend.state(self.id)

    def ready(self) -> bool:
        return self.state() is not None

    def get(self, timeout: float = 60.0, interval: float = 0.02) -> Any:
        deadline = time.monotonic() + timeout
        while (state := self.state()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} reached no terminal state within {timeout}s")
            time.sleep(interval)
        if state.get("state") == "failure":
            raise TaskFailed(f"{state.get('exc_type')}: {state.get('exc_message')}")
        return state.get("result")

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"


class Task:
    """A registered task: the function, its retry policy and its Celery-style handlers."""

    def __init__(self, app: RetryApp, fn: Callable[..., Any], *, name: str, bind: bool, policy: RetryPolicy,
                 on_failure: FailureHandler | None, on_retry: FailureHandler | None,
                 time_limit: float | None) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.bind = bind
        self.policy = policy
        self.on_failure = on_failure
        self.on_retry = on_retry
        self.time_limit = time_limit
        self.__doc__ = fn.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                    countdown: float | None = None, task_id: str | None = None,
                    meta: dict[str, Any] | None = None) -> AsyncResult:
        """Enqueue one job; ``countdown`` (seconds, scaled by the app's time scale) delays its first run.

        ``meta`` adds fields to the history's enqueue event (the harness records its expectations there).
        """
        app = self.app
        job_id = task_id or f"{app.config.cell_id}-{uuid.uuid4().hex[:12]}"
        scaled = countdown * app.config.time_scale if countdown else None
        ts = now_ns()
        runtime = app.runtime
        if not app._config_saved:
            runtime.sink.save_config(app.config.portable().to_json())
            app._config_saved = True
        if runtime.record:
            runtime.sink.mark_enqueued(job_id, ts)
        try:
            app.backend.enqueue(self, tuple(args), dict(kwargs or {}), job_id=job_id, countdown=scaled)
        except Exception as exc:
            # Refused by the library (a payload it cannot serialise) or the broker is gone: never queued.
            if runtime.record:
                runtime.emit(schema.enqueue_error(runtime.base, job_id=job_id, task=self.name, ts_ns=now_ns(),
                                                  exc_type=type(exc).__name__, exc_message=str(exc)[:500],
                                                  **(meta or {})))
            raise
        # Written once the library holds the job; its first attempt may already be in the history.
        runtime.emit_enqueue(job_id, self.name, ts, scaled, meta)
        return AsyncResult(app, job_id)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


class RetryApp:
    """One Celery-style app on one backend: ``rq``, ``arq``, ``celery`` or ``reference``."""

    def __init__(self, backend: str = "reference", *, redis_url: str | None = None,
                 broker_url: str | None = None, config: AppConfig | None = None, **options: Any) -> None:
        from implementations.backends import require_library

        self.config = config or AppConfig(backend=backend, redis_url=redis_url, broker_url=broker_url,
                                          **options)
        # Here, not at the first enqueue: a library missing from this interpreter is named with the commands
        # that run code in its environment (retrybench exec / shell).
        require_library(self.config.backend)
        self.tasks: dict[str, Task] = {}
        self._backend: Backend | None = None
        self._runtime: Runtime | None = None
        self._lock = threading.RLock()
        self._config_saved = False
        from implementations.runtime.startup import register

        register(self)  # the start-up probe (implementations/runtime/startup.py): every worker can run it

    def task(self, fn: Callable[..., Any] | None = None, *, name: str | None = None, bind: bool = False,
             autoretry_for: Sequence[type[BaseException] | str] = (),
             dont_autoretry_for: Sequence[type[BaseException] | str] = (), max_retries: int = 3,
             retry_backoff: bool | float = False, retry_backoff_max: float = 600.0,
             retry_jitter: bool = False, default_retry_delay: float = 180.0,
             intervals: Sequence[float] | None = None, on_failure: FailureHandler | None = None,
             on_retry: FailureHandler | None = None, time_limit: float | None = None,
             policy: RetryPolicy | None = None) -> Any:
        """Register a task, Celery style. Usable as ``@app.task`` or ``@app.task(max_retries=…)``."""

        def register(func: Callable[..., Any]) -> Task:
            pol = policy or RetryPolicy(
                autoretry_for=tuple(autoretry_for),  # type: ignore[arg-type]  # names are resolved by the policy
                dont_autoretry_for=tuple(dont_autoretry_for),  # type: ignore[arg-type]
                max_retries=max_retries, retry_backoff=retry_backoff, retry_backoff_max=retry_backoff_max,
                retry_jitter=retry_jitter, default_retry_delay=default_retry_delay,
                intervals=tuple(intervals) if intervals is not None else None,
            )
            pol = pol.scaled(self.config.time_scale)
            task = Task(self, func, name=name or func.__name__, bind=bind, policy=pol,
                        on_failure=on_failure, on_retry=on_retry, time_limit=time_limit)
            self.tasks[task.name] = task
            return task

        return register(fn) if fn is not None else register

    @property
    def backend(self) -> Backend:
        return self._wire()[0]

    @property
    def runtime(self) -> Runtime:
        return self._wire()[1]

    def _wire(self) -> tuple[Backend, Runtime]:
        """Build the recorder and the backend together, once: the backend is given its config, the tasks and
        the recorder (``Wiring``), never the app."""
        if self._backend is None or self._runtime is None:
            from implementations.backends import is_in_process, load_backend
            from implementations.backends.base import Wiring
            from implementations.runtime.wrapper import Runtime

            with self._lock:  # worker threads and the caller may ask at once
                if self._backend is None or self._runtime is None:
                    cls = load_backend(self.config.backend)
                    runtime = Runtime(self.config, cls.make_sink(self.config),
                                      in_process=is_in_process(self.config.backend))
                    backend = cls(Wiring(config=self.config, tasks=self.tasks, runtime=runtime))
                    self._backend, self._runtime = backend, runtime
        return self._backend, self._runtime

    def start_workers(self, count: int = 1, concurrency: int = 1) -> float:
        """Start ``count`` real worker processes; returns how long they took to become ready (s)."""
        return self.backend.start_workers(count=count, concurrency=concurrency)

    def stop_workers(self, timeout: float = 10.0) -> None:
        self.backend.stop_workers(timeout=timeout)

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.sink.flush()  # enqueue times still on their way to Redis
        if self._backend is not None:
            self._backend.stop_workers()
            self._backend.close()

    def __enter__(self) -> RetryApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

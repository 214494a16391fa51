"""Circuit breakers shared by every worker of a run: pybreaker with its Redis state storage.

One breaker per task guards the task's dependency call. While it is open, attempts fail fast — the
dependency is not called — and the runtime defers the job until the breaker may half-open, through the
backend's own retry mechanism but without spending one of the policy's retries. Two pybreaker
properties shape the numbers: its Redis storage keeps ``opened_at`` in whole seconds (so a reset timeout
of T s really lasts between T−1 and T s), and a ``CircuitBreaker`` holds a lock for the whole guarded
call — so each thread gets its own instance over the shared storage, or ARQ's and the reference's
threads would run one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import pybreaker

if TYPE_CHECKING:
    from implementations.api.app import Task

T = TypeVar("T")


class CircuitOpen(Exception):
    """The attempt was not made: the task's circuit breaker is open."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class Breakers:
    """The breaker of each task, per thread, over one shared state per task (Redis, or memory)."""

    def __init__(self, *, prefix: str, redis_url: str | None) -> None:
        self.prefix = prefix
        self._redis: Any = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url)  # pybreaker needs bytes, not decoded strings
        self._storages: dict[str, pybreaker.CircuitBreakerStorage] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    def _storage(self, name: str) -> pybreaker.CircuitBreakerStorage:
        with self._lock:
            if name not in self._storages:
                self._storages[name] = (
                    pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, self._redis,
                                                  namespace=f"{self.prefix}:{name}")
                    if self._redis is not None else pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED))
            return self._storages[name]

    def get(self, task: Task) -> TaskBreaker:
        mine: dict[str, TaskBreaker] = self._local.__dict__.setdefault("breakers", {})
        if task.name not in mine:
            mine[task.name] = TaskBreaker(task, self._storage(task.name))
        return mine[task.name]


class TaskBreaker:
    def __init__(self, task: Task, storage: pybreaker.CircuitBreakerStorage) -> None:
        policy = task.policy
        self.reset_s = policy.breaker_reset_timeout * policy.time_scale
        self.storage = storage
        # Only failures the policy would retry (a dependency in trouble) count towards opening it.
        self.cb = pybreaker.CircuitBreaker(fail_max=policy.breaker_fail_max, reset_timeout=self.reset_s,
                                           state_storage=storage, name=task.name, throw_new_error_on_trip=False,
                                           exclude=[lambda exc: not policy.is_retryable(exc)])

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` under the breaker; ``CircuitOpen`` (with how long to wait) when it did not run."""
        try:
            return self.cb.call(fn)
        except pybreaker.CircuitBreakerError:
            raise CircuitOpen(f"circuit breaker for {self.cb.name} is open", self.wait()) from None

    def wait(self) -> float:
        opened = self.storage.opened_at
        if opened is None:
            return self.reset_s
        left = (opened + timedelta(seconds=self.reset_s) - datetime.now(timezone.utc)).total_seconds()
        return max(0.05, left)

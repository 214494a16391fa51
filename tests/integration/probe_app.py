"""A user's app, written once against the Celery-style API; workers import it by ``module:attr``."""

from __future__ import annotations

import json
from typing import Any

import redis

from implementations.api.app import RetryApp
from implementations.core.config import AppConfig


def build(config: AppConfig) -> RetryApp:
    app = RetryApp(config=config)
    client = redis.Redis.from_url(config.redis_url or "") if config.redis_url else None

    def on_failure(task_id: str, exc: BaseException | None, traceback: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], attempts: int) -> None:
        # Runs in the worker process: report the call through Redis so the test can see it.
        record = {"task_id": task_id, "exc_type": type(exc).__name__, "has_traceback": bool(traceback),
                  "args": list(args), "kwargs": kwargs, "attempts": attempts}
        if client is not None:
            client.rpush(f"{config.prefix}:probe:on_failure", json.dumps(record))

    def on_retry(task_id: str, exc: BaseException | None, traceback: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], attempts: int) -> None:
        if client is not None:
            client.rpush(f"{config.prefix}:probe:on_retry", task_id)

    @app.task(bind=True, autoretry_for=(ConnectionError,), dont_autoretry_for=(ValueError,), max_retries=2,
              intervals=[0.2], on_failure=on_failure, on_retry=on_retry)
    def flaky(self: Any, failures: int) -> int:
        if self.request.retries < failures:
            raise ConnectionError(f"transient, retries so far {self.request.retries}")
        return int(self.request.retries)

    @app.task(bind=True, max_retries=2, on_failure=on_failure, on_retry=on_retry)
    def manual(self: Any) -> str:
        if self.request.retries < 1:
            raise self.retry(exc=KeyError("not yet"), countdown=0.3)
        return f"done after {self.request.retries} retry"

    @app.task(autoretry_for=(ConnectionError,), dont_autoretry_for=(ValueError,), max_retries=3,
              intervals=[0.1, 0.2, 0.3], on_failure=on_failure, on_retry=on_retry)
    def process_message(message: str) -> str:
        if not message:
            raise ValueError("Empty message")
        if "retry" in message:
            raise ConnectionError(f"Temporary failure processing: {message}")
        return f"Processed: {message}"

    return app

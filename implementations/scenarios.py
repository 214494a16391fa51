"""The task bodies scenarios run, written once for every backend, and the app factory workers use."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .app import RetryApp
from .config import AppConfig
from .policy import RetryPolicy

LESSON_POLICY = {
    "autoretry_for": ["ConnectionError"],
    "dont_autoretry_for": ["ValueError"],
    "max_retries": 3,
    "intervals": [10, 30, 60],
}


def process_message(message: str, *, work_s: float = 0.1) -> str:
    """The lesson's task: empty → ValueError (never retried); "retry" → ConnectionError; else works."""
    if not message:
        raise ValueError("Empty message")
    if "retry" in message:
        raise ConnectionError(f"Temporary failure processing: {message}")
    time.sleep(work_s)
    return f"Processed: {message}"


def work(n: int = 0, *, work_ms: float = 0.0) -> int:
    """The harness's generic job: waits ``work_ms`` (a sleep, as for I/O: no CPU); faults come from the plan."""
    if work_ms:
        time.sleep(work_ms / 1000)
    return n


TASKS: dict[str, Callable[..., Any]] = {"process_message": process_message, "work": work}


def build_app(config: AppConfig) -> RetryApp:
    """The app a scenario runs: one task body from ``TASKS`` with the scenario's policy."""
    app = RetryApp(config=config)
    if config.task:
        if config.task not in TASKS:
            raise ValueError(f"unknown task {config.task!r} (known: {', '.join(TASKS)})")
        policy = RetryPolicy.from_dict(config.policy or LESSON_POLICY)
        app.task(name=config.task, policy=policy, **config.task_options)(TASKS[config.task])
    return app

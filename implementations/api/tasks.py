"""The task bodies scenarios run, written once for every backend, and the app factory workers use."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from implementations.api.app import RetryApp
from implementations.api.usercode import import_exception_modules, is_ref, load_function, task_name
from implementations.core.config import AppConfig
from implementations.core.policy import RetryPolicy

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


def scenario_task(config: AppConfig) -> tuple[str, Callable[..., Any]]:
    """The name and body of the scenario's task: a built-in from ``TASKS``, or the user's ``module:function``
    imported from ``config.user_path`` (with the modules its exception names live in, first)."""
    if is_ref(config.task):
        prepare_user_code(config)
        return task_name(config.task), load_function(config.task, config.user_path)
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r} (known: {', '.join(TASKS)})")
    return config.task, TASKS[config.task]


def prepare_user_code(config: AppConfig) -> None:
    """Import what a user task's scenario names from its allowed path: the task module, then the modules of the
    policy's and the fault plan's exception names (so that they resolve). Nothing for built-in tasks."""
    if not is_ref(config.task):
        return
    from implementations.api.usercode import exception_names

    if config.user_site and os.path.isdir(config.user_site) and config.user_site not in sys.path:
        # After the environment's own packages, as a .pth would: the requirements add, they never replace.
        sys.path.append(config.user_site)

    load_function(config.task, config.user_path)
    import_exception_modules(exception_names(config.policy, config.faults), config.user_path)


def build_app(config: AppConfig) -> RetryApp:
    """The app a scenario runs: one task body (built-in or the user's) with the scenario's policy."""
    app = RetryApp(config=config)
    if config.task:
        name, body = scenario_task(config)
        policy = RetryPolicy.from_dict(config.policy or LESSON_POLICY)
        app.task(name=name, policy=policy, **config.task_options)(body)
    return app

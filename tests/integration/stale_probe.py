"""Run inside the Celery environment: the history-off count and a result stuck in RETRY, print JSON.

``python tests/integration/stale_probe.py REDIS_URL``
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import redis
from probe_app import build  # noqa: E402 - the test adds this folder to PYTHONPATH

from implementations.core.config import AppConfig

STUCK = '{"status": "RETRY", "result": {"exc_type": "ConnectionError"}, "traceback": null, "task_id": "%s"}'


def count_for(backend: Any, seconds: float) -> list[int]:
    counts = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts.append(backend.native_terminal_count())
        time.sleep(0.1)
    return counts


def wait_until_final(backend: Any, job_id: str, timeout: float = 30.0) -> None:
    from celery.result import AsyncResult

    deadline = time.monotonic() + timeout
    while AsyncResult(job_id, app=backend.celery).state != "SUCCESS":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job_id} did not succeed within {timeout}s")
        time.sleep(0.05)


def main() -> None:
    url = sys.argv[1]
    client = redis.Redis.from_url(url)
    out: dict[str, Any] = {}
    off = {"record_history": False}  # the count is the history-off baseline's
    # A task whose retry is still waiting in the worker (an ETA 60 s away), its result saying RETRY.
    with build(AppConfig(backend="celery", redis_url=url, app_path="probe_app:build", options=off)) as app:
        app.start_workers(1, 1)
        waiting = app.tasks["process_message"].apply_async(("hello",), countdown=60)
        client.set(f"celery-task-meta-{waiting.id}", STUCK % waiting.id)
        out["while_a_retry_waits"] = count_for(app.backend, 3.0)
    # Another run: nothing queued, reserved or scheduled, and a finished task's result says RETRY again
    # (what Celery's read-then-write race leaves behind).
    with build(AppConfig(backend="celery", redis_url=url, app_path="probe_app:build", options=off)) as app:
        app.start_workers(1, 1)
        done = app.tasks["process_message"].apply_async(("hello",))
        wait_until_final(app.backend, done.id)
        client.set(f"celery-task-meta-{done.id}", STUCK % done.id)
        out["when_idle"] = count_for(app.backend, 3.0)
        out["stale_states"] = app.backend.stale_states
    # A task sent with a priority waits in kombu's list for that priority: the end-of-run search must find it.
    with build(AppConfig(backend="celery", redis_url=url, app_path="probe_app:build")) as app:
        app.backend.celery.send_task("process_message", ("hello",), task_id="prio-job", priority=6)
        out["prio_keys"] = sorted(k.decode("latin-1") for k in client.keys(f"*{app.config.cell_id}*\x06\x16*"))
        out["prio_whereabouts"] = app.backend.whereabouts(["prio-job"])["jobs"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()

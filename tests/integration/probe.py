"""Run inside a backend's environment: exercise the Celery-style API on real workers, print JSON.

``python tests/integration/probe.py BACKEND REDIS_URL [BROKER_URL]``
"""

from __future__ import annotations

import json
import sys
from typing import Any

import redis
from probe_app import build  # noqa: E402 - the test adds this folder to PYTHONPATH

from implementations.api.app import TaskFailed
from implementations.core.config import AppConfig
from implementations.recording.events import events_key


def native_errors(backend: str, app: Any, job_id: str) -> dict[str, Any]:
    """The per-attempt error metadata as the backend's own store holds it."""
    if backend == "rq":
        from rq.job import Job

        job = Job.fetch(job_id, connection=app.backend.redis)
        return {"errors": len(job.meta.get("errors", [])), "last": job.meta.get("error", {}).get("exc_type")}
    if backend in ("arq", "dramatiq", "taskiq"):  # no job metadata: a hash per job, named after the backend
        client = redis.Redis.from_url(app.config.redis_url)
        key = f"{app.config.prefix}:{backend}-meta:{job_id}"
        last = json.loads(client.hget(key, "error") or "{}")
        return {"errors": client.llen(f"{key}:errors"), "last": last.get("exc_type")}
    if backend == "saq":
        job = app.backend._loop.run_until_complete(app.backend.queue.job(job_id))
        meta = job.meta if job is not None else {}
        return {"errors": len(meta.get("errors", [])), "last": meta.get("error", {}).get("exc_type")}
    if backend == "celery":
        from celery.result import AsyncResult

        result = AsyncResult(job_id, app=app.backend.celery)
        return {"state": result.state, "traceback": result.traceback or ""}
    return dict(app.backend.attempt_errors(job_id))


def main() -> None:
    backend, url = sys.argv[1], sys.argv[2]
    broker = sys.argv[3] if len(sys.argv) > 3 else None
    config = AppConfig(backend=backend, redis_url=url, broker_url=broker, app_path="probe_app:build")
    app = build(config)
    out: dict[str, Any] = {}
    try:
        out["startup_s"] = app.start_workers(1, 2)
        t = app.tasks
        handles = {
            "flaky": t["flaky"].delay(2),
            "manual": t["manual"].delay(),
            "ok": t["process_message"].delay("hello"),
            "empty": t["process_message"].delay(""),
            "retry": t["process_message"].apply_async(("please retry",), countdown=0.5),
        }
        for name, handle in handles.items():
            try:
                out[name] = {"ok": True, "value": handle.get(timeout=60)}
            except TaskFailed as exc:
                out[name] = {"ok": False, "error": str(exc)}
            out[name]["id"] = handle.id
    finally:
        app.stop_workers()
    # Read the native stores only after a warm shutdown, as the driver does: a library writes them after the
    # attempt's end is recorded (RQ runs the on_failure callback *before* it moves the job into
    # FailedJobRegistry; SAQ saves the job's error once the function has returned), so reading earlier races
    # the worker.
    out["native_errors"] = native_errors(backend, app, handles["retry"].id)
    out["native_failures"] = app.backend.native_failures()
    out["whereabouts"] = app.backend.whereabouts([handles["flaky"].id])  # finished: in no store
    client = redis.Redis.from_url(url, decode_responses=True)
    out["on_failure"] = [json.loads(r) for r in client.lrange(f"{config.prefix}:probe:on_failure", 0, -1)]
    out["on_retry"] = client.lrange(f"{config.prefix}:probe:on_retry", 0, -1)
    out["events"] = [json.loads(fields["e"]) for _, fields in client.xrange(events_key(config.prefix))]
    app.close()
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()

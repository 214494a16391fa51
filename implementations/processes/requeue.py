"""``python -m implementations.processes.requeue``: run a failed job again, inside its backend's own virtualenv.

``retrybench failed-jobs requeue`` and ``POST /failed-jobs/{id}/requeue`` call this: the harness never
imports celery, rq or arq itself. The app is rebuilt from the config the run saved in Redis
(``<prefix>:config``), so the job runs again under the same task, policy and fault plan, and its new
attempts reach the same event stream as the run's.
"""

from __future__ import annotations

import json
import sys

from implementations.backends.base import BackendError
from implementations.core.config import AppConfig
from implementations.core.redact import redact_text
from implementations.processes.worker import load_app
from implementations.recording import schema
from implementations.recording.events import HOST, config_key, now_ns


def requeue(redis_url: str, prefix: str, record: dict[str, object]) -> dict[str, object]:
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
    raw = client.get(config_key(prefix))
    if raw is None:
        raise BackendError(f"{prefix}: no saved config in Redis (was the run made by this retrybench version, "
                           "and is its data still there?)")
    config = AppConfig.from_json(raw.decode() if isinstance(raw, bytes) else str(raw))
    # The run may have reached Redis by another address; the caller's is the one that works from here.
    config = config.portable().reached_at(redis_url)
    app = load_app(config)
    try:
        new_id = app.backend.requeue(dict(record))
        app.runtime.emit(schema.requeue(app.runtime.base, job_id=str(record["job_id"]), requeued_as=new_id,
                                        task=str(record["task"]), ts_ns=now_ns(), by=HOST))
    finally:
        app.close()
    return {"job_id": record["job_id"], "requeued_as": new_id, "backend": config.label}


def main() -> None:
    """Reads one JSON object from stdin: ``{"redis_url", "prefix", "record"}`` (never argv: ``ps`` shows it,
    and a large record would not fit)."""
    try:
        request = json.load(sys.stdin)
        result = requeue(str(request["redis_url"]), str(request["prefix"]), dict(request["record"]))
        print(json.dumps(result))
    except Exception as exc:  # noqa: BLE001 - the caller shows one line, not a traceback
        print(json.dumps({"error": redact_text(f"{type(exc).__name__}: {exc}")}))
        sys.exit(1)


if __name__ == "__main__":
    main()

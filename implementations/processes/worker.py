"""Worker process entry point: ``python -m implementations.processes.worker`` (started by ``Backend``).

Rebuilds the app from ``RETRYBENCH_CONFIG`` and runs the backend library's native worker.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import time
from typing import Any

from implementations.api.app import RetryApp
from implementations.backends import load_backend
from implementations.core.config import AppConfig
from implementations.recording import schema
from implementations.recording.events import HOST, now_ns
from implementations.runtime.attempt import WORKER_PID_ENV
from implementations.runtime.startup import INDEX_ENV


def load_app(config: AppConfig) -> RetryApp:
    """``module:attr`` names either a factory ``f(config) -> RetryApp`` or a ``RetryApp`` to rebind."""
    module, _, attr = config.app_path.partition(":")
    obj = getattr(importlib.import_module(module), attr or "app")
    if isinstance(obj, RetryApp):
        obj.config = config
        return obj
    app = obj(config)
    if not isinstance(app, RetryApp):
        raise TypeError(f"{config.app_path} returned {type(app).__name__}, not a RetryApp")
    return app


STOP_RECORD_S = 10.0  # how long a stopping worker keeps trying to record its stop


def record_stop(app: RetryApp, event: dict[str, Any]) -> None:
    """Record the worker's ``stop``, trying again for up to ``STOP_RECORD_S``: a worker that dies because its
    broker connection was reset usually stops while that broker still refuses its host, and without this the
    history would show a worker that never stopped. Never raises: the worker's own exit reason comes first."""
    deadline = time.monotonic() + STOP_RECORD_S
    while True:
        try:
            app.runtime.emit(event)
            return
        except Exception as exc:  # noqa: BLE001 - the broker away; any other failure is as final
            if time.monotonic() >= deadline:
                logging.getLogger("retrybench.worker").warning("could not record this worker's stop: %s",
                                                               type(exc).__name__)
                return
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m implementations.processes.worker")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    config = AppConfig.from_env()
    logging.basicConfig(level=os.environ.get("RETRYBENCH_LOG_LEVEL", "WARNING").upper(),
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    os.environ[WORKER_PID_ENV] = str(os.getpid())  # what a crash fault with target "worker" kills
    os.environ[INDEX_ENV] = str(args.index)  # for the start-up probe; RQ's work horses, Celery's pool inherit it
    app = load_app(config)
    runtime = app.runtime
    if runtime.alerts is not None:
        runtime.alerts.start_sender()  # this process lives as long as the worker; RQ's work horses do not
    runtime.emit(schema.worker(runtime.base, event="start", host=HOST, pid=os.getpid(), ppid=os.getppid(),
                               index=args.index, ts_ns=now_ns()))
    try:
        load_backend(config.backend).run_worker(app.backend.wiring, args.concurrency, args.index)
    finally:
        if runtime.alerts is not None:
            runtime.alerts.flush()
        record_stop(app, schema.worker(runtime.base, event="stop", host=HOST, pid=os.getpid(), index=args.index,
                                       ts_ns=now_ns()))


if __name__ == "__main__":
    main()

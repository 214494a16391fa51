"""Workers started elsewhere: ``docker compose up --scale rq-worker=4`` or any other host.

A *supervisor* (``python -m implementations.processes.external --backend rq --redis-url …``) runs where the
workers should run. It watches one Redis key per backend, ``retrybench:external:<backend>``, where
``retrybench run --external-workers`` publishes each cell's worker config. When a config appears the
supervisor starts the backend's real workers with it (the same ``implementations.processes.worker`` processes a
local run starts); when the key changes or disappears it stops them with a warm shutdown. Only the
config crosses hosts: the code must be the same version on both sides (the image is built from the
checkout), and timestamps are compared across hosts, so their clocks must agree (NTP).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from implementations.backends import QUEUES
from implementations.backends.base import BackendError
from implementations.core.config import AppConfig
from implementations.core.redact import redact_text, redact_url
from implementations.recording.events import HOST

log = logging.getLogger("retrybench.external")


def channel(backend: str) -> str:
    return f"retrybench:external:{backend}"


class ExternalWorkers:
    """Harness side: publish one cell's config, wait for external workers to report ready, retract it."""

    def __init__(self, config: AppConfig, *, minimum: int = 1, concurrency: int = 1) -> None:
        import redis

        if not config.redis_url:
            raise BackendError("--external-workers needs --redis-url: the workers must reach the same Redis")
        self.config = config
        self.minimum = minimum
        self.concurrency = concurrency
        self._redis = redis.Redis.from_url(config.redis_url)

    def start(self, *, timeout: float = 60.0) -> float:
        # Paths on this host mean nothing on another: the driver writes failed_jobs.log from the stream.
        shared = self.config.portable()
        payload = {"config": json.loads(shared.to_json()), "concurrency": self.concurrency,
                   "published_by": f"{HOST}:{os.getpid()}"}
        started = time.monotonic()
        self._redis.set(channel(self.config.backend), json.dumps(payload))
        ready = f"{self.config.prefix}:ready"
        while int(self._redis.scard(ready)) < self.minimum:
            if time.monotonic() - started > timeout:
                self.stop(wait=0)
                raise BackendError(
                    f"{int(self._redis.scard(ready))} of {self.minimum} external {self.config.backend} worker(s) "
                    f"ready after {timeout:.0f}s: start them with `docker compose up -d --scale "
                    f"{self.config.backend}-worker={self.minimum} {self.config.backend}-worker`, "
                    f"`kubectl scale deployment/retrybench-{self.config.backend}-worker --replicas={self.minimum}` "
                    f"or `python -m implementations.processes.external --backend {self.config.backend}` "
                    "(docs/deploy.md)")
            time.sleep(0.05)
        return time.monotonic() - started

    def stop(self, *, wait: float = 15.0) -> None:
        """Retract the config and wait (up to ``wait`` s) until every worker that started has stopped."""
        self._redis.delete(channel(self.config.backend))
        deadline = time.monotonic() + wait
        running, after = 0, "-"
        while time.monotonic() < deadline:
            # Only the events added since the last look ("(" = exclusive): the stream holds the whole cell.
            entries: list[tuple[bytes, dict[bytes, bytes]]] = self._redis.xrange(  # type: ignore[assignment]
                f"{self.config.prefix}:events", min=after)
            for _, fields in entries:
                event = json.loads(fields[b"e"])
                if event.get("type") == "worker":
                    running += {"start": 1, "stop": -1}.get(str(event.get("event")), 0)
            if entries:
                after = "(" + entries[-1][0].decode()
            if running <= 0:
                return
            time.sleep(0.1)

    def close(self) -> None:
        self._redis.close()


class Supervisor:
    """Worker side: start the published cell's workers, stop them when the harness retracts it."""

    def __init__(self, backend: str, redis_url: str, *, broker_url: str | None = None,
                 poll: float = 0.2, heartbeat: Path | None = None, log_dir: Path | None = None) -> None:
        import redis

        self.backend, self.redis_url, self.broker_url, self.poll = backend, redis_url, broker_url, poll
        # Where each cell's worker logs go on this host (<log_dir>/<cell_id>/); None: nowhere.
        self.log_dir = log_dir
        # Touched after every look at Redis, absent before the first and after the last: a probe's view of
        # the loop (deploy/kubernetes: ready when it exists, alive while it is fresh).
        self.heartbeat = heartbeat
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=10)
        self._current: bytes | None = None
        self._app: Any = None
        self._stop = False
        self._unsent: list[dict[str, Any]] = []  # restarts not yet recorded: Redis refused this host

    def run(self) -> None:
        import redis

        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_stop", True))
        log.warning("supervising %s workers; waiting for `retrybench run --external-workers` on %s",
                    self.backend, redact_url(self.redis_url))
        self._forget_heartbeat()
        try:
            while not self._stop:
                try:
                    raw: bytes | None = self._redis.get(channel(self.backend))  # type: ignore[assignment]
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                    # The broker is away (restarting, or this host is cut off from it): its workers keep
                    # running on their own; the supervisor looks again rather than take them down with it.
                    log.warning("cannot reach Redis (%s); trying again", redact_text(str(exc)))
                    time.sleep(max(self.poll, 1.0))
                    continue
                if self.heartbeat is not None:
                    self.heartbeat.touch()
                if raw != self._current:
                    self._stop_workers()
                    if raw is not None:
                        self._start_workers(json.loads(raw))
                    self._current = raw
                elif self._app is not None and self._app.config.options.get("restart_workers", True):
                    self._revive_workers()
                time.sleep(self.poll)
        finally:
            self._forget_heartbeat()
            self._stop_workers()

    def _forget_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.unlink(missing_ok=True)

    def _start_workers(self, payload: dict[str, Any]) -> None:
        from implementations.processes.worker import load_app

        # The harness reached Redis by its own address; this host may need another (redis://redis:6379).
        config = AppConfig(**payload["config"]).portable().reached_at(self.redis_url, self.broker_url)
        if self.log_dir is not None:
            logs = self.log_dir / config.cell_id
            logs.mkdir(parents=True, exist_ok=True)
            config = replace(config, options={**config.options, "log_dir": str(logs)})
        self._app = load_app(config)
        self._unsent.clear()  # a cell that ended while Redis refused this host: its history is written
        self._clock("start")  # before any worker runs: the analysis corrects this host's times from here on
        try:
            self._app.start_workers(1, int(payload.get("concurrency", 1)))
            log.warning("started %s worker(s) for %s", self.backend, config.cell_id)
        except BackendError as exc:
            log.error("could not start %s workers for %s: %s", self.backend, config.cell_id, exc)

    def _revive_workers(self) -> None:
        """As the local driver does (option ``restart_workers``, on by default): replace the workers that
        died (a crash fault, the kernel's OOM killer), as a process supervisor would, and record each
        replacement in the cell's history."""
        import redis

        from implementations.recording import schema
        from implementations.recording.events import now_ns

        runtime = self._app.runtime
        for w in self._app.backend.revive_workers():
            log.warning("%s worker %s exited with %s; started %s", self.backend, w["pid"], w["exit_code"],
                        w["new_pid"])
            self._unsent.append(schema.worker(runtime.base, event="restarted", host=HOST, ts_ns=now_ns(), **w))
        if self._unsent:
            # A worker that died of a lost connection is replaced while Redis may still refuse this host: the
            # record waits for the next look rather than take the supervisor (and every worker) down.
            try:
                runtime.emit(*self._unsent)
                self._unsent.clear()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                log.warning("cannot record the restart yet (%s); trying again", redact_text(str(exc)))

    def _clock(self, phase: str) -> None:
        """This host's clock offset against the broker's TIME, into the cell's history
        (implementations/recording/clock.py)."""
        from implementations.recording.clock import clock_event

        event = clock_event(self._redis, self._app.runtime.base, role="worker", phase=phase)
        if event is not None:
            self._app.runtime.emit(event)

    def _stop_workers(self) -> None:
        if self._app is not None:
            self._clock("end")
            self._app.stop_workers()
            self._app.close()
            self._app = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m implementations.processes.external",
                                     description="Run the workers of `retrybench run --external-workers`.")
    parser.add_argument("--backend", choices=list(QUEUES), default=os.environ.get("RETRYBENCH_BACKEND"),
                        required="RETRYBENCH_BACKEND" not in os.environ)
    parser.add_argument("--redis-url", default=os.environ.get("RETRYBENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="default $RETRYBENCH_REDIS_URL: give a URL with a password that way, not here "
                        "(every local user sees a command line)")
    parser.add_argument("--broker-url", default=os.environ.get("RETRYBENCH_BROKER_URL"),
                        help="Celery broker as seen from this host, when it is not the Redis")
    parser.add_argument("--log-dir", type=Path, default=os.environ.get("RETRYBENCH_WORKER_LOG_DIR") or None,
                        help="keep each cell's worker logs in DIR/<cell id>/ (default $RETRYBENCH_WORKER_LOG_DIR; "
                        "none: workers log nowhere)")
    parser.add_argument("--heartbeat", type=Path, default=os.environ.get("RETRYBENCH_HEARTBEAT") or None,
                        help="a file touched after every look at Redis (default $RETRYBENCH_HEARTBEAT), for "
                        "liveness and readiness probes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        Supervisor(args.backend, args.redis_url, broker_url=args.broker_url, heartbeat=args.heartbeat,
                   log_dir=args.log_dir).run()
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
        print(f"retrybench supervisor: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Worker side of the Celery backend: a real ``celery worker`` in this process."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from celery.signals import worker_ready

from implementations.backends.celery_backend.app import build_celery, queue_name

if TYPE_CHECKING:
    from implementations.backends.base import Wiring


def run(wiring: Wiring, concurrency: int, index: int) -> None:
    cfg = wiring.config
    celery = build_celery(wiring)
    name = f"w{index}-{os.getpid()}@{cfg.cell_id}"

    @worker_ready.connect(weak=False)
    def ready(**_: Any) -> None:
        wiring.runtime.sink.mark_ready(name)

    pool = str(cfg.options.get("celery_pool", "prefork"))
    celery.worker_main([
        "worker", "--pool", pool, "--concurrency", str(max(1, concurrency)), "--loglevel", "WARNING",
        "--queues", queue_name(cfg.prefix), "--hostname", name,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ])

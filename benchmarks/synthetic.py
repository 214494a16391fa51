"""A synthetic history of any size: every job fails once, is retried 1 s later and succeeds.

Shaped like a real run (the same event types and fields the workers write), so checkers and the report
see realistic work; generated, so a 1,000,000-event history needs no hour-long run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from implementations.recording import schema

EVENTS_PER_JOB = 8
T0 = 1_800_000_000 * 10**9


def events(n_events: int, *, cell_id: str = "bench000x0", backend: str = "reference") -> Iterator[dict[str, Any]]:
    base = {"cell_id": cell_id, "backend": backend, "scenario": "synthetic"}
    yield schema.run(base, ts_ns=T0, repeat=0, jobs=n_events // EVENTS_PER_JOB, seed=1,
                     policy={"autoretry_for": ["ConnectionError"], "max_retries": 3, "intervals": [1.0]},
                     faults=[{"kind": "fail_first", "k": 1}], tolerance_s=0.002, time_scale=1.0)
    for i in range(n_events // EVENTS_PER_JOB):
        job, t = f"{cell_id}-{i:07d}", T0 + i * 1_000_000
        who = {"job_id": job, "task": "work"}
        on = {**who, "host": "h", "pid": 1, "native": None}
        retry_at = t + 1_000_200_000 + (i % 7) * 1000
        yield schema.enqueue(base, **who, ts_ns=t, countdown=None,
                             meta={"expected": {"state": "success", "attempts": 2}})
        yield schema.attempt_start(base, **on, attempt=1, started_ns=t + 100_000, fault="fail_first")
        yield schema.attempt(base, **on, attempt=1, started_ns=t + 100_000, finished_ns=t + 200_000, outcome="retry",
                             exc_type="ConnectionError", exc_message="injected", fault="fail_first",
                             expected_delay=1.0)
        yield schema.callback(base, name="on_retry", **who, attempt=1, ts_ns=t + 210_000)
        yield schema.attempt_start(base, **on, attempt=2, started_ns=retry_at, fault=None)
        yield schema.attempt(base, **on, attempt=2, started_ns=retry_at, finished_ns=t + 1_000_300_000,
                             outcome="success", fault=None)
        yield schema.terminal(base, **who, state="success", attempts=2, ts_ns=t + 1_000_300_000)
        yield schema.worker(base, event="heartbeat", ts_ns=t)
    yield schema.end(base, ts_ns=T0 + 10**12, complete=True, reason="complete")


def write_history(path: Path, n_events: int) -> Path:
    meta = schema.meta("bench", environment={}, scenarios={}, repeat=1, cells=1)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(meta) + "\n")
        fh.writelines(json.dumps(e) + "\n" for e in events(n_events))
    return path

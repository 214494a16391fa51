"""pytest-benchmark suites for what recording adds to one attempt and one event, with the history on and off.

The end-to-end overhead runs (docs/performance.md) weigh recording against a whole queue on a
shared machine, where a run's own noise is larger than the effect. These time the harness's part alone,
in the way a worker and the driver run it: ``Runtime.run_attempt`` of a task that returns at once (the
events through the same local file the workers append to), and the driver's read of those events into
``history.jsonl``. The difference between the ``on`` and ``off`` attempts is what recording costs a worker
per attempt; ``make benchmark`` stores both, to be set against a backend's CPU per job.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from harness.bench.cell import HistoryWriter
from implementations.api.tasks import build_app
from implementations.core.config import AppConfig
from implementations.recording.events import RedisSink
from implementations.recording.filesink import FileSink
from implementations.runtime.wrapper import Runtime

# A Redis nobody listens on: a successful attempt writes its events to the file and never touches Redis, so
# a benchmark that did reach it would fail (connection refused) rather than time a round trip unnoticed.
NO_REDIS = "redis://127.0.0.1:9/0"
EVENTS = 5000


def _runtime(tmp_path: Path, *, record: bool) -> tuple[Runtime, Any]:
    config = AppConfig(backend="reference", redis_url=NO_REDIS, task="work", scenario="overhead",
                       policy={"autoretry_for": ["ConnectionError"], "max_retries": 5, "intervals": [0]},
                       options={"record_history": record})
    app = build_app(config)
    sink = FileSink(str(tmp_path / "events.jsonl"), RedisSink(NO_REDIS, config.prefix))
    return Runtime(app.config, sink, in_process=True), app.tasks["work"]


@pytest.mark.parametrize("record", [True, False], ids=["on", "off"])
def test_one_attempt_through_the_shared_wrapper(benchmark: Any, tmp_path: Path, record: bool) -> None:
    """A worker's successful attempt: attempt_start, then attempt + terminal in one write (on), or nothing."""
    runtime, task = _runtime(tmp_path, record=record)
    ids = (f"overhead-{i:07d}" for i in itertools.count())
    native = {"retries": 0, "autoretry": True, "hostname": "celery@bench"}

    def attempt() -> Any:
        return runtime.run_attempt(task, next(ids), 1, (7,), {}, native=native)

    outcome = benchmark(attempt)
    assert outcome.ok and outcome.value == 7
    written = tmp_path / "events.jsonl"
    # Every attempt benchmarked, warm-up rounds included, left three events with the history on, none off.
    lines = written.read_bytes().count(b"\n") if written.exists() else 0
    assert (lines > 0 and lines % 3 == 0) if record else lines == 0


def test_the_driver_reading_events_into_the_history(benchmark: Any, tmp_path: Path) -> None:
    """The driver's side per batch of ``EVENTS`` events: read the file, decode, append to history.jsonl."""
    runtime, task = _runtime(tmp_path, record=True)
    for i in range(EVENTS // 3):
        runtime.run_attempt(task, f"overhead-{i:07d}", 1, (i,), {}, native={})
    events_file = tmp_path / "events.jsonl"
    history = HistoryWriter(str(tmp_path / "history.jsonl"))

    def read_all() -> int:
        reader = FileSink(str(events_file), RedisSink(NO_REDIS, "bench"))  # from the start of the file
        n = 0
        while events := reader.drain():
            history.write(events)
            reader.mirror(events)
            n += len(events)
        return n

    n = benchmark.pedantic(read_all, rounds=5, iterations=1)
    history.close()
    benchmark.extra_info["events"] = n
    assert n == EVENTS // 3 * 3

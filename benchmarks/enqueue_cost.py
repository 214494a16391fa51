"""What recording adds to the driver's enqueue loop: CPU per ``apply_async`` with the history on and off.

The loop the overhead preset times (harness/bench/driver.py): one burst of enqueues through the library's own
client against a private ``redis-server``, the history on (enqueue event to the local file, enqueue mark to
Redis) and off, in alternating rounds; it prints the median and fastest round of each side in µs a job, and
the CPU an enqueue mark alone costs the loop (``MarkWriter`` in a burst: one HSETNX script per ``BATCH``
marks), against one pipelined ``HSETNX`` a mark. Run it inside a backend's environment (its redis-py):

    retrybench exec -b huey -- python -m benchmarks.enqueue_cost huey --jobs 3000 --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness.orchestrate.redis_server import RedisServer
from implementations.api.tasks import build_app
from implementations.core.config import AppConfig
from implementations.recording.events import harness_redis
from implementations.recording.marks import MarkWriter

EXPECTED = {"state": "success", "attempts": 1, "delays": []}  # what the driver puts in each enqueue event


def one_round(backend: str, redis_url: str, jobs: int, *, record: bool, tmp: Path) -> float:
    """CPU µs per enqueue of one burst of ``jobs`` jobs."""
    config = AppConfig(backend=backend, redis_url=redis_url, task="work", scenario="enqueue-cost",
                       events_file=str(tmp / f"events-{time.monotonic_ns()}.jsonl"),
                       policy={"autoretry_for": ["ConnectionError"], "max_retries": 5, "intervals": [0]},
                       options={"record_history": record})
    app = build_app(config)
    task = app.tasks["work"]
    try:
        started = time.process_time()
        with app.runtime.sink.burst():
            for n in range(jobs):
                task.apply_async((1,), {}, task_id=f"{config.cell_id}-{n:06d}", meta={"expected": EXPECTED})
        return (time.process_time() - started) / jobs * 1e6
    finally:
        app.close()


def marks_round(redis_url: str, marks: int, *, pipelined: bool) -> float:
    """CPU µs per enqueue mark of one burst: the MarkWriter as it is, or one pipelined HSETNX a mark."""
    client = harness_redis(redis_url)
    key = f"enqueue-cost:marks:{time.monotonic_ns()}"
    started = time.process_time()
    if pipelined:
        for start in range(0, marks, 16):
            pipe = client.pipeline(transaction=False)
            for n in range(start, min(marks, start + 16)):
                pipe.hsetnx(key, f"job-{n:06d}", time.time_ns())
            pipe.execute()
    else:
        writer = MarkWriter(client, key)
        with writer.burst():
            for n in range(marks):
                writer.add(f"job-{n:06d}", time.time_ns())
    spent = (time.process_time() - started) / marks * 1e6
    client.delete(key)
    client.close()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    sides: dict[str, list[float]] = {"history off": [], "history on": [], "marks": [], "pipelined marks": []}
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for record in (False, True):
                sides[f"history {'on' if record else 'off'}"].append(
                    one_round(args.backend, server.url, args.jobs, record=record, tmp=Path(tmp)))
            for pipelined in (False, True):
                sides[f"{'pipelined ' if pipelined else ''}marks"].append(
                    marks_round(server.url, args.jobs * 2, pipelined=pipelined))
    for name, values in sides.items():
        unit = "a mark" if "marks" in name else "a job"
        print(f"{args.backend} {name}: {statistics.median(values):.1f} µs {unit} (fastest round {min(values):.1f})")


if __name__ == "__main__":
    main()

"""End-to-end benchmarks on real workers: throughput at 0% and 20% transient failures per backend and worker
count, and the reference backend's timing resolution with 100 retries due at once.

Each case is one ``retrybench run`` (its own private Redis and workers); the figures are the run's own
metrics, stored in the benchmark's ``extra_info`` (the wall time pytest-benchmark records includes start-up).
``make benchmark`` sets ``BENCH_FULL=1``: 500 jobs at 1, 2 and 4 workers, each case a run of 3 repetitions whose
medians (and throughput's range) go into ``extra_info``, since one run on a shared machine moves by up to 2×.
Without it (``make test``, CI) every backend runs once with 20 jobs and 1 worker, as a smoke test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from implementations.backends import ALL_BACKENDS

ROOT = Path(__file__).resolve().parent.parent
FULL = os.environ.get("BENCH_FULL") == "1"
JOBS = 500 if FULL else 20
WORKERS = [1, 2, 4] if FULL else [1]
REPEAT = 3 if FULL else 1
KEEP = ("throughput_jobs_s", "throughput_range", "enqueue_jobs_s", "lateness_median", "lateness_p99",
        "cpu_ms_per_attempt", "driver_peak_rss_mb", "attempts", "valid", "repeat")


def run(tmp_path: Path, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``retrybench run`` of one scenario on one backend: its medians over the repetitions, and each cell."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=2700, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "latest" / "results.json").read_text())
    ((_, by_backend),) = results["aggregates"].items()
    ((_, metrics),) = by_backend.items()
    # A flag (valid) aggregates to "all": every repetition passed; a number to its median.
    medians = {name: agg["all"] if "all" in agg else agg["median"] for name, agg in metrics.items()
               if "all" in agg or "median" in agg}  # "runs" counts repetitions: not a metric
    throughputs = [metrics["throughput_jobs_s"][k] for k in ("min", "max")] if "throughput_jobs_s" in metrics else None
    return {**medians, "throughput_range": throughputs}, [c["summary"] for c in results["cells"]]


def measure(benchmark: Any, tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    """Time one run of ``args`` with ``REPEAT`` repetitions, keep its medians in ``extra_info``; its cells."""
    got: dict[str, Any] = {}

    def once() -> None:
        got["medians"], got["cells"] = run(tmp_path, *args, "--repeat", str(REPEAT))

    benchmark.pedantic(once, rounds=1, iterations=1)
    figures = {**got["medians"], "repeat": REPEAT}
    benchmark.extra_info.update({k: figures.get(k) for k in KEEP})
    return list(got["cells"])


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("scenario", ["throughput-0", "throughput-20"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_end_to_end_throughput(benchmark: Any, tmp_path: Path, backend: str, scenario: str, workers: int) -> None:
    cells = measure(benchmark, tmp_path, "-b", backend, "-s", scenario, "--jobs", str(JOBS), "--workers", str(workers))
    assert len(cells) == REPEAT and all(c["succeeded"] == JOBS and c["lost_jobs"] == 0 for c in cells)


def test_reference_resolution_with_100_retries_due_at_once(benchmark: Any, tmp_path: Path) -> None:
    cells = measure(benchmark, tmp_path, "-b", "reference", "-s", "resolution")
    # Every job failed once and was retried once: 100 retries measured in each repetition
    assert len(cells) == REPEAT and all(c["retries_measured"] == 100 and c["early_retries"] == 0 for c in cells)

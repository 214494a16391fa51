"""pytest-benchmark suites for the pure parts: the policy's delay, fault decisions, reading a history, the
checkers, and the whole ``retrybench report`` with its peak memory. ``make benchmark`` runs them for real
and stores JSON under ``results/benchmarks/`` (so ``pytest-benchmark compare`` works across commits; the
report's peak RSS is in its ``extra_info``); ``make test`` runs each once as a smoke test.
``BENCH_EVENTS`` sets the synthetic history size (default 100,000; the issue's figure is 1,000,000).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks.pipeline import run_report
from benchmarks.synthetic import events, write_history
from harness.analysis.checks import summarize
from harness.analysis.history import read_history
from implementations.core.faults import FaultPlan
from implementations.core.policy import RetryPolicy

N_EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))


@pytest.fixture(scope="module")
def history_events() -> list[dict[str, Any]]:
    return list(events(N_EVENTS))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory holding only a synthetic ``history.jsonl``."""
    path = Path(tmp_path_factory.mktemp("bench"))
    write_history(path / "history.jsonl", N_EVENTS)
    return path


def test_policy_delay_with_backoff_and_jitter(benchmark: Any) -> None:
    policy = RetryPolicy(autoretry_for=(ConnectionError,), max_retries=5, retry_backoff=2, retry_jitter=True)
    rng = random.Random(1)
    delay = benchmark(policy.delay, 3, rng)
    assert 0 <= delay <= 16


def test_fault_plan_decision(benchmark: Any) -> None:
    plan = FaultPlan.from_list([{"kind": "probability", "p": 0.2}, {"kind": "fail_first", "k": 1}], seed=7)
    benchmark(plan.fault_for, "job-000123", 2)


def test_checkers_over_a_synthetic_history(benchmark: Any, history_events: list[dict[str, Any]]) -> None:
    summary = benchmark.pedantic(summarize, args=(history_events,), rounds=3, iterations=1)
    metrics = summary["metrics"]
    jobs = N_EVENTS // 8
    assert metrics["valid"] is True and metrics["jobs"] == jobs and metrics["retries_measured"] == jobs


def test_reading_a_history_file(benchmark: Any, run_dir: Path) -> None:
    history = benchmark.pedantic(read_history, args=(run_dir / "history.jsonl",), rounds=3, iterations=1)
    assert not history.problems and len(history.events) == N_EVENTS // 8 * 8 + 3


def test_report_of_a_history_file(benchmark: Any, run_dir: Path) -> None:
    """``retrybench report`` end to end in a child process (interpreter start and imports included, as
    ``/usr/bin/time -v`` sees it): metrics, results.json, tables, plots, report.md and report.html."""
    runs: list[dict[str, Any]] = []

    def once() -> None:
        runs.append(run_report(run_dir))

    benchmark.pedantic(once, rounds=3, iterations=1)
    peaks = [r["peak_rss_mb"] for r in runs]
    benchmark.extra_info.update({"events": N_EVENTS, "peak_rss_mb": max(peaks), "peak_rss_mb_runs": peaks,
                                 "child_wall_s_runs": [round(r["wall_s"], 3) for r in runs]})
    results = json.loads((run_dir / "results.json").read_text())
    assert all(r["exit"] == 0 for r in runs) and (run_dir / "report.html").exists()
    assert results["cells"][0]["summary"]["jobs"] == N_EVENTS // 8

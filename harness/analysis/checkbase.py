"""What every checker shares: a run given as events or as its index, percentiles, and examples."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from harness.analysis.runindex import Event, RunIndex, index_run

DEFAULT_TOLERANCE_S = 0.002
MAX_EXAMPLES = 5


Run = Iterable[Event] | RunIndex


def as_index(run: Run) -> RunIndex:
    return run if isinstance(run, RunIndex) else index_run(run)


def percentile(values: Sequence[float], q: float, *, presorted: bool = False) -> float | None:
    """The ``q``-th percentile (0-100), interpolating linearly between ranks (numpy's default)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    if not values:
        return None
    data = values if presorted else sorted(values)
    rank = (len(data) - 1) * q / 100
    lo = int(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def summary_stats(values: list[float]) -> dict[str, float | None]:
    data = sorted(values)
    return {"min": data[0] if data else None, "median": percentile(data, 50, presorted=True),
            "p95": percentile(data, 95, presorted=True), "p99": percentile(data, 99, presorted=True),
            "max": data[-1] if data else None, "mean": sum(data) / len(data) if data else None}


def add_example(examples: list[str], text: str) -> None:
    if len(examples) < MAX_EXAMPLES:
        examples.append(text)

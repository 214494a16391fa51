"""Reading a sweep's results: per swept scenario, each backend's variants, their metric medians, and which to
pick (``recommend``: closest to the best on timing precision, throughput and CPU at once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.analysis.compare import repetitions
from harness.analysis.metrics import median_of
from harness.plan.scenarios import SIZES
from harness.plan.sweep import NOT_SETTINGS


def recommend(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str | None:
    """The variant (name) with the lowest sum of lateness p99, 1/throughput and CPU per attempt, each
    relative to the best variant of that backend; variants that lost or duplicated a job never win.

    ``rows`` are (scenario name, metric medians). None when no variant has all three numbers.
    """
    def usable(m: Mapping[str, Any]) -> bool:
        return (not m.get("lost_jobs") and not m.get("duplicate_executions")
                and all(isinstance(m.get(k), (int, float)) and m[k] > 0 for k in ("throughput_jobs_s",))
                and isinstance(m.get("lateness_p99"), (int, float)))

    ok = [(name, m) for name, m in rows if usable(m)]
    if not ok:
        return None
    # Lateness can be ~0 on a precise backend: a 1 ms floor keeps the ratio meaningful.
    best_late = max(min(abs(m["lateness_p99"]) for _, m in ok), 1e-3)
    best_tput = max(m["throughput_jobs_s"] for _, m in ok)
    cpus = [m["cpu_ms_per_attempt"] for _, m in ok if isinstance(m.get("cpu_ms_per_attempt"), (int, float))]
    best_cpu = max(min(cpus), 1e-3) if cpus else None

    def cost(m: Mapping[str, Any]) -> float:
        score = max(abs(m["lateness_p99"]), 1e-3) / best_late + best_tput / m["throughput_jobs_s"]
        if best_cpu is not None and isinstance(m.get("cpu_ms_per_attempt"), (int, float)):
            score += max(m["cpu_ms_per_attempt"], 1e-3) / best_cpu
        return score

    return min(ok, key=lambda item: cost(item[1]))[0]


SWEEP_COLUMNS = ("wall_throughput_jobs_s", "throughput_jobs_s", "lateness_median", "lateness_p99", "early_retries",
                 "cpu_ms_per_attempt", "driver_peak_rss_mb", "lost_jobs", "duplicate_executions", "valid")



def sweeps(results: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per swept scenario, one row per (backend, variant): its settings, metric medians and whether it is
    the backend's recommended variant, chosen among the variants that passed every contract. When none did,
    the least bad one is marked ``least_bad`` as well: a failing variant is never simply recommended.
    Variants appear in the order they ran."""
    definitions = results.get("scenarios", {})
    reps = repetitions(results)
    by_repeat: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
    for cell in results.get("cells", []):
        cell_reps = by_repeat.setdefault((cell["scenario"], cell["backend"]), {})
        cell_reps[int(cell.get("repeat", len(cell_reps)))] = cell.get("summary") or {}
    out: dict[str, list[dict[str, Any]]] = {}
    for name, by_backend in results.get("aggregates", {}).items():
        definition = definitions.get(name) or {}
        parent = definition.get("sweep_of")
        if not parent:
            continue
        for backend, agg in by_backend.items():
            metrics = {k: median_of(v) for k, v in agg.items()}
            out.setdefault(parent, []).append({"backend": backend, "scenario": name,
                                               "settings": dict(definition.get("sweep_values") or {}),
                                               "metrics": metrics, "values": reps.get((name, backend), {}),
                                               "repeats": by_repeat.get((name, backend), {}),
                                               "recommended": False, "least_bad": False})
    for rows in out.values():
        for backend in dict.fromkeys(r["backend"] for r in rows):
            mine = [r for r in rows if r["backend"] == backend]
            if len(mine) < 2 or all(set(r["settings"]) <= NOT_SETTINGS for r in mine):
                continue  # nothing to choose from: history on/off and the workload's size are not settings
            valid = [r for r in mine if r["metrics"].get("valid") is True]
            pick = recommend([(r["scenario"], r["metrics"]) for r in (valid or mine)])
            for r in mine:
                r["recommended"] = r["scenario"] == pick
                r["least_bad"] = r["recommended"] and not valid
        rows.sort(key=lambda r: r["backend"])  # stable: each backend's variants stay in run order
    return out


def curve(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, list[tuple[float, float]]]:
    """For a sweep over one size (``workers``…): per backend, (size, metric) points to draw."""
    points: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        settings = r["settings"]
        value = r["metrics"].get(metric)
        if len(settings) == 1 and next(iter(settings)) in SIZES and isinstance(value, (int, float)):
            points.setdefault(r["backend"], []).append((float(next(iter(settings.values()))), float(value)))
    return {b: sorted(p) for b, p in points.items()}

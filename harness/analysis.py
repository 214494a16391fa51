"""From ``history.jsonl`` alone to ``results.json``: per-cell checks and per-(scenario, backend) aggregates.

Pure over the history (plus the file system to read and write it), so ``retrybench report`` can be re-run
anywhere without Redis.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .checks import summarize
from .metrics import METRICS
from .storage import HISTORY, RESULTS, SCHEMA_VERSION, ResultsError, history_file, load_history, write_json_atomic


def _cells(events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    meta: dict[str, Any] = {}
    cells: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("type") == "meta":
            meta = event
        elif event.get("run_id"):
            cells[event["run_id"]].append(event)
    return meta, cells


def _cell_info(run_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    header = next((e for e in events if e.get("type") == "run"), {})
    end = next((e for e in reversed(events) if e.get("type") == "end"), None)
    ready = next((e for e in events if e.get("type") == "workers_ready"), {})
    first = events[0] if events else {}
    return {
        "run_id": run_id,
        "backend": header.get("backend", first.get("backend", "")),
        "scenario": header.get("scenario", first.get("scenario", "")),
        "repeat": header.get("repeat", 0),
        "complete": bool(end and end.get("complete")),
        "partial": end is None or str(end.get("reason", "")).startswith("interrupted"),
        "reason": end.get("reason") if end else "interrupted: no end event",
        "startup_s": ready.get("startup_s"),
    }


def aggregate(values: list[float]) -> dict[str, float | int | None]:
    """Median and spread over repetitions (pyperf quotes medians, not single runs)."""
    clean = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not clean:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "n": len(clean),
            "stdev": statistics.stdev(clean) if len(clean) > 1 else 0.0}


def analyze(run_dir: Path) -> dict[str, Any]:
    """Recompute every metric of a run directory from its history and write ``results.json``."""
    history_path = history_file(run_dir)
    if not history_path.exists():
        raise ResultsError(f"{run_dir}: no {HISTORY} here — is this a retrybench results directory?")
    history = load_history(run_dir)
    meta, cells = _cells(history.events)
    out_cells = []
    for run_id, events in cells.items():
        info = _cell_info(run_id, events)
        summary = summarize(events)
        info["summary"] = summary["metrics"]
        # Raw per-retry values stay in the history; results keep counts and examples to stay small.
        info["checks"] = {name: {k: v for k, v in check.items() if k != "lateness"}
                          for name, check in summary["checks"].items()}
        out_cells.append(info)
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for cell in out_cells:
        grouped[cell["scenario"]][cell["backend"]].append(cell)
    aggregates: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, by_backend in grouped.items():
        aggregates[scenario] = {}
        for backend, group in by_backend.items():
            metrics = {name: aggregate([c["summary"].get(name) for c in group]) for name in METRICS
                       if name != "valid"}
            metrics["valid"] = {"all": all(c["summary"].get("valid") for c in group), "n": len(group)}
            aggregates[scenario][backend] = metrics
    results = {
        "schema_version": SCHEMA_VERSION,
        "run_id": meta.get("run_id") or run_dir.name,  # the run keeps its id when its directory is renamed
        "environment": meta.get("environment", {}),
        "scenarios": meta.get("scenarios", {}),
        "repeat": meta.get("repeat", 1),
        "partial": any(c["partial"] for c in out_cells) or len(out_cells) < meta.get("cells", 0)
        or not out_cells,
        "history_problems": history.problems,
        "cells": out_cells,
        "aggregates": aggregates,
    }
    write_json_atomic(run_dir / RESULTS, results)
    return results

"""From ``history.jsonl`` alone to ``results.json``: per-cell checks and per-(scenario, backend) aggregates.

Pure over the history (plus the file system to read and write it), so ``retrybench report`` can be re-run
anywhere without Redis.

The history is streamed once: each cell (one cell_id) is indexed while its events go by, checked as soon
as the next cell starts, and dropped, keeping only its summary and the little its plots need. A
million-event history therefore never sits in memory as a million dicts. Cells are contiguous in the
files the runner writes; should one come back after another started, it is indexed again in a second pass
rather than judged on half its events.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from heapq import nsmallest
from pathlib import Path
from typing import Any

from harness.analysis.between import between_versions
from harness.analysis.checks import summarize
from harness.analysis.history import iter_history, no_events
from harness.analysis.metrics import METRICS
from harness.analysis.runindex import Event, RunBuilder, RunIndex, paused_gc
from harness.analysis.storage import HISTORY, RESULTS, SCHEMA_VERSION, ResultsError, history_file, write_json_atomic
from harness.analysis.verdicts import cell_verdict, scenario_verdicts
from harness.bench.hostclock import clock_table
from harness.bench.startup import startup_summary
from harness.plan.netfaults import summary as net_summary

TIMELINE_JOBS = 6  # jobs per cell drawn in the report's timeline (the busiest)


@dataclass
class CellPlot:
    """What the report's plots need from one cell, kept after its index is dropped."""

    scenario: str | None  # as the cell's first event names them (how the report groups plots)
    backend: str | None
    lateness: list[float]  # every measured retry lateness, in s
    sample: RunIndex  # the cell's index reduced to its busiest jobs, for the timeline


@dataclass
class Scan:
    """One pass over a history: the meta event, each cell's results and plot inputs, unreadable lines."""

    meta: Event = field(default_factory=dict)
    cells: dict[str, tuple[dict[str, Any], CellPlot]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _cell_info(cell_id: str, idx: RunIndex, first: Event) -> dict[str, Any]:
    header, end, ready = idx.header or {}, idx.end, idx.ready or {}
    return {
        "cell_id": cell_id,
        "backend": header.get("backend", first.get("backend", "")),
        "scenario": header.get("scenario", first.get("scenario", "")),
        "repeat": header.get("repeat", 0),
        "complete": bool(end and end.get("complete")),
        "partial": idx.partial,  # interrupted, or broken off by an error: a deadline is judged, not partial
        "reason": end.get("reason") if end else "interrupted: no end event",
        "startup_s": ready.get("startup_s"),
        "startup": startup_summary(ready),  # per worker, one definition on every backend (harness/bench/startup.py)
        # Simulated hosts (docs/multi-host.md): each host's clock offset, and the network faults applied.
        **({"clocks": clock_table(idx.clocks.events)} if idx.clocks.events else {}),
        **({"network": net_summary(idx.network, idx.first_enqueue_ns)} if idx.network else {}),
    }


def _busiest(idx: RunIndex) -> RunIndex:
    # The jobs with the most attempts show the retry behaviour; ties go to the earliest job id.
    jobs = idx.jobs
    keep = nsmallest(TIMELINE_JOBS, jobs, key=lambda j: (-len(jobs[j].attempts_seen()), j))
    return RunIndex(cell_id=idx.cell_id, backend=idx.backend, scenario=idx.scenario, header=idx.header,
                    end=idx.end, jobs={j: jobs[j] for j in keep}, first_enqueue_ns=idx.first_enqueue_ns,
                    clocks=idx.clocks, network=idx.network)


def _finish(cell_id: str, builder: RunBuilder, first: Event) -> tuple[dict[str, Any], CellPlot]:
    idx = builder.idx
    info = _cell_info(cell_id, idx, first)
    summary = summarize(idx, keep_values=True)
    info["summary"] = summary["metrics"]
    # Raw per-retry values go to the plots only; results keep counts and examples to stay small.
    lateness = summary["checks"]["timing"].pop("lateness")
    info["checks"] = summary["checks"]
    info["verdict"] = cell_verdict(info)
    return info, CellPlot(idx.scenario, idx.backend, lateness, _busiest(idx))


def scan(path: Path) -> Scan:
    """Check every cell of a history file in one streaming pass (two if cells interleave)."""
    out = Scan()
    redo: set[str] = set()  # cells seen again after they were finished
    current: tuple[str, RunBuilder, Event] | None = None
    uncelled = False  # read events that belong to no cell (meta, no cell_id): the file was not empty
    with paused_gc():
        for event in iter_history(path, problems=out.problems):
            if event.get("type") == "meta":
                out.meta, uncelled = event, True
                continue
            rid = event.get("cell_id")
            if not rid:
                uncelled = True
                continue
            if current is None or current[0] != rid:
                if rid in out.cells or rid in redo:
                    redo.add(rid)
                    continue
                if current is not None:
                    out.cells[current[0]] = _finish(*current)
                current = (rid, RunBuilder(), event)
                out.cells[rid] = ({}, CellPlot(None, None, [], RunIndex()))  # holds its place in file order
            current[1].add(event)
        if current is not None:
            out.cells[current[0]] = _finish(*current)
    if not out.cells and not uncelled:
        raise no_events(os.fspath(path), out.problems)
    if redo:
        _rescan(path, out, redo)
    return out


def _rescan(path: Path, out: Scan, cell_ids: set[str]) -> None:
    """Index the cells whose events interleave with others' again, all of them in one more pass."""
    builders: dict[str, tuple[RunBuilder, Event]] = {}
    with paused_gc():
        for event in iter_history(path):
            rid = event.get("cell_id")
            if rid in cell_ids and event.get("type") != "meta":
                if rid not in builders:
                    builders[rid] = (RunBuilder(), event)
                builders[rid][0].add(event)
        for rid, (builder, first) in builders.items():
            out.cells[rid] = _finish(rid, builder, first)


_LAST: tuple[tuple[str, int, int], Scan] | None = None


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def plot_inputs(run_dir: Path) -> list[CellPlot]:
    """Each cell's plot inputs, in file order: from the ``analyze`` that just ran on this history
    (``report`` then never reads it twice), else from a new pass. Keyed by size and mtime."""
    path = history_file(run_dir)
    key = _key(path)
    found = _LAST[1] if _LAST is not None and _LAST[0] == key else scan(path)
    return [plot for _, plot in found.cells.values()]


def aggregate(values: list[float]) -> dict[str, float | int | None]:
    """Median and spread over repetitions (pyperf quotes medians, not single runs)."""
    clean = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not clean:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "n": len(clean),
            "stdev": statistics.stdev(clean) if len(clean) > 1 else 0.0}


def analyze(run_dir: Path) -> dict[str, Any]:
    """Recompute every metric of a run directory from its history and write ``results.json``."""
    global _LAST
    history_path = history_file(run_dir)
    if not history_path.exists():
        raise ResultsError(f"{run_dir}: no {HISTORY} here — is this a retrybench results directory?")
    key = _key(history_path)
    found = scan(history_path)
    _LAST = (key, found)
    meta = found.meta
    out_cells = [info for info, _ in found.cells.values()]
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
            metrics["runs"] = {"n": len(group), "asked": meta.get("repeat", 1)}
            aggregates[scenario][backend] = metrics
    results = {
        "schema_version": SCHEMA_VERSION,
        "run_id": meta.get("run_id") or run_dir.name,  # the run keeps its id when its directory is renamed
        "environment": meta.get("environment", {}),
        "scenarios": meta.get("scenarios", {}),
        "repeat": meta.get("repeat", 1),
        "partial": any(c["partial"] for c in out_cells) or len(out_cells) < meta.get("cells", 0)
        or not out_cells,
        "history_problems": found.problems,
        "cells": out_cells,
        "aggregates": aggregates,
    }
    results["verdicts"] = scenario_verdicts(results)
    # A row with fewer repetitions than asked is partial too (its median is over fewer runs than it says).
    results["partial"] = results["partial"] or any(
        r["status"] == "partial" for v in results["verdicts"].values() for r in v["rows"].values())
    if (between := between_versions(results)) is not None:
        results["between_versions"] = between  # two releases of one library: what changed beyond noise
    write_json_atomic(run_dir / RESULTS, results)
    return results

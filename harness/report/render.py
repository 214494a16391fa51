"""``report.md`` and a self-contained ``report.html`` beside ``results.json``, from the results and history.

Both are rendered from one context by jinja2 templates, so the Markdown (GitHub, CI job summaries) and
the HTML (offline: inline CSS, plots embedded as data URIs) always say the same thing.
"""

from __future__ import annotations

import base64
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

import harness.report.plots as plots
from harness.analysis.between import between_context
from harness.analysis.metrics import METRICS, format_value, median_of
from harness.analysis.overhead import overhead, overhead_note
from harness.analysis.results import CellPlot, plot_inputs
from harness.analysis.sweeps import SWEEP_COLUMNS, curve, sweeps
from harness.analysis.verdicts import TITLES
from harness.bench.hostclock import clock_rows
from harness.plan.scenarios import SIZES
from harness.plan.sweep import label
from harness.report.tables import (
    _PACED,
    OUTAGE_COLUMNS,
    SUMMARY_COLUMNS,
    _best,
    columns_for,
    is_reliability,
    plan_note,
    runs_title,
)
from implementations.backends import REGISTRY, base_name, is_control

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


def _safe_stem(name: str) -> str:
    """A scenario name as a file name inside plots/, whatever a results file says (no path, no dot-dot)."""
    stem = re.sub(r"[^A-Za-z0-9_.\[\]=,+-]", "_", str(name))[:100].lstrip(".")
    return stem.replace("..", "__") or "_"


_ALWAYS_RED = {"early_retries", "late_retries", "lost_jobs", "unrecovered_jobs", "duplicate_executions",
               "missing_records", "duplicate_records"}


def _status(row: dict[str, Any] | None, value: Any) -> tuple[str, bool]:
    """A row's verdict cell: its text and whether it is a violation."""
    if not row:
        return ("yes" if value else "NO"), not value
    status = row.get("status")
    if status == "pass":
        return ("control" if row.get("control") else "yes"), False
    if status == "partial":
        return f"partial ({row.get('n')} of {row.get('asked')} runs)", True
    if status == "fault did not fire":
        return "fault did not fire", True
    if status == "history off":
        return "not judged (history off)", False
    return "NO: " + ", ".join(TITLES.get(c, c) for c in row.get("failed", ())), True


def _rows(scenario: str, rows: dict[str, dict[str, Any]], columns: tuple[str, ...] = SUMMARY_COLUMNS,
          verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    verdict = verdict or {}
    statuses = verdict.get("rows") or {}
    eligible = {b for b, r in statuses.items() if r.get("best_eligible")}
    paced = verdict.get("paced_by")
    values = {name: {b: median_of(r.get(name)) for b, r in rows.items()} for name in columns}
    best = {name: None if paced and name in _PACED else _best(values[name], name, eligible) for name in columns}
    out = []
    for backend in rows:
        cells = []
        for name in columns:
            value = values[name][backend]
            if name == "valid":
                text, bad = _status(statuses.get(backend), value)
                cells.append({"text": text, "best": False, "bad": bad})
                continue
            bad = name in _ALWAYS_RED and bool(value)
            cells.append({"text": format_value(name, value), "best": best[name] == backend and not bad, "bad": bad})
        control = bool((statuses.get(backend) or {}).get("control"))
        out.append({"backend": f"{backend} (control)" if control else backend, "cells": cells})
    return {"columns": [{"name": "verdict" if n == "valid" else n, "unit": METRICS[n].unit,
                         "paced": bool(paced) and n in _PACED, "description": METRICS[n].description}
                        for n in columns], "rows": out, "paced": paced}


RELIABILITY_TABLE = ("jobs", "crash_hit_jobs", "recovered_jobs", "lost_jobs", "failed_natively_after_crash",
                     "duplicate_executions", "recovery_median_s", "recovery_max_s", "broker_recovery_s")


def _reliability(results: dict[str, Any]) -> dict[str, Any] | None:
    """One row per (scenario, backend) of every scenario that kills workers, stops tasks, poisons payloads
    or restarts the broker: what each library lost under each configuration, side by side."""
    definitions = results.get("scenarios", {})
    rows = []
    for scenario, by_backend in results.get("aggregates", {}).items():
        if not is_reliability(definitions.get(scenario)):
            continue
        for backend, agg in by_backend.items():
            cells = []
            for name in RELIABILITY_TABLE:
                value = median_of(agg.get(name))
                bad = name in ("lost_jobs", "duplicate_executions", "failed_natively_after_crash") and bool(value)
                cells.append({"text": format_value(name, value), "best": False, "bad": bad})
            says = next((c["checks"].get("reliability", {}).get("crash_failure_says") for c in results.get("cells", [])
                         if c["scenario"] == scenario and c["backend"] == backend), None)
            rows.append({"backend": f"{scenario} · {backend}", "cells": cells, "says": says or "-"})
    if not rows:
        return None
    return {"columns": [{"name": n, "unit": METRICS[n].unit, "description": METRICS[n].description}
                        for n in RELIABILITY_TABLE], "rows": rows}


def _startup(results: dict[str, Any]) -> dict[str, Any] | None:
    """The "Start-up" table: per backend, every worker of every cell pooled (spawn to first completed probe
    job, harness/bench/startup.py): the median and the slowest worker, and how many workers have a figure."""
    pooled: dict[str, list[Any]] = {}
    cells: dict[str, int] = defaultdict(int)
    definition = None
    for cell in results.get("cells", []):
        stats = cell.get("startup")
        if not stats:
            continue
        definition = definition or stats.get("definition")
        pooled.setdefault(cell["backend"], []).extend(stats.get("per_worker_s") or [])
        cells[cell["backend"]] += 1
    if not pooled:
        return None
    rows = []
    for backend, values in pooled.items():
        measured = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        rows.append({"backend": f"{backend} (control)" if is_control(backend) else backend,
                     # In ms: the reference backend's threads start in well under one.
                     "median": f"{statistics.median(measured) * 1000:.1f}" if measured else "-",
                     "max": f"{max(measured) * 1000:.1f}" if measured else "-",
                     "workers": f"{len(measured)} of {len(values)}", "cells": cells[backend],
                     "bad": len(measured) < len(values)})
    return {"definition": definition, "rows": rows}


def _sweep_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = []
    for r in rows:
        cells = []
        for name in SWEEP_COLUMNS:
            value = r["metrics"].get(name)
            bad = (name == "valid" and value is False) or (name in _ALWAYS_RED and bool(value))
            cells.append({"text": format_value(name, value), "best": False, "bad": bad})
        out.append({"backend": f"{r['backend']} · {label(r['settings'])}", "cells": cells,
                    "recommended": r["recommended"], "least_bad": r["least_bad"]})
    return {"columns": [{"name": n, "unit": METRICS[n].unit, "description": METRICS[n].description}
                        for n in SWEEP_COLUMNS], "rows": out}


def _sweep_description(results: dict[str, Any], parent: str) -> str:
    for definition in (results.get("scenarios") or {}).values():
        if (definition or {}).get("sweep_of") == parent:
            return str(definition.get("description", ""))
    return ""


def _failure_rate(scenario: dict[str, Any]) -> float | None:
    """The per-attempt failure probability of a scenario whose only faults are ``probability`` rules."""
    faults = scenario.get("faults") or []
    if not faults:
        return 0.0
    if all(f.get("kind") == "probability" and f.get("fraction", 1) == 1 for f in faults):
        ok = 1.0
        for f in faults:
            ok *= 1 - float(f["p"])
        return 1 - ok
    return None


def build_context(run_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Everything both templates show, plus the plots as PNG bytes keyed by file name."""
    # What the plots need was gathered by the same pass over the history that computed the metrics.
    indexes: dict[str, dict[str, list[CellPlot]]] = defaultdict(lambda: defaultdict(list))
    for cell in plot_inputs(run_dir):
        if cell.scenario and cell.backend:
            indexes[cell.scenario][cell.backend].append(cell)
    images: dict[str, bytes] = {}
    sections = []
    descriptions = results.get("scenarios", {})
    verdicts = results.get("verdicts") or {}
    for scenario, rows in results.get("aggregates", {}).items():
        if (descriptions.get(scenario) or {}).get("sweep_of"):
            continue  # a sweep's variants are one table below, not a section each
        cells = indexes.get(scenario, {})
        lateness = {b: [v for cell in runs for v in cell.lateness] for b, runs in cells.items()}
        tolerance = (descriptions.get(scenario) or {}).get("tolerance_s", 0.002)
        description = " ".join(filter(None, ((descriptions.get(scenario) or {}).get("description", ""),
                                             plan_note(descriptions.get(scenario)))))
        section: dict[str, Any] = {"name": scenario, "description": description, "plots": [],
                                   "table": _rows(scenario, rows, columns_for(descriptions.get(scenario)),
                                                  verdicts.get(scenario)),
                                   "runs": runs_title(verdicts.get(scenario), results.get("repeat", 1))}
        timeline = {b: runs[0].sample for b, runs in cells.items()}  # the first repetition's busiest jobs
        for kind, png in (("lateness", plots.lateness_plot(scenario, lateness, tolerance_s=tolerance)),
                          ("timeline", plots.timeline_plot(scenario, timeline))):
            if png:
                name = f"{_safe_stem(scenario)}-{kind}.png"
                images[name] = png
                section["plots"].append({"file": f"{PLOTS_DIR}/{name}", "alt": f"{scenario} {kind}", "name": name})
        section["findings"] = [
            f"{c['backend']} · {check}: " + ("; ".join(e for k, v in verdict.items() if k.endswith("examples")
                                                       for e in v[:3]) or "see results.json")
            for c in results.get("cells", []) if c["scenario"] == scenario
            for check, verdict in c.get("checks", {}).items() if not verdict.get("valid", True)]
        sections.append(section)
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for scenario, rows in results.get("aggregates", {}).items():
        rate = _failure_rate(descriptions.get(scenario) or {})
        if rate is None:
            continue
        for backend, agg in rows.items():
            value = median_of(agg.get("throughput_jobs_s"))
            if value is not None:
                points[backend].append((rate, value))
    completeness = {s: {b: {k: median_of(v.get(k)) for k in ("failure_records", "missing_records",
                                                           "duplicate_records", "failure_log_completeness")}
                        for b, v in rows.items()} for s, rows in results.get("aggregates", {}).items()}
    overall = []
    for kind, png in (("throughput", plots.throughput_plot(points) if len(
            {p for pts in points.values() for p, _ in pts}) > 1 else None),
                      ("completeness", plots.completeness_plot(completeness))):
        if png:
            images[f"{kind}.png"] = png
            overall.append({"file": f"{PLOTS_DIR}/{kind}.png", "alt": kind, "name": f"{kind}.png"})
    swept = []
    for parent, sweep_rows in sweeps(results).items():
        table = _sweep_table(sweep_rows)
        # Curves only for a sweep over one size on every backend (scaling), not a tuning grid.
        keys = {k for r in sweep_rows for k in r["settings"]}
        size = next(iter(keys)) if len(keys) == 1 and next(iter(keys)) in SIZES else None
        entry: dict[str, Any] = {"name": parent, "description": _sweep_description(results, parent),
                                 "table": table, "plots": [], "overhead": [{**o, "note": overhead_note(o)}
                                                                           for o in overhead(sweep_rows)]}
        if size:
            png = plots.scaling_plot(parent, size, {m: curve(sweep_rows, m) for m in
                                                    ("throughput_jobs_s", "driver_peak_rss_mb", "cpu_ms_per_attempt")})
            if png:
                file = f"{_safe_stem(parent)}-scaling.png"
                images[file] = png
                entry["plots"].append({"file": f"{PLOTS_DIR}/{file}", "alt": f"{parent} scaling", "name": file})
        swept.append(entry)
    env, between = results.get("environment", {}), between_context(results.get("between_versions"))
    # How each library counts retries (the registry's line): retrybench makes every backend run as often as Celery.
    env = {**env, "counting": {b: REGISTRY[base_name(b)].counting for b in env.get("backends", {})
                               if base_name(b) in REGISTRY}}
    return {"run_id": results.get("run_id"), "partial": results.get("partial"), "repeat": results.get("repeat", 1),
            "environment": env, "sections": sections, "verdicts": _verdict_context(verdicts), "overall": overall,
            "problems": results.get("history_problems", [])[:10], "between": between,
            "incomplete": [c for c in results.get("cells", []) if not c.get("complete")],
            "reliability": _reliability(results), "sweeps": swept, "startup": _startup(results),
            "clocks": clock_rows(results.get("cells", [])),
            "metrics": [METRICS[n] for n in dict.fromkeys(SUMMARY_COLUMNS + OUTAGE_COLUMNS + RELIABILITY_TABLE
                                                            + SWEEP_COLUMNS)],
            "images": images}


def _verdict_context(verdicts: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdict at the top of both reports: per scenario, one sentence per backend, then the best."""
    return [{"scenario": scenario, "schedule": v.get("schedule") or "planned", "best": v.get("best_sentence", ""),
             "rows": [{"status": ((v.get("rows") or {}).get(b) or {}).get("status", ""), "sentence": sentence}
                      for b, sentence in (v.get("sentences") or {}).items()]}
            for scenario, v in verdicts.items()]


def _jinja() -> Environment:
    env = Environment(loader=PackageLoader("harness.report", "templates"), undefined=StrictUndefined,
                      autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return env


def write_reports(run_dir: Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Render ``report.md`` (plots as files under ``plots/``) and a self-contained ``report.html``."""
    ctx = build_context(run_dir, results)
    images: dict[str, bytes] = ctx.pop("images")
    (run_dir / PLOTS_DIR).mkdir(exist_ok=True)
    for name, png in images.items():
        (run_dir / PLOTS_DIR / name).write_bytes(png)
    data_uri = {name: "data:image/png;base64," + base64.b64encode(png).decode() for name, png in images.items()}
    env = _jinja()
    md = env.get_template("report.md.j2").render(**ctx)
    env.autoescape = True
    html = env.get_template("report.html.j2").render(**ctx, data_uri=data_uri)
    md_path, html_path = run_dir / REPORT_MD, run_dir / REPORT_HTML
    for path, text in ((md_path, md), (html_path, html)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return md_path, html_path

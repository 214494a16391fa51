"""Rich tables driven by the metric registry: one table per scenario, one row per backend."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .metrics import METRICS, format_value
from .overhead import overhead, overhead_note
from .sweep import label, sweeps

SUMMARY_COLUMNS = ("jobs", "attempts", "succeeded", "failed", "failure_records", "lateness_median",
                   "lateness_p99", "early_retries", "throughput_jobs_s", "lost_jobs", "duplicate_executions",
                   "valid")
OUTAGE_COLUMNS = ("deferrals", "outage_calls", "recovery_s")
# For an outage, what the dependency went through replaces the failure-log and p50 columns (still in
# results.json and in the other scenarios' tables), so the table still fits 120 columns.
_OUTAGE_TABLE = ("jobs", "attempts", "succeeded", "failed", "lateness_p99", "early_retries", "throughput_jobs_s",
                 "lost_jobs", *OUTAGE_COLUMNS, "valid")


# Crashes, time limits, poison and a broker restart: what was hit, what came back, what was lost.
RELIABILITY_COLUMNS = ("interrupted_attempts", "recovered_jobs", "lost_after_crash", "failed_natively_after_crash",
                       "duplicated_after_crash", "recovery_median_s", "recovery_max_s")
_RELIABILITY_TABLE = ("jobs", "succeeded", "failed", "lost_jobs", "duplicate_executions", "interrupted_attempts",
                      "recovered_jobs", "lost_after_crash", "failed_natively_after_crash", "recovery_median_s",
                      "recovery_max_s", "valid")
_TIMEOUT_TABLE = (*SUMMARY_COLUMNS[:-1], "timed_out_attempts", "timeouts_retried", "valid")
_POISON_TABLE = ("jobs", "attempts", "succeeded", "failed", "failure_records", "lost_jobs", "poison_jobs",
                 "poison_refused", "poison_failed_natively", "poison_recorded", "poison_unaccounted", "valid")
_BROKER_TABLE = ("jobs", "attempts", "succeeded", "failed", "lost_jobs", "duplicate_executions",
                 "interrupted_attempts", "broker_down_s", "broker_recovery_s", "valid")


def is_reliability(definition: dict[str, Any] | None) -> bool:
    """A scenario that kills workers, stops tasks at a time limit, poisons payloads or restarts the broker."""
    definition = definition or {}
    kinds = {f.get("kind") for f in definition.get("faults") or ()}
    return bool(kinds & {"crash", "timeout"} or definition.get("poison")
                or (definition.get("options") or {}).get("broker_restart_at") is not None)


def columns_for(definition: dict[str, Any] | None) -> tuple[str, ...]:
    """The headline columns; scenarios that inject an outage, a crash, a time-out, poison or a broker restart
    show what that fault did instead of some of the general columns (all of them stay in results.json)."""
    definition = definition or {}
    kinds = {f.get("kind") for f in definition.get("faults") or ()}
    if (definition.get("options") or {}).get("broker_restart_at") is not None:
        return _BROKER_TABLE
    if definition.get("poison"):
        return _POISON_TABLE
    if "crash" in kinds:
        return _RELIABILITY_TABLE
    if "timeout" in kinds:
        return _TIMEOUT_TABLE
    return _OUTAGE_TABLE if "outage" in kinds else SUMMARY_COLUMNS


# Headers short enough for an 80-column terminal; the full meaning is in the README's metric table.
SHORT = {"jobs": "jobs", "attempts": "tries", "succeeded": "ok", "failed": "fail", "failure_records": "f.log",
         "lateness_median": "late p50", "lateness_p99": "late p99", "early_retries": "early",
         "throughput_jobs_s": "jobs/s", "lost_jobs": "lost", "duplicate_executions": "dup", "valid": "valid",
         "deferrals": "defer", "outage_calls": "out.calls", "recovery_s": "recov s",
         "interrupted_attempts": "killed", "recovered_jobs": "back", "lost_after_crash": "gone",
         "failed_natively_after_crash": "native fail", "duplicated_after_crash": "twice",
         "recovery_median_s": "rec p50 s", "recovery_max_s": "rec max s", "timed_out_attempts": "timed out",
         "timeouts_retried": "t/o retried", "poison_jobs": "poison", "poison_refused": "refused",
         "poison_failed_natively": "native fail", "poison_recorded": "recorded", "poison_unaccounted": "unacc.",
         "broker_down_s": "down s", "broker_recovery_s": "back after s", "cpu_ms_per_attempt": "cpu/try",
         "driver_peak_rss_mb": "rss", "wall_throughput_jobs_s": "jobs/s"}


def _best(values: dict[str, Any], name: str) -> str | None:
    better = METRICS[name].better
    numeric = {b: v for b, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if better is None or len(numeric) < 2:
        return None
    if name.startswith("lateness"):
        # For lateness the best is the closest to zero, not the most negative (early is a violation).
        score = {b: abs(v) for b, v in numeric.items()}
    else:
        score = {b: v if better == "lower" else -v for b, v in numeric.items()}
    top = min(score.values())
    winners = [b for b, v in score.items() if v == top]
    return winners[0] if len(winners) == 1 else None  # a tie marks nobody


def scenario_table(scenario: str, rows: dict[str, dict[str, Any]], *, versions: dict[str, dict[str, str]],
                   columns: tuple[str, ...] = SUMMARY_COLUMNS, repeat: int = 1) -> Table:
    """``rows`` maps backend → aggregates (``{"median": …}`` per metric) as in results.json."""
    title = f"{scenario}" + (f" — median of {repeat} runs" if repeat > 1 else "")
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("backend", no_wrap=True)
    for name in columns:
        metric = METRICS[name]
        unit = f" {metric.unit}" if metric.unit and metric.unit not in SHORT.get(name, "") else ""
        table.add_column(f"{SHORT.get(name, name.replace('_', ' '))}{unit}", justify="right", no_wrap=True)
    values = {name: {b: _median(r.get(name)) for b, r in rows.items()} for name in columns}
    best = {name: _best(values[name], name) for name in columns}
    for backend in rows:
        cells = []
        for name in columns:
            value = values[name][backend]
            text = format_value(name, value)
            if name == "valid":
                text = "[green]yes[/]" if value else "[bold red]NO[/]"
            elif name in ("early_retries", "lost_jobs", "duplicate_executions", "lost_after_crash",
                          "poison_unaccounted") and value:
                text = f"[bold red]{text}[/]"
            elif best[name] == backend:
                text = f"[bold]{text}*[/]"
            cells.append(text)
        table.add_row(backend, *cells)
    return table


def _median(entry: Any) -> Any:
    if isinstance(entry, dict):
        return entry.get("median", entry.get("all"))
    return entry


def print_results(results: dict[str, Any], console: Console) -> None:
    versions = results.get("environment", {}).get("backends", {})
    definitions = results.get("scenarios", {})
    for scenario, rows in results.get("aggregates", {}).items():
        if (definitions.get(scenario) or {}).get("sweep_of"):
            continue  # printed as one table per sweep below
        console.print(scenario_table(scenario, rows, versions=versions, repeat=results.get("repeat", 1),
                                     columns=columns_for(results.get("scenarios", {}).get(scenario))))
    for parent, rows in sweeps(results).items():
        console.print(sweep_table(parent, rows))
    for backend, libs in versions.items():
        if libs:
            console.print(f"[dim]{backend}: {', '.join(f'{k} {v}' for k, v in libs.items())}[/]")
    for cell in results.get("cells", []):
        for check, verdict in cell.get("checks", {}).items():
            if verdict.get("valid", True):
                continue
            examples = [e for key, value in verdict.items() if key.endswith("examples") for e in value]
            detail = "; ".join(examples[:3]) or "see results.json"
            console.print(f"[red]{escape(cell['backend'])} · {escape(cell['scenario'])} · {check} failed:[/] "
                          f"{escape(detail)}")
    if results.get("partial"):
        console.print("[yellow]partial run: some cells did not finish (interrupted or failed)[/]")
    for problem in results.get("history_problems", [])[:5]:
        console.print(f"[yellow]history: {problem}[/]")
    for cell in results.get("cells", []):
        if not cell.get("complete"):
            where = escape(f"{cell['backend']} · {cell['scenario']}: {cell['reason']}")
            console.print(f"[yellow]{where}[/]")


def sweep_table(name: str, rows: list[dict[str, Any]]) -> Table:
    """One row per (backend, variant) of a sweep; ★ marks each backend's recommended variant."""
    table = Table(title=f"sweep {name} (★ recommended)", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("backend · settings", no_wrap=True)
    columns = ("wall_throughput_jobs_s", "lateness_median", "lateness_p99", "early_retries", "cpu_ms_per_attempt",
               "valid")  # the rest (memory, loss) is in report.md: a terminal is 80-120 columns wide
    for metric in columns:
        unit = METRICS[metric].unit
        table.add_column(SHORT.get(metric, metric.replace("_", " ")) + (f" {unit}" if unit and unit not in
                         SHORT.get(metric, "") else ""), justify="right", no_wrap=True)
    for r in rows:
        cells = [format_value(m, r["metrics"].get(m)) for m in columns]
        table.add_row(("★ " if r["recommended"] else "") + f"{r['backend']} · {label(r['settings'])}", *cells)
    notes = [f"{o['label']}: recording costs {overhead_note(o, cpu=False)}" for o in overhead(rows)]
    if notes:
        table.caption, table.caption_justify = "\n".join(notes), "left"
    return table


def compare_table(rows: list[Any], *, only_changed: bool = True) -> Table:
    """``retrybench compare`` as a rich table (rows are ``compare.Row``)."""
    table = Table(title="BASE → NEW", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for name in ("scenario", "backend", "metric", "base", "new", "change", "direction", "significant"):
        table.add_column(name, justify="right" if name in ("base", "new", "change") else "left", no_wrap=True)
    for r in rows:
        if only_changed and r.direction in ("same", "-") and not r.failed:
            continue
        sig = {True: "yes", False: "no (noise)", None: "n/a (1 run)"}[r.significant]
        colour = {"better": "green", "worse": "red"}.get(r.direction, "")
        direction = f"[{colour}]{r.direction}[/]" if colour else r.direction
        if r.failed:
            direction += " [bold red]FAIL " + ", ".join(r.failed) + "[/]"
        table.add_row(escape(r.scenario), r.backend, r.metric, format_value(r.metric, r.base, with_unit=True),
                      format_value(r.metric, r.new, with_unit=True),
                      "-" if r.change_pct is None else f"{r.change_pct:+.1f}%", direction, sig)
    return table

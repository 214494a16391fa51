"""Rich tables driven by the metric registry: one table per scenario, one row per backend."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .metrics import METRICS, format_value

SUMMARY_COLUMNS = ("jobs", "attempts", "succeeded", "failed", "failure_records", "lateness_median",
                   "lateness_p99", "early_retries", "throughput_jobs_s", "lost_jobs", "duplicate_executions",
                   "valid")


def _best(values: dict[str, Any], name: str) -> str | None:
    better = METRICS[name].better
    numeric = {b: v for b, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if better is None or len(numeric) < 2:
        return None
    if name.startswith("lateness"):
        # For lateness the best is the closest to zero, not the most negative (early is a violation).
        return min(numeric, key=lambda b: abs(numeric[b]))
    pick = min if better == "lower" else max
    return pick(numeric, key=lambda b: numeric[b])


def scenario_table(scenario: str, rows: dict[str, dict[str, Any]], *, versions: dict[str, dict[str, str]],
                   columns: tuple[str, ...] = SUMMARY_COLUMNS, repeat: int = 1) -> Table:
    """``rows`` maps backend → aggregates (``{"median": …}`` per metric) as in results.json."""
    title = f"{scenario}" + (f" — median of {repeat} runs" if repeat > 1 else "")
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("backend")
    for name in columns:
        metric = METRICS[name]
        unit = f" ({metric.unit})" if metric.unit else ""
        table.add_column(f"{metric.label}{unit}", justify="right")
    table.add_column("versions")
    values = {name: {b: _median(r.get(name)) for b, r in rows.items()} for name in columns}
    best = {name: _best(values[name], name) for name in columns}
    for backend in rows:
        cells = []
        for name in columns:
            value = values[name][backend]
            text = format_value(name, value)
            if name == "valid":
                text = "[green]yes[/]" if value else "[bold red]NO[/]"
            elif name in ("early_retries", "lost_jobs", "duplicate_executions") and value:
                text = f"[bold red]{text}[/]"
            elif best[name] == backend:
                text = f"[bold]{text}*[/]"
            cells.append(text)
        libs = versions.get(backend, {})
        cells.append(", ".join(f"{k} {v}" for k, v in libs.items()) or "-")
        table.add_row(backend, *cells)
    return table


def _median(entry: Any) -> Any:
    if isinstance(entry, dict):
        return entry.get("median", entry.get("all"))
    return entry


def print_results(results: dict[str, Any], console: Console) -> None:
    versions = results.get("environment", {}).get("backends", {})
    for scenario, rows in results.get("aggregates", {}).items():
        console.print(scenario_table(scenario, rows, versions=versions, repeat=results.get("repeat", 1)))
    if results.get("partial"):
        console.print("[yellow]partial run: some cells did not finish (interrupted or failed)[/]")
    for problem in results.get("history_problems", [])[:5]:
        console.print(f"[yellow]history: {problem}[/]")
    for cell in results.get("cells", []):
        if not cell.get("complete"):
            console.print(f"[yellow]{cell['backend']} · {cell['scenario']}: {cell['reason']}[/]")

"""Rich tables driven by the metric registry: one table per scenario, one row per backend."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.analysis.metrics import METRICS, format_value, median_of
from harness.analysis.overhead import overhead, overhead_note
from harness.analysis.sweeps import sweeps
from harness.analysis.verdicts import TITLES
from harness.plan.sweep import label
from implementations.backends import is_control

SUMMARY_COLUMNS = ("jobs", "attempts", "succeeded", "failed", "lateness_median",
                   "lateness_p99", "early_retries", "late_retries", "throughput_jobs_s", "lost_jobs",
                   "unrecovered_jobs", "duplicate_executions", "valid")
OUTAGE_COLUMNS = ("deferrals", "outage_calls", "recovery_s")
# For an outage, what the dependency went through replaces the failure-log and p50 columns (still in
# results.json and in the other scenarios' tables), so the table still fits 120 columns.
_OUTAGE_TABLE = ("jobs", "attempts", "succeeded", "failed", "lateness_p99", "early_retries", "late_retries",
                 "throughput_jobs_s", "lost_jobs", *OUTAGE_COLUMNS, "valid")


# Crashes, time limits, poison and a broker restart: what was hit, what came back, what was lost.
RELIABILITY_COLUMNS = ("interrupted_attempts", "recovered_jobs", "lost_after_crash", "failed_natively_after_crash",
                       "duplicated_after_crash", "recovery_median_s", "recovery_max_s")
_RELIABILITY_TABLE = ("jobs", "succeeded", "failed", "lost_jobs", "unrecovered_jobs", "duplicate_executions",
                      "interrupted_attempts", "recovered_jobs", "failed_natively_after_crash", "recovery_median_s",
                      "recovery_max_s", "valid")
# A task of the user's own: the failure log beside the timing, and the "expected" column that says "not planned".
_USER_TABLE = ("jobs", "attempts", "succeeded", "failed", "failure_records", "lateness_p99", "early_retries",
               "late_retries", "throughput_jobs_s", "lost_jobs", "duplicate_executions", "plan_mismatches", "valid")
_TIMEOUT_TABLE = ("jobs", "attempts", "succeeded", "failed", "lateness_p99", "early_retries", "late_retries",
                  "lost_jobs", "unrecovered_jobs", "timed_out_attempts", "timeouts_retried", "valid")
_POISON_TABLE = ("jobs", "attempts", "succeeded", "failed", "failure_records", "lost_jobs", "poison_jobs",
                 "poison_refused", "poison_failed_natively", "poison_recorded", "poison_unaccounted", "valid")
_BROKER_TABLE = ("jobs", "attempts", "succeeded", "failed", "lost_jobs", "duplicate_executions",
                 "interrupted_attempts", "broker_down_s", "broker_recovery_s", "valid")


def plan_note(definition: dict[str, Any] | None) -> str | None:
    """For a scenario that runs a task of the user's own: what "expected" means there (nothing is planned)."""
    task = (definition or {}).get("task")
    if not isinstance(task, str) or ":" not in task:
        return None
    return (f"Task {task} is your own: its outcomes are not planned (no seeded plan predicts them), so plan "
            "mismatches and expected records say \"not planned\"; attempts, retries and their timing against the "
            "policy, the failure log, loss and duplicates are measured as for any scenario.")


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
    if plan_note(definition) and not is_reliability(definition) and "outage" not in kinds:
        return _USER_TABLE
    if (definition.get("options") or {}).get("broker_restart_at") is not None:
        return _BROKER_TABLE
    if definition.get("poison"):
        return _POISON_TABLE
    if "crash" in kinds:
        return _RELIABILITY_TABLE
    if "timeout" in kinds:
        return _TIMEOUT_TABLE
    return _OUTAGE_TABLE if "outage" in kinds else SUMMARY_COLUMNS


# Headers short enough for an 80-column terminal; the full meaning is in docs/metrics.md.
SHORT = {"jobs": "jobs", "attempts": "tries", "succeeded": "ok", "failed": "fail", "failure_records": "f.log",
         "lateness_median": "late p50", "lateness_p99": "late p99", "early_retries": "early",
         "late_retries": "late", "unrecovered_jobs": "held", "on_time_share": "on time",
         "throughput_jobs_s": "jobs/s", "lost_jobs": "lost", "duplicate_executions": "dup", "valid": "verdict",
         "deferrals": "defer", "outage_calls": "out.calls", "recovery_s": "recov s",
         "interrupted_attempts": "killed", "recovered_jobs": "back", "lost_after_crash": "gone",
         "failed_natively_after_crash": "native fail", "duplicated_after_crash": "twice",
         "recovery_median_s": "rec p50 s", "recovery_max_s": "rec max s", "timed_out_attempts": "timed out",
         "timeouts_retried": "t/o retried", "poison_jobs": "poison", "poison_refused": "refused",
         "poison_failed_natively": "native fail", "poison_recorded": "recorded", "poison_unaccounted": "unacc.",
         "broker_down_s": "down s", "broker_recovery_s": "back after s", "cpu_ms_per_attempt": "cpu/try",
         "driver_peak_rss_mb": "rss", "wall_throughput_jobs_s": "jobs/s",
         "plan_mismatches": "expected"}


_RED = frozenset({"early_retries", "late_retries", "lost_jobs", "unrecovered_jobs", "duplicate_executions",
                  "lost_after_crash", "poison_unaccounted"})
_PACED = frozenset({"throughput_jobs_s", "throughput_attempts_s", "wall_throughput_jobs_s"})


def _best(values: dict[str, Any], name: str, eligible: set[str] | None = None) -> str | None:
    """The one row with the best value of ``name`` among ``eligible`` rows (complete, passing every contract,
    not a control); None when fewer than two compete or they tie."""
    better = METRICS[name].better
    numeric = {b: v for b, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and (eligible is None or b in eligible)}
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


def status_text(row: dict[str, Any] | None) -> str:
    """A row's verdict as a table cell (rich markup)."""
    if not row:
        return "-"
    status = row.get("status")
    if status == "pass":
        return "[green]control[/]" if row.get("control") else "[green]yes[/]"
    if status == "partial":
        return f"[yellow]partial {row.get('n')}/{row.get('asked')}[/]"
    if status == "fault did not fire":
        return "[yellow]no fault[/]"
    if status == "history off":
        return "[dim]history off[/]"
    return "[bold red]NO: " + ", ".join(TITLES.get(c, c) for c in row.get("failed", ())) + "[/]"


def runs_title(verdict: dict[str, Any] | None, repeat: int) -> str:
    """"median of N runs", with the real N: a row with fewer runs than asked says so."""
    ns = sorted({int(r.get("n", 0)) for r in ((verdict or {}).get("rows") or {}).values()}) or [repeat]
    if ns == [repeat]:
        return f" — median of {repeat} runs" if repeat > 1 else ""
    got = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return f" — median of {got} runs ({repeat} asked: partial)"


def scenario_table(scenario: str, rows: dict[str, dict[str, Any]], *, versions: dict[str, dict[str, str]],
                   columns: tuple[str, ...] = SUMMARY_COLUMNS, repeat: int = 1,
                   verdict: dict[str, Any] | None = None) -> Table:
    """``rows`` maps backend → aggregates (``{"median": …}`` per metric) as in results.json; ``verdict`` is the
    scenario's entry of ``results["verdicts"]`` (row statuses, what paces throughput)."""
    verdict = verdict or {}
    statuses = verdict.get("rows") or {}
    eligible = {b for b, r in statuses.items() if r.get("best_eligible")} if statuses else set()
    paced = verdict.get("paced_by")
    title = f"{scenario}" + runs_title(verdict, repeat)
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("backend")
    for name in columns:
        metric = METRICS[name]
        unit = f" {metric.unit}" if metric.unit and metric.unit not in SHORT.get(name, "") else ""
        flag = " (paced)" if paced and name in _PACED else ""
        # Headers wrap (at spaces) so that 13 columns fit 120; numbers never need to.
        table.add_column(f"{SHORT.get(name, name.replace('_', ' '))}{unit}{flag}", justify="right",
                         no_wrap=name == "valid")
    values = {name: {b: median_of(r.get(name)) for b, r in rows.items()} for name in columns}
    # Throughput paced by retry delays or arrivals is not capacity: nobody is best at it.
    best = {name: None if paced and name in _PACED else _best(values[name], name, eligible) for name in columns}
    for backend in rows:
        cells = []
        for name in columns:
            value = values[name][backend]
            text = format_value(name, value)
            if name == "valid":
                text = status_text(statuses.get(backend)) if statuses else (
                    "[green]yes[/]" if value else "[bold red]NO[/]")
            elif name in _RED and value:
                text = f"[bold red]{text}[/]"
            elif best[name] == backend:
                text = f"[bold]{text}*[/]"
            cells.append(text)
        label = f"{backend} (control)" if is_control(backend) else backend
        table.add_row(escape(label), *cells)
    if paced and _PACED & set(columns):
        table.caption = f"jobs/s is paced by the {paced} here, not the backend's capacity; * best among rows " \
                        "that pass every contract and are complete"
    else:
        table.caption = "* best among rows that pass every contract and are complete (controls are never ranked)"
    table.caption_justify = "left"
    return table



def print_verdicts(results: dict[str, Any], console: Console) -> None:
    """The plain-language verdict: per scenario, one sentence per backend, then the best one and its cost."""
    verdicts = results.get("verdicts") or {}
    if not verdicts:
        return
    console.print("[bold]Verdict[/]")
    for scenario, v in verdicts.items():
        mode = v.get("schedule") or "planned"
        console.print(f"[bold]{escape(scenario)}[/] [dim](schedule: {escape(str(mode))})[/]")
        for backend, sentence in (v.get("sentences") or {}).items():
            status = ((v.get("rows") or {}).get(backend) or {}).get("status")
            colour = {"pass": "green", "fail": "red"}.get(str(status), "yellow")
            console.print(f"  [{colour}]•[/] {escape(sentence)}")
        console.print(f"  [bold]{escape(str(v.get('best_sentence', '')))}[/]")
    console.print()


def print_results(results: dict[str, Any], console: Console) -> None:
    versions = results.get("environment", {}).get("backends", {})
    definitions = results.get("scenarios", {})
    print_verdicts(results, console)
    for scenario, rows in results.get("aggregates", {}).items():
        if (definitions.get(scenario) or {}).get("sweep_of"):
            continue  # printed as one table per sweep below
        console.print(scenario_table(scenario, rows, versions=versions, repeat=results.get("repeat", 1),
                                     columns=columns_for(results.get("scenarios", {}).get(scenario)),
                                     verdict=(results.get("verdicts") or {}).get(scenario)))
        if note := plan_note(definitions.get(scenario)):
            console.print(f"[dim]{escape(note)}[/]")
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
    """One row per (backend, variant) of a sweep; ★ marks each backend's recommended variant, ☆ the least bad
    when every variant of that backend failed a contract."""
    table = Table(title=f"sweep {name} (★ recommended; ☆ least bad, every variant failing a contract)",
                  title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("backend · settings", no_wrap=True)
    columns = ("wall_throughput_jobs_s", "lateness_median", "lateness_p99", "early_retries", "cpu_ms_per_attempt",
               "valid")  # the rest (memory, loss) is in report.md: a terminal is 80-120 columns wide
    for metric in columns:
        unit = METRICS[metric].unit
        table.add_column(SHORT.get(metric, metric.replace("_", " ")) + (f" {unit}" if unit and unit not in
                         SHORT.get(metric, "") else ""), justify="right", no_wrap=True)
    for r in rows:
        cells = [format_value(m, r["metrics"].get(m)) for m in columns]
        mark = ("☆ " if r["least_bad"] else "★ ") if r["recommended"] else ""
        table.add_row(mark + f"{r['backend']} · {label(r['settings'])}", *cells)
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

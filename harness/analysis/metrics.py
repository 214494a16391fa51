"""The one registry of metrics a results table can show: name, meaning, unit, direction, formatting.

Values are stored in base units (seconds, jobs per second, percent, counts); ``scale`` converts a
stored value to the unit shown, so lateness is stored in seconds and shown in milliseconds. Reports,
comparisons and plots all read this registry, so a metric is named and formatted the same everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Better = Literal["lower", "higher"] | None


@dataclass(frozen=True)
class Metric:
    """One reported quantity. ``better`` says which direction is an improvement (None: neither)."""

    name: str
    description: str
    unit: str = ""
    better: Better = None
    fmt: str = "d"
    scale: float = 1.0

    def format(self, value: object, *, with_unit: bool = False) -> str:
        """The value as a table cell: scaled, formatted, ``-`` when missing."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if not isinstance(value, (int, float)):
            return str(value)
        scaled = value * self.scale if self.scale != 1.0 else value
        spec = self.fmt
        if spec.endswith("d") and isinstance(scaled, float):
            # Counts that arrived as floats (averaged repetitions) keep one decimal rather than crash.
            spec = ".1f"
        text = format(scaled, spec)
        if not with_unit or not self.unit:
            return text
        return f"{text}%" if self.unit == "%" else f"{text} {self.unit}"


def _m(name: str, description: str, unit: str = "", better: Better = None, fmt: str = "d",
       scale: float = 1.0) -> tuple[str, Metric]:
    return name, Metric(name, description, unit, better, fmt, scale)


_LOWER: Better = "lower"
_HIGHER: Better = "higher"

METRICS: dict[str, Metric] = dict([
    # -- what ran ---------------------------------------------------------------------------------
    _m("jobs", "jobs enqueued"),
    _m("attempts", "executions started (crashed ones included)"),
    _m("retries", "attempts that ended asking for a retry"),
    _m("succeeded", "jobs whose terminal state is success"),
    _m("failed", "jobs whose terminal state is failure"),
    _m("unfinished", "jobs not terminal when an interrupted run stopped (not counted as lost)"),
    _m("complete", "the run finished and wrote its end event with complete=true", better=_HIGHER, fmt=""),
    # -- retry timing: lateness = actual gap between attempts - configured delay -------------------
    _m("retries_measured", "retries whose lateness could be measured"),
    _m("lateness_min", "earliest retry relative to its delay (negative: ran early)", "ms", None, ".1f", 1e3),
    _m("lateness_median", "median retry lateness", "ms", _LOWER, ".1f", 1e3),
    _m("lateness_p95", "95th percentile retry lateness", "ms", _LOWER, ".1f", 1e3),
    _m("lateness_p99", "99th percentile retry lateness", "ms", _LOWER, ".1f", 1e3),
    _m("lateness_max", "latest retry relative to its delay", "ms", _LOWER, ".1f", 1e3),
    _m("early_retries", "retries that started earlier than their delay minus the tolerance", better=_LOWER),
    _m("late_retries", "retries that started later than their delay plus the late budget (default 0.1 s + 10 % "
       "of the delay)", better=_LOWER),
    _m("on_time_share", "measured retries neither early nor late", "%", _HIGHER, ".1f"),
    _m("max_early_s", "how early the earliest early retry ran", "ms", _LOWER, ".1f", 1e3),
    _m("max_late_s", "how late the latest late retry ran", "ms", _LOWER, ".1f", 1e3),
    _m("scheduled_delays", "retry delays read from the library's own data (schedule events)"),
    _m("zero_delays", "of those, delays of 0 s (Celery's full jitter can draw 0)"),
    _m("off_schedule", "scheduled delays outside the policy's documented formula by more than the tolerance",
       better=_LOWER),
    _m("schedule_deviation_max", "largest difference between a delay the library scheduled and the documented "
       "formula (native schedule)", "ms", None, ".1f", 1e3),
    _m("timer_lateness_p99", "99th percentile of a retry's start minus the time the library scheduled it for "
       "(native schedule)", "ms", _LOWER, ".1f", 1e3),
    # -- throughput and end-to-end latency (enqueue -> terminal) ----------------------------------
    _m("duration_s", "first enqueue to last terminal event", "s", None, ".2f"),
    _m("throughput_jobs_s", "terminal jobs per second", "jobs/s", _HIGHER, ".1f"),
    _m("throughput_attempts_s", "attempts per second", "attempts/s", _HIGHER, ".1f"),
    _m("wall_throughput_jobs_s", "jobs done per second from the first enqueue until the driver saw the last "
       "finish (the same measure with the history on and off)", "jobs/s", _HIGHER, ".1f"),
    _m("enqueue_jobs_s", "jobs the client enqueued per second when a scenario enqueues them all at once",
       "jobs/s", _HIGHER, ".0f"),
    _m("worker_cpu_s", "CPU time of the worker processes and their children during the cell", "s", None, ".2f"),
    _m("cpu_ms_per_attempt", "worker CPU time per attempt (what the backend costs, idle polling included)", "ms",
       _LOWER, ".2f"),
    _m("worker_cpu_ms_per_job", "worker CPU time per job done (with the history off too, unlike per attempt)", "ms",
       _LOWER, ".2f"),
    _m("driver_cpu_ms_per_job", "CPU time of the harness's driver per job done: enqueueing, reading the events, "
       "writing the history (or, with it off, counting)", "ms", _LOWER, ".2f"),
    _m("window_driver_cpu_ms_per_job", "the driver's CPU time per job done inside the measured window (first "
       "enqueue until it saw the last finish)", "ms", _LOWER, ".3f"),
    _m("window_worker_cpu_ms_per_job", "the workers' CPU time per job done inside the measured window", "ms",
       _LOWER, ".3f"),
    _m("window_redis_cpu_ms_per_job", "the Redis server's CPU time per job done inside the measured window",
       "ms", _LOWER, ".3f"),
    _m("latency_p50", "median time from enqueue to terminal state", "s", _LOWER, ".3f"),
    _m("latency_p95", "95th percentile time from enqueue to terminal state", "s", _LOWER, ".3f"),
    _m("latency_p99", "99th percentile time from enqueue to terminal state", "s", _LOWER, ".3f"),
    # -- failure log --------------------------------------------------------------------------------
    _m("failure_records", "failure records written"),
    _m("failure_log_completeness", "required record fields present, over all records found", "%", _HIGHER,
       ".1f"),
    _m("missing_records", "terminal failures without a failure record", better=_LOWER),
    _m("duplicate_records", "failure records beyond the first for a job", better=_LOWER),
    _m("unexpected_records", "failure records for jobs that succeeded or were never enqueued", better=_LOWER),
    _m("native_mismatch", "jobs where the backend's own failed-job store and the failure log disagree",
       better=_LOWER),
    _m("callback_mismatch", "jobs whose on_retry/on_failure callbacks did not run once per retry/failure",
       better=_LOWER),
    _m("record_attempts_mismatch", "failure records whose attempts field differs from the attempts seen",
       better=_LOWER),
    # -- delivery -----------------------------------------------------------------------------------
    _m("lost_jobs", "jobs never terminal and in none of the library's stores at the end", better=_LOWER),
    _m("unrecovered_jobs", "jobs never terminal but still in one of the library's stores at the end (or the "
       "stores were not searched)", better=_LOWER),
    _m("failed_natively", "jobs the library failed in its own store without the Celery-style handler running"),
    _m("late_jobs", "jobs terminal only after the cell's deadline", better=_LOWER),
    _m("duplicated_jobs", "jobs with some attempt run to completion twice, or run again after success",
       better=_LOWER),
    _m("duplicate_executions", "attempts that ran to completion again, or ran after the job succeeded",
       better=_LOWER),
    _m("redelivered_attempts", "re-runs of an attempt that never finished (a crash): expected, not a fault"),
    _m("duplicate_terminals", "terminal events beyond the first for a job", better=_LOWER),
    _m("unknown_jobs", "jobs that ran in this run but were never enqueued by it", better=_LOWER),
    _m("over_retries", "jobs with more attempts than the plan or max_retries + 1 allow", better=_LOWER),
    _m("under_retries", "jobs that gave up while retries were left", better=_LOWER),
    _m("non_retryable_retried", "retries after an exception the policy does not retry", better=_LOWER),
    _m("plan_mismatches", "terminal jobs whose state or attempt count differs from the seeded plan",
       better=_LOWER),
    # -- dependency outage and circuit breaker ----------------------------------------------------------
    _m("deferrals", "attempts a circuit breaker turned away without calling the dependency"),
    _m("outage_calls", "attempts that called the dependency while an injected outage was on", better=_LOWER),
    _m("recovery_s", "from the end of the outage to the first attempt that succeeded", "s", _LOWER, ".2f"),
    # -- reliability: worker crashes, time limits, poison payloads, broker restart --------------------
    _m("interrupted_attempts", "attempts whose worker died under them (started, never finished)"),
    _m("crash_hit_jobs", "jobs with at least one interrupted attempt"),
    _m("recovered_jobs", "of those, jobs that still reached a terminal state", better=_HIGHER),
    _m("lost_after_crash", "of those, jobs that never ran again and are in none of the library's stores",
       better=_LOWER),
    _m("unrecovered_after_crash", "of those, jobs that never ran again but still sit in one of the library's "
       "stores (or the stores were not searched)", better=_LOWER),
    _m("failed_natively_after_crash", "of those, jobs the library marked failed without calling on_failure",
       better=_LOWER),
    _m("duplicated_after_crash", "of those, jobs that ran some attempt to completion twice", better=_LOWER),
    _m("on_failure_after_crash", "of those that failed for good, jobs whose on_failure ran", better=_HIGHER),
    _m("recovery_median_s", "median time from an interrupted attempt's start to the job's next start", "s",
       _LOWER, ".2f"),
    _m("recovery_max_s", "longest time from an interrupted attempt's start to the job's next start", "s",
       _LOWER, ".2f"),
    _m("timed_out_attempts", "attempts stopped by the task's time limit"),
    _m("timeouts_retried", "time-outs that were retried under the policy", better=_HIGHER),
    _m("poison_jobs", "jobs whose argument cannot be serialised or deserialised"),
    _m("poison_refused", "poison jobs the client refused at enqueue (the caller sees the error)"),
    _m("poison_failed_natively", "poison jobs in the library's own failed store"),
    _m("poison_recorded", "poison jobs with a failure record (on_failure ran)", better=_HIGHER),
    _m("poison_unaccounted", "poison jobs neither refused, nor failed natively, nor recorded", better=_LOWER),
    _m("broker_down_s", "how long the broker was down during a restart", "s", None, ".2f"),
    _m("broker_recovery_s", "from the broker's return to the first attempt that finished", "s", _LOWER, ".2f"),
    _m("driver_peak_rss_mb", "peak memory of the harness process that drove the cell", "MB", _LOWER, ".0f"),
    # -- verdict -----------------------------------------------------------------------------------
    _m("valid", "every contract passed, every planned fault fired and the cell is complete", better=_HIGHER,
       fmt=""),
])


# Metrics measured against the seeded plan: None for a task of the user's own, which has none.
NOT_PLANNED = frozenset({"plan_mismatches", "expected_records"})


def format_value(name: str, value: object, *, with_unit: bool = False) -> str:
    """Format ``value`` as metric ``name`` is shown; unknown names fall back to a plain rendering."""
    metric = METRICS.get(name)
    if value is None and name in NOT_PLANNED:
        return "not planned"  # a user task: no seeded plan says what to expect (harness.analysis.checks)
    if metric is None:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.4g}"
        return "-" if value is None else str(value)
    return metric.format(value, with_unit=with_unit)


def markdown_table() -> str:
    """The registry as the Markdown table docs/metrics.md holds (a test keeps the two identical)."""
    lines = ["| metric | unit | better | meaning |", "| --- | --- | --- | --- |"]
    for m in METRICS.values():
        lines.append(f"| `{m.name}` | {m.unit or '-'} | {m.better or '-'} | {m.description} |")
    return "\n".join(lines)


def median_of(entry: Any) -> Any:
    """The figure a table shows for an aggregate entry (``{"median": …, "min": …}``; ``{"all": …}`` for a count
    over every repetition), or the entry itself when it is a plain value."""
    return entry.get("median", entry.get("all")) if isinstance(entry, dict) else entry

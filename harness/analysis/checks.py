"""Checkers: pure functions over one run's history that count what went wrong and give a verdict.

Jepsen's rule: never trust a backend's own bookkeeping. Each checker compares what the history says
happened with what the seeded plan and the retry policy say should have happened, and returns plain
counts, a few human-readable examples and ``valid``. Every checker accepts the events of one run, or a
``RunIndex`` built once with ``index_run`` so that ``summarize`` reads the history a single time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from harness.analysis.checkbase import (
    DEFAULT_TOLERANCE_S,
    MAX_EXAMPLES,
    Run,
    add_example,
    as_index,
    percentile,
    summary_stats,
)
from harness.analysis.crashes import check_reliability
from harness.analysis.metrics import METRICS
from harness.analysis.outages import check_outage
from harness.analysis.runindex import RECORD_FIELDS, RunIndex, paused_gc
from harness.analysis.timing import check_retry_timing, late_budget, lateness_values
from implementations.backends import is_control
from implementations.core.policy import is_retryable_name as is_retryable

__all__ = ["DEFAULT_TOLERANCE_S", "check_delivery", "check_failure_log", "check_faults", "check_retry_timing",
           "check_throughput", "is_retryable", "late_budget", "lateness_values", "percentile", "summarize"]


# -- throughput and end-to-end latency --------------------------------------------------------------
def check_throughput(events: Run) -> dict[str, Any]:
    """Terminal jobs and attempts per second from the first enqueue to the last terminal event, and
    end-to-end latency (a job's enqueue to its first terminal event) in seconds."""
    idx = as_index(events)
    jobs = terminal = attempts = 0
    latencies: list[float] = []
    for jv in idx.jobs.values():
        attempts += sum(max(len(jv.starts.get(n, ())), len(jv.ends.get(n, ()))) for n in jv.attempts_seen())
        done = [ts for t in jv.terminals if (ts := t.ts_ns) is not None]
        terminal += bool(jv.terminals)
        if jv.enqueued_ns is not None:
            jobs += 1
            if done:
                latencies.append((min(done) - jv.enqueued_ns) / 1e9)
    first, last = idx.first_enqueue_ns, idx.last_terminal_ns
    span = (last - first) / 1e9 if first is not None and last is not None and last > first else None
    lat = summary_stats(latencies)
    end = idx.end or {}
    cpu, driver_cpu = end.get("worker_cpu_s"), end.get("driver_cpu_s")
    enqueue_s, wall_s, jobs_done = end.get("enqueue_s"), end.get("wall_s"), end.get("jobs_done")
    window = end.get("window_cpu_s") or {}
    unrecorded = end.get("record_history") is False  # the harness-overhead baseline: no history to judge
    return {"jobs": jobs, "terminal_jobs": terminal, "attempts": attempts, "duration_s": span,
            "enqueue_jobs_s": jobs / enqueue_s if enqueue_s else None, "worker_cpu_s": cpu,
            "wall_throughput_jobs_s": jobs_done / wall_s if wall_s and jobs_done else None,
            "cpu_ms_per_attempt": cpu * 1e3 / attempts if cpu is not None and attempts else None,
            "worker_cpu_ms_per_job": cpu * 1e3 / jobs_done if cpu is not None and jobs_done else None,
            "driver_cpu_ms_per_job": driver_cpu * 1e3 / jobs_done if driver_cpu is not None and jobs_done else None,
            **{f"window_{who}_cpu_ms_per_job": window[part] * 1e3 / jobs_done
               if isinstance(window.get(part), (int, float)) and jobs_done else None
               for who, part in (("driver", "driver"), ("worker", "workers"), ("redis", "redis"))},
            "throughput_jobs_s": terminal / span if span else None,
            "throughput_attempts_s": attempts / span if span else None, "latency_p50": lat["median"],
            "latency_p95": lat["p95"], "latency_p99": lat["p99"], "latency_max": lat["max"],
            "valid": jobs > 0 or (unrecorded and bool(jobs_done)),
            "history_off": unrecorded, "jobs_done": jobs_done}


# -- failure log -------------------------------------------------------------------------------------
def check_failure_log(events: Run) -> dict[str, Any]:
    """One complete failure record per terminal failure, agreeing with the backend's own store and
    with the on_failure/on_retry callbacks."""
    idx = as_index(events)
    need = {jid for jid, jv in idx.jobs.items() if jv.state == "failure" or (
        # A job the plan says fails, gone without a terminal event, still owes the log a record.
        jv.state is None and (jv.expected or {}).get("state") == "failure" and jv.enqueued_ns is not None
        and not idx.partial)}
    recorded = {jid for jid, jv in idx.jobs.items() if jv.records}
    missing = sorted(need - recorded)
    c = dict.fromkeys(("duplicate_records", "unexpected_records", "record_attempts_mismatch",
                       "on_retry_mismatch", "on_failure_mismatch", "callback_mismatch"), 0)
    present = dict.fromkeys(RECORD_FIELDS, 0)
    examples = [f"{jid}: failed for good but has no failure record" for jid in missing[:MAX_EXAMPLES]]
    for jid, jv in idx.jobs.items():
        seen = len(jv.attempts_seen())
        for r in jv.records:
            for name in RECORD_FIELDS:
                value = r.get(name)
                present[name] += value is not None and value != ""  # an empty args list is present
            if r.get("attempts") != seen:
                c["record_attempts_mismatch"] += 1
                add_example(examples, f"{jid}: record says {r.get('attempts')} attempt(s), history shows {seen}")
        if jid in need and len(jv.records) > 1:
            c["duplicate_records"] += len(jv.records) - 1
            add_example(examples, f"{jid}: {len(jv.records)} failure records for one failure")
        elif jid not in need and jv.records:
            c["unexpected_records"] += len(jv.records)
            what = ("was never enqueued" if jv.enqueued_ns is None
                    else "succeeded" if jv.state == "success" else "never became terminal")
            add_example(examples, f"{jid}: failure record for a job that {what}")
        retries = sum(a.outcome == "retry" for ends in jv.ends.values() for a in ends)
        # A library that retries a job whose worker died calls on_retry with no failed attempt to show for
        # it (Celery's retry on worker loss, RQ's abandoned-job cleanup): allowed once per such crash.
        ran = jv.attempts_seen()
        lost_retries = sum(len(starts) > len(jv.ends.get(n, ())) and any(m > n for m in ran)
                           for n, starts in jv.starts.items())
        bad_retry = not retries <= jv.on_retry <= retries + lost_retries
        bad_failure = jv.on_failure != (jv.state == "failure")
        c["on_retry_mismatch"] += bad_retry
        c["on_failure_mismatch"] += bad_failure
        c["callback_mismatch"] += bad_retry or bad_failure
        if bad_retry or bad_failure:
            add_example(examples, f"{jid}: on_retry ran {jv.on_retry}x for {retries} retries, on_failure "
                               f"{jv.on_failure}x for state {jv.state}")
    native = idx.native
    native_only = sorted(native - recorded) if native is not None else []
    log_only = sorted(recorded - native) if native is not None else []
    for jid in native_only[:MAX_EXAMPLES]:
        add_example(examples, f"{jid}: in the backend's failed store but not in the failure log")
    for jid in log_only[:MAX_EXAMPLES]:
        add_example(examples, f"{jid}: in the failure log but not in the backend's failed store")
    n_records = sum(len(jv.records) for jv in idx.jobs.values())
    total, found = n_records * len(RECORD_FIELDS), sum(present.values())
    mismatch = len(native_only) + len(log_only)
    # A user task has no seeded plan: the records needed are those of the failures that happened ("not planned").
    planned = (idx.header or {}).get("planned") is not False
    return {"expected_records": len(need) if planned else None, "planned": planned, "failure_records": n_records,
            "missing_records": len(missing), **c,
            "failure_log_completeness": 100.0 * found / total if total else None,
            "field_completeness": {k: 100.0 * v / n_records for k, v in present.items()} if n_records else {},
            "native_checked": native is not None, "native_only": len(native_only), "log_only": len(log_only),
            "native_mismatch": mismatch, "examples": examples,
            "valid": not (missing or mismatch or any(c.values())) and found == total}


# -- delivery: lost, duplicated, too many or too few attempts ----------------------------------------
_COUNTS = ("lost_jobs", "unrecovered_jobs", "late_jobs", "duplicate_executions", "duplicate_terminals",
           "unknown_jobs", "over_retries", "under_retries", "non_retryable_retried", "plan_mismatches")
# Reported, not delivery violations: an interrupted run's unfinished jobs prove nothing, a re-run of a crashed
# attempt is recovery, and a job the library failed on its own is the failure log's violation (no on_failure).
_NOTES = ("unfinished", "redelivered_attempts", "failed_natively", "duplicated_jobs")
NOT_CHECKED = "stores not searched"


def check_delivery(events: Run, *, deadline_ns: int | None = None) -> dict[str, Any]:
    """Every job terminal exactly once, each attempt run once, and as many attempts as the policy and
    the plan allow, with every job accounted for as Jepsen's total-queue checker does.

    A job with no terminal event is *failed natively* when the library's own failed store holds it (the
    Celery-style handler never ran), *unrecovered* when it still sits in one of the library's stores at the
    end (``whereabouts``: named, with when the library would bring it back), and *lost* only when it is in
    no store at all. Without a search of the stores it stays unrecovered ("stores not searched"): the
    deadline alone never makes a job lost. ``deadline_ns`` (wall clock) defaults to the first enqueue plus
    the header's ``deadline_s``; a job terminal only after it is *late*."""
    idx = as_index(events)
    policy = idx.policy
    max_retries = policy.get("max_retries")
    cap = max_retries + 1 if isinstance(max_retries, int) else None
    limit = (idx.header or {}).get("deadline_s")
    if deadline_ns is None and limit is not None and idx.first_enqueue_ns is not None:
        deadline_ns = idx.first_enqueue_ns + int(limit * 1e9)
    retryable = functools.lru_cache(maxsize=None)(lambda exc: is_retryable(exc, policy))
    c = dict.fromkeys(_COUNTS + _NOTES + ("succeeded", "failed"), 0)
    examples: list[str] = []
    plan_examples: list[str] = []
    native = idx.native or set()
    whereabouts = idx.whereabouts
    stores: dict[str, int] = {}
    for jid, jv in idx.jobs.items():
        ran = jv.attempts_seen()
        used = len(ran)
        expected = jv.expected or {}
        poison = expected.get("state") == "poison"
        term = jv.terminals[0] if jv.terminals else None
        state = term.state if term is not None else None
        c["succeeded"] += state == "success" and jv.enqueued_ns is not None
        c["failed"] += state == "failure" and jv.enqueued_ns is not None
        c["duplicate_terminals"] += max(0, len(jv.terminals) - 1)
        if jv.enqueued_ns is None:
            if ran or term is not None:
                c["unknown_jobs"] += 1
                add_example(examples, f"{jid}: ran but was never enqueued by this run")
        elif term is None and poison:
            pass  # no task body ever sees a poison payload: where it ended is the reliability check's
        elif term is None and idx.partial:
            c["unfinished"] += 1
        elif term is None and jid in native:
            c["failed_natively"] += 1
        elif term is None:
            where = whereabouts.get(jid, []) if whereabouts is not None else [NOT_CHECKED]
            if where:
                c["unrecovered_jobs"] += 1
                for store in where:
                    stores[store] = stores.get(store, 0) + 1
                add_example(examples, f"{jid}: not terminal at the end, still in {', '.join(where)} "
                                   f"({used} attempt(s) seen)")
            else:
                c["lost_jobs"] += 1
                add_example(examples, f"{jid}: lost: never terminal and in none of the library's stores "
                                   f"({used} attempt(s) seen)")
        elif deadline_ns is not None and (term.ts_ns or 0) > deadline_ns:
            c["late_jobs"] += 1
            add_example(examples, f"{jid}: terminal only after the deadline")
        # One pass over the finished attempts: duplicates, the first success, the last error, and
        # failures the policy does not retry.
        first_win, last_exc, last_n, not_retryable = None, None, 0, []
        twice = any(len(ends) > 1 for ends in jv.ends.values())
        for n, ends in jv.ends.items():
            if len(ends) > 1:
                c["duplicate_executions"] += len(ends) - 1
                add_example(examples, f"{jid}: attempt {n} ran {len(ends)} times")
            c["redelivered_attempts"] += max(0, len(jv.starts.get(n, ())) - len(ends))
            for a in ends:
                if a.outcome == "success":
                    first_win = n if first_win is None else min(first_win, n)
                elif exc := a.exc_type:
                    if n >= last_n:
                        last_exc, last_n = exc, n
                    if policy and not retryable(exc):
                        not_retryable.append((n, exc))
        for n, starts in jv.starts.items():
            # A re-run of an attempt that never finished is recovery from a crash, not a duplicate.
            if n not in jv.ends:
                c["redelivered_attempts"] += len(starts) - 1
        if first_win is not None and (after := sum(n > first_win for n in ran)):
            c["duplicate_executions"] += after
            twice = True
            add_example(examples, f"{jid}: {after} attempt(s) after attempt {first_win} succeeded")
        c["duplicated_jobs"] += twice
        want = expected.get("attempts") if isinstance(expected.get("attempts"), int) else None
        allowed = min((x for x in (cap, want) if x is not None), default=None)
        if allowed is not None and used > allowed:
            c["over_retries"] += 1
            add_example(examples, f"{jid}: {used} attempts, allowed {allowed}")
        exc = (term.exc_type if term is not None else None) or last_exc
        gave_up = state == "failure" and cap is not None and used < cap and exc and retryable(exc)
        if term is not None and (gave_up or (want is not None and used < want)):
            c["under_retries"] += 1
            add_example(examples, f"{jid}: stopped after {used} attempt(s) ({exc or 'no error'}), retries left")
        for n, bad in not_retryable:
            if n + 1 in ran:
                c["non_retryable_retried"] += 1
                add_example(examples, f"{jid}: attempt {n + 1} ran after non-retryable {bad}")
        if expected and not poison and term is not None and (state != expected.get("state") or used != want):
            c["plan_mismatches"] += 1
            add_example(plan_examples, f"{jid}: plan says {expected.get('state')} after {want} attempt(s), "
                                    f"history shows {state} after {used}")
    planned = (idx.header or {}).get("planned") is not False
    return {"jobs": sum(jv.enqueued_ns is not None for jv in idx.jobs.values()), "partial": idx.partial,
            "planned": planned, "policy_known": bool(policy), "deadline_ns": deadline_ns, **c,
            # A user task: no job has an expectation, so nothing can be off the plan ("not planned"). Attempts,
            # retries (against the policy), loss and duplicates above are computed all the same.
            "plan_mismatches": c["plan_mismatches"] if planned else None,
            "stores_searched": whereabouts is not None, "unrecovered_in": stores,
            "recovery_hints": {k: v for k, v in idx.recovery_hints.items() if k in stores},
            "examples": examples,
            "plan_mismatch_examples": plan_examples, "valid": not any(c[k] for k in _COUNTS)}


# -- faults: what the plan asked for must have happened ----------------------------------------------


def check_faults(events: Run) -> dict[str, Any]:
    """Every kind of fault the plan asked for (crash, timeout, outage, poison, a broker restart, …) must have
    hit at least one attempt or job: a cell whose faults never fired measured nothing of what it claims."""
    idx = as_index(events)
    header, end = idx.header or {}, idx.end or {}
    planned = {str(f.get("kind")) for f in header.get("faults") or () if isinstance(f, Mapping)}
    if (header.get("options") or {}).get("broker_restart_at") is not None and not is_control(str(idx.backend or "")):
        planned.add("broker_restart")  # an in-process control has no broker to lose
    if header.get("poison"):
        planned.add("poison")
    fired = set(idx.faults_fired)
    if any(e.get("event") == "restart" for e in idx.broker):
        fired.add("broker_restart")
    if idx.refused or any((jv.expected or {}).get("state") == "poison" for jv in idx.jobs.values()):
        fired.add("poison")
    unrecorded = end.get("record_history") is False  # the overhead baseline writes no attempts to look at
    missing = [] if unrecorded else sorted(planned - fired)
    return {"faults_planned": sorted(planned), "faults_fired": sorted(planned & fired),
            "faults_not_fired": missing, "valid": not missing}


# -- one cell's summary ------------------------------------------------------------------------------
def summarize(events: Run, *, tolerance_s: float | None = None, deadline_ns: int | None = None,
              keep_values: bool = False) -> dict[str, Any]:
    """Every check over one run: ``{"run": identity, "metrics": {METRICS name: value}, "checks": {...}}``.

    Check results use the metric names, so ``metrics`` is just their registered keys, in registry
    order. ``keep_values`` keeps the raw lateness list in ``checks["timing"]`` (large; plots use it).
    """
    with paused_gc():
        return _summarize(as_index(events), tolerance_s=tolerance_s, deadline_ns=deadline_ns, keep_values=keep_values)


def _summarize(idx: RunIndex, *, tolerance_s: float | None, deadline_ns: int | None,
               keep_values: bool) -> dict[str, Any]:
    checks = {"timing": check_retry_timing(idx, tolerance_s=tolerance_s), "throughput": check_throughput(idx),
              "failure_log": check_failure_log(idx), "delivery": check_delivery(idx, deadline_ns=deadline_ns),
              "outage": check_outage(idx), "reliability": check_reliability(idx), "faults": check_faults(idx)}
    if not keep_values:
        checks["timing"].pop("lateness")
    end = idx.end or {}
    merged: dict[str, Any] = {k: v for check in checks.values() for k, v in check.items() if k != "valid"}
    merged["complete"] = end.get("complete") is True
    # A partial cell (interrupted, its driver dead, cut short by an error) is never valid, whatever it recorded.
    merged["valid"] = all(check["valid"] for check in checks.values()) and merged["complete"] and not idx.partial
    run = {"cell_id": idx.cell_id, "backend": idx.backend, "scenario": idx.scenario,
           "repeat": (idx.header or {}).get("repeat"), "complete": merged["complete"], "partial": idx.partial,
           "reason": end.get("reason") if idx.end is not None else "no end event: the run was interrupted"}
    return {"run": run, "metrics": {name: merged[name] for name in METRICS if name in merged}, "checks": checks}

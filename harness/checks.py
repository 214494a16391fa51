"""Checkers: pure functions over one run's history that count what went wrong and give a verdict.

Jepsen's rule: never trust a backend's own bookkeeping. Each checker compares what the history says
happened with what the seeded plan and the retry policy say should have happened, and returns plain
counts, a few human-readable examples and ``valid``. Every checker accepts the events of one run, or a
``RunIndex`` built once with ``index_run`` so that ``summarize`` reads the history a single time.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from implementations.backends import is_control
from implementations.policy import PolicyError, RetryPolicy

from .metrics import METRICS
from .reliability import check_reliability
from .resilience import check_outage
from .runindex import RECORD_FIELDS, Event, RunIndex, index_run, paused_gc

DEFAULT_TOLERANCE_S = 0.002
MAX_EXAMPLES = 5


Run = Iterable[Event] | RunIndex


def _index(run: Run) -> RunIndex:
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


def _stats(values: list[float]) -> dict[str, float | None]:
    data = sorted(values)
    return {"min": data[0] if data else None, "median": percentile(data, 50, presorted=True),
            "p95": percentile(data, 95, presorted=True), "p99": percentile(data, 99, presorted=True),
            "max": data[-1] if data else None, "mean": sum(data) / len(data) if data else None}


def _example(examples: list[str], text: str) -> None:
    if len(examples) < MAX_EXAMPLES:
        examples.append(text)


@functools.lru_cache(maxsize=512)
def _builtin_exc(name: str) -> type | None:
    obj = getattr(builtins, name, None) if "." not in name else None
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def _matches(exc_type: str, names: Iterable[str]) -> bool:
    # The policy holds class names, not classes: exact names match, and builtin subclasses match
    # builtin bases (ConnectionRefusedError is an OSError) as ``isinstance`` would in the worker.
    cls = _builtin_exc(exc_type)
    for name in names:
        if name == exc_type or name in ("Exception", "BaseException"):
            return True
        base = _builtin_exc(name)
        if cls is not None and base is not None and issubclass(cls, base):
            return True
    return False


def is_retryable(exc_type: str, policy: Mapping[str, Any]) -> bool:
    """Celery's rule on exception names: ``dont_autoretry_for`` wins, then ``autoretry_for`` must match."""
    if _matches(exc_type, policy.get("dont_autoretry_for") or ()):
        return False
    return _matches(exc_type, policy.get("autoretry_for") or ())


# -- retry timing ------------------------------------------------------------------------------------
WHOLE_SECOND_SLACK_S = 0.05
LATE_FLOOR_S = 0.1  # default late budget: 100 ms of scheduling slack on any delay …
LATE_SHARE = 0.1  # … plus a tenth of the delay that was asked for


def late_budget(delay: float, budget_s: float | None) -> float:
    """How late a retry may start: ``budget_s`` when the scenario sets one, else 0.1 s + 10 % of ``delay``."""
    return float(budget_s) if budget_s is not None else LATE_FLOOR_S + LATE_SHARE * max(0.0, delay)


def _documented_range(policy: Mapping[str, Any], n: int) -> tuple[float, float] | None:
    """The delay before retry ``n`` (1-based) that the policy's documented formula allows: one value, or
    Celery's full-jitter range [0, countdown]."""
    try:
        p = RetryPolicy.from_dict(policy)
    except (PolicyError, TypeError, ValueError):
        return None
    base = p.base_delay(n - 1) * p.time_scale
    return (0.0 if p.retry_jitter else base, base)


def check_retry_timing(events: Run, *, tolerance_s: float | None = None,
                       late_budget_s: float | None = None) -> dict[str, Any]:
    """Lateness of every retry: (start of attempt n+1 - end of attempt n) - the delay configured.

    Two-sided: a retry earlier than ``-tolerance_s`` (default: the run header's, else 2 ms) is *early*, one
    later than its late budget (the header's ``late_budget_s``, else ``late_budget(delay)``) is *late*; both
    fail. In the ``native`` schedule mode the delay is the one the library itself scheduled ("schedule"
    events: timer lateness), and ``schedule_deviation`` measures that delay against the documented formula.
    """
    idx = _index(events)
    header = idx.header or {}
    if tolerance_s is None:
        tolerance_s = header.get("tolerance_s")
    tol = DEFAULT_TOLERANCE_S if tolerance_s is None else float(tolerance_s)
    if late_budget_s is None:
        given = header.get("late_budget_s", (header.get("options") or {}).get("late_budget_s"))
        late_budget_s = float(given) if isinstance(given, (int, float)) and not isinstance(given, bool) else None
    native = header.get("schedule") == "native"
    values: list[float] = []
    deviations: list[float] = []
    scheduled: list[float] = []  # the delays the library itself scheduled (native mode)
    by_retry: dict[int, list[float]] = {}
    retries = unmeasured = early = late = zero_delays = 0
    worst_early = worst_late = 0.0
    examples: list[str] = []
    for jv in idx.jobs.values():
        for n, ends in jv.ends.items():
            ev = next((a for a in ends if a.outcome == "retry"), None)
            if ev is None:
                continue
            retries += 1
            delay = ev.expected_delay
            planned = (jv.expected or {}).get("delays") or ()
            if delay is None and 0 < n <= len(planned):
                delay = planned[n - 1]
            nxt, finished = jv.start_ns(n + 1), ev.finished_ns
            due = None
            own = jv.schedules.get(n) if native else None
            if own is not None and own[1] is not None:
                due, delay = own[0], own[1]
                zero_delays += delay <= 0
                scheduled.append(delay)
                documented = _documented_range(idx.policy, n)
                if documented is not None:
                    lo, hi = documented
                    deviations.append(delay - hi if delay > hi else delay - lo if delay < lo else 0.0)
            if nxt is None or delay is None or (finished is None and due is None):
                unmeasured += 1  # the job stopped here (lost, crashed, interrupted) or no delay is known
                continue
            late_s = (nxt - due) / 1e9 if due is not None else (nxt - finished) / 1e9 - delay  # type: ignore[operator]
            values.append(late_s)
            by_retry.setdefault(n, []).append(late_s)
            budget = late_budget(delay, late_budget_s)
            if late_s < -tol:
                early += 1
                worst_early = max(worst_early, -late_s)
                _example(examples, f"{jv.job_id}: retry {n} started {-late_s * 1e3:.1f} ms before its "
                                   f"{delay:g} s delay was up")
            elif late_s > budget:
                late += 1
                worst_late = max(worst_late, late_s)
                _example(examples, f"{jv.job_id}: retry {n} started {late_s * 1e3:.0f} ms after its {delay:g} s "
                                   f"delay was up (budget {budget * 1e3:.0f} ms)")
    measured = len(values)
    off = [d for d in deviations if abs(d) > tol]
    if off:
        _example(examples, f"{len(off)} of {len(deviations)} scheduled delays differ from the documented formula "
                           f"by up to {max(abs(d) for d in off) * 1e3:.0f} ms")
    return {"retries": retries, "retries_measured": measured, "unmeasured": unmeasured, "tolerance_s": tol,
            "late_budget_s": late_budget_s, "schedule": "native" if native else "planned",
            **{f"lateness_{k}": v for k, v in _stats(values).items()}, "early_retries": early,
            "late_retries": late, "on_time_share": 100.0 * (measured - early - late) / measured if measured else None,
            "max_early_s": worst_early if early else None, "max_late_s": worst_late if late else None,
            "scheduled_delays": len(deviations), "zero_delays": zero_delays, "off_schedule": len(off),
            "scheduled_delay_min": min(scheduled) if scheduled else None,
            "scheduled_delay_max": max(scheduled) if scheduled else None,
            # Whole seconds, give or take the ~10 ms from the failure to the library's scheduling call.
            "whole_second_delays": sum(abs(d - round(d)) < WHOLE_SECOND_SLACK_S for d in scheduled),
            "schedule_deviation_max": max(deviations, key=abs) if deviations else None,
            "timer_lateness_p99": percentile(values, 99) if native and deviations else None,
            "median_by_retry": {str(n): percentile(v, 50) for n, v in sorted(by_retry.items())},
            "lateness": values, "examples": examples, "valid": early == 0 and late == 0 and not off}


def lateness_values(events: Run) -> list[float]:
    """Every measured retry lateness in seconds (for plots)."""
    return list(check_retry_timing(events)["lateness"])


# -- throughput and end-to-end latency --------------------------------------------------------------
def check_throughput(events: Run) -> dict[str, Any]:
    """Terminal jobs and attempts per second from the first enqueue to the last terminal event, and
    end-to-end latency (a job's enqueue to its first terminal event) in seconds."""
    idx = _index(events)
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
    lat = _stats(latencies)
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
            "held_write_ms": held * 1e3 if isinstance(held := end.get("held_write_s"), (int, float)) else None,
            "throughput_jobs_s": terminal / span if span else None,
            "throughput_attempts_s": attempts / span if span else None, "latency_p50": lat["median"],
            "latency_p95": lat["p95"], "latency_p99": lat["p99"], "latency_max": lat["max"],
            "valid": jobs > 0 or (unrecorded and bool(jobs_done))}


# -- failure log -------------------------------------------------------------------------------------
def check_failure_log(events: Run) -> dict[str, Any]:
    """One complete failure record per terminal failure, agreeing with the backend's own store and
    with the on_failure/on_retry callbacks."""
    idx = _index(events)
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
                _example(examples, f"{jid}: record says {r.get('attempts')} attempt(s), history shows {seen}")
        if jid in need and len(jv.records) > 1:
            c["duplicate_records"] += len(jv.records) - 1
            _example(examples, f"{jid}: {len(jv.records)} failure records for one failure")
        elif jid not in need and jv.records:
            c["unexpected_records"] += len(jv.records)
            what = ("was never enqueued" if jv.enqueued_ns is None
                    else "succeeded" if jv.state == "success" else "never became terminal")
            _example(examples, f"{jid}: failure record for a job that {what}")
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
            _example(examples, f"{jid}: on_retry ran {jv.on_retry}x for {retries} retries, on_failure "
                               f"{jv.on_failure}x for state {jv.state}")
    native = idx.native
    native_only = sorted(native - recorded) if native is not None else []
    log_only = sorted(recorded - native) if native is not None else []
    for jid in native_only[:MAX_EXAMPLES]:
        _example(examples, f"{jid}: in the backend's failed store but not in the failure log")
    for jid in log_only[:MAX_EXAMPLES]:
        _example(examples, f"{jid}: in the failure log but not in the backend's failed store")
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
    idx = _index(events)
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
                _example(examples, f"{jid}: ran but was never enqueued by this run")
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
                _example(examples, f"{jid}: not terminal at the end, still in {', '.join(where)} "
                                   f"({used} attempt(s) seen)")
            else:
                c["lost_jobs"] += 1
                _example(examples, f"{jid}: lost: never terminal and in none of the library's stores "
                                   f"({used} attempt(s) seen)")
        elif deadline_ns is not None and (term.ts_ns or 0) > deadline_ns:
            c["late_jobs"] += 1
            _example(examples, f"{jid}: terminal only after the deadline")
        # One pass over the finished attempts: duplicates, the first success, the last error, and
        # failures the policy does not retry.
        first_win, last_exc, last_n, not_retryable = None, None, 0, []
        twice = any(len(ends) > 1 for ends in jv.ends.values())
        for n, ends in jv.ends.items():
            if len(ends) > 1:
                c["duplicate_executions"] += len(ends) - 1
                _example(examples, f"{jid}: attempt {n} ran {len(ends)} times")
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
            _example(examples, f"{jid}: {after} attempt(s) after attempt {first_win} succeeded")
        c["duplicated_jobs"] += twice
        want = expected.get("attempts") if isinstance(expected.get("attempts"), int) else None
        allowed = min((x for x in (cap, want) if x is not None), default=None)
        if allowed is not None and used > allowed:
            c["over_retries"] += 1
            _example(examples, f"{jid}: {used} attempts, allowed {allowed}")
        exc = (term.exc_type if term is not None else None) or last_exc
        gave_up = state == "failure" and cap is not None and used < cap and exc and retryable(exc)
        if term is not None and (gave_up or (want is not None and used < want)):
            c["under_retries"] += 1
            _example(examples, f"{jid}: stopped after {used} attempt(s) ({exc or 'no error'}), retries left")
        for n, bad in not_retryable:
            if n + 1 in ran:
                c["non_retryable_retried"] += 1
                _example(examples, f"{jid}: attempt {n + 1} ran after non-retryable {bad}")
        if expected and not poison and term is not None and (state != expected.get("state") or used != want):
            c["plan_mismatches"] += 1
            _example(plan_examples, f"{jid}: plan says {expected.get('state')} after {want} attempt(s), "
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
_IMPLICIT = ("poison", "broker_restart")  # faults that are not rules of the plan but scenario settings


def check_faults(events: Run) -> dict[str, Any]:
    """Every kind of fault the plan asked for (crash, timeout, outage, poison, a broker restart, …) must have
    hit at least one attempt or job: a cell whose faults never fired measured nothing of what it claims."""
    idx = _index(events)
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
        return _summarize(_index(events), tolerance_s=tolerance_s, deadline_ns=deadline_ns, keep_values=keep_values)


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
    run = {"run_id": idx.run_id, "backend": idx.backend, "scenario": idx.scenario,
           "repeat": (idx.header or {}).get("repeat"), "complete": merged["complete"], "partial": idx.partial,
           "reason": end.get("reason") if idx.end is not None else "no end event: the run was interrupted"}
    return {"run": run, "metrics": {name: merged[name] for name in METRICS if name in merged}, "checks": checks}

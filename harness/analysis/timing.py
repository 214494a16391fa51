"""The timing checker: every retry's lateness against its delay, early and late (two-sided), and in the
native schedule mode the library's own scheduled delays against the documented formula."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.analysis.checkbase import DEFAULT_TOLERANCE_S, Run, add_example, as_index, percentile, summary_stats
from harness.analysis.turns import turn_waits
from implementations.core.policy import PolicyError, RetryPolicy

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
    fail. When the header says ``late_from: turn`` (the backlog presets: a retry waits its turn in the queue
    by design) lateness is counted from the later of the delay being up and the start of the work that was
    due before it (harness.analysis.turns): ``late_behind_older`` counts the retries late from their delay
    but on time from their turn, ``turn_wait_max_s`` is the longest such wait. ``late_no_delay`` counts the
    late retries asked for with no delay. In the ``native`` schedule mode the delay is the one the library
    itself scheduled ("schedule" events: timer lateness), and ``schedule_deviation`` measures that delay
    against the documented formula.
    """
    idx = as_index(events)
    header = idx.header or {}
    if tolerance_s is None:
        tolerance_s = header.get("tolerance_s")
    tol = DEFAULT_TOLERANCE_S if tolerance_s is None else float(tolerance_s)
    if late_budget_s is None:
        given = header.get("late_budget_s", (header.get("options") or {}).get("late_budget_s"))
        late_budget_s = float(given) if isinstance(given, (int, float)) and not isinstance(given, bool) else None
    native, from_turn = header.get("schedule") == "native", header.get("late_from") == "turn"
    deviations: list[float] = []
    scheduled: list[float] = []  # the delays the library itself scheduled (native mode)
    measured: list[tuple[str, int, float, float, int, int]] = []  # job, n, delay, lateness, due, start
    firsts: list[tuple[int, int]] = []  # every first attempt: (due = its enqueue, start)
    retries = unmeasured = zero_delays = 0
    for jv in idx.jobs.values():
        first = jv.start_ns(1)
        if first is not None and jv.enqueued_ns is not None:
            firsts.append((jv.enqueued_ns, first))
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
            due_ns = due if due is not None else int(finished + delay * 1e9)  # type: ignore[operator]
            measured.append((jv.job_id, n, delay, (nxt - due_ns) / 1e9, due_ns, nxt))
    waits = (turn_waits([(due, start) for *_, due, start in measured], firsts) if from_turn
             else [0.0] * len(measured))
    values = [late_s for _, _, _, late_s, _, _ in measured]
    by_retry: dict[int, list[float]] = {}
    early = late = behind = late_no_delay = 0
    worst_early = worst_late = 0.0
    examples: list[str] = []
    for (job_id, n, delay, late_s, _, _), wait in zip(measured, waits, strict=True):
        by_retry.setdefault(n, []).append(late_s)
        budget = late_budget(delay, late_budget_s)
        if late_s < -tol:
            early += 1
            worst_early = max(worst_early, -late_s)
            add_example(examples, f"{job_id}: retry {n} started {-late_s * 1e3:.1f} ms before its "
                                  f"{delay:g} s delay was up")
            continue
        if late_s <= budget:
            continue
        if late_s - wait <= budget:
            behind += 1  # late from its delay, on time from its turn in the queue
            continue
        late += 1
        late_no_delay += delay <= 0
        worst_late = max(worst_late, late_s - wait)
        turn = f", {wait * 1e3:.0f} ms of it behind older work" if wait > 0 else ""
        add_example(examples, f"{job_id}: retry {n} started {late_s * 1e3:.0f} ms after its {delay:g} s "
                              f"delay was up{turn} (budget {budget * 1e3:.0f} ms)")
    n_measured = len(values)
    off = [d for d in deviations if abs(d) > tol]
    if off:
        add_example(examples, f"{len(off)} of {len(deviations)} scheduled delays differ from the documented formula "
                              f"by up to {max(abs(d) for d in off) * 1e3:.0f} ms")
    return {"retries": retries, "retries_measured": n_measured, "unmeasured": unmeasured, "tolerance_s": tol,
            "late_budget_s": late_budget_s, "schedule": "native" if native else "planned",
            "late_from": "turn" if from_turn else "due",
            **{f"lateness_{k}": v for k, v in summary_stats(values).items()}, "early_retries": early,
            "late_retries": late, "late_no_delay": late_no_delay, "late_behind_older": behind,
            "turn_wait_max_s": max(waits, default=None) if from_turn else None,
            "on_time_share": 100.0 * (n_measured - early - late) / n_measured if n_measured else None,
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

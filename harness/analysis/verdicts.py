"""Verdicts: pure functions from checked cells to what a reader acts on.

Three contracts per cell, each pass or fail with a one-line reason:

- **timing**: no retry more than ``tolerance_s`` early, none later than its late budget, and (native schedule)
  every delay the library scheduled within its documented formula;
- **delivery**: every job accounted for (ok, failed for good, failed natively) and none lost, unrecovered,
  terminal after the deadline, duplicated, over- or under-retried; outage and poison accounting included;
- **failure log**: one complete record per failure, agreeing with the library's own failed store.

A row (one backend in one scenario, over its repetitions) has a status: ``partial`` (a cell interrupted, its
driver dead, or fewer repetitions than asked), ``fault did not fire``, ``history off`` (the overhead
baseline: no history, so no contract can be judged), ``fail`` (naming the contracts it failed) or ``pass``;
``control`` rows (the in-process reference) are shown but never ranked. Only a ``pass`` row that is not a
control can be *best*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.analysis.causes import causes_for, ms
from harness.analysis.metrics import median_of
from implementations.backends import is_control

CONTRACTS = ("timing", "delivery", "failure_log")
TITLES = {"timing": "timing", "delivery": "delivery", "failure_log": "failure log"}
PASS, FAIL, PARTIAL, NO_FAULT, HISTORY_OFF = "pass", "fail", "partial", "fault did not fire", "history off"


def _n(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _timing(t: Mapping[str, Any]) -> tuple[bool, str]:
    retries, measured = _n(t.get("retries")), _n(t.get("retries_measured"))
    problems = []
    if _n(t.get("early_retries")):
        problems.append(f"{t['early_retries']} of {measured} retries ran up to {ms(t.get('max_early_s'))} early")
    from_turn = t.get("late_from") == "turn"
    if _n(t.get("late_retries")):
        budget = t.get("late_budget_s")
        problems.append(f"{t['late_retries']} of {measured} retries ran up to {ms(t.get('max_late_s'))} late"
                        f"{' past their turn in the queue' if from_turn else ''} "
                        f"(budget {ms(budget) if budget is not None else '100 ms + 10 % of the delay'})")
    if _n(t.get("off_schedule")):
        problems.append(f"{t['off_schedule']} of {t.get('scheduled_delays')} scheduled delays off the documented "
                        f"formula (by up to {ms(abs(t.get('schedule_deviation_max') or 0))})")
    if problems:
        return False, "; ".join(problems)
    if not retries:
        return True, "no retries to time"
    if not measured:
        return True, f"none of {retries} retries could be timed (each job stopped before its next try)"
    share = t.get("on_time_share")
    if not isinstance(share, (int, float)):
        return True, f"{measured} retries on time"
    if from_turn and _n(t.get("late_behind_older")):
        # On time from its turn, not from its delay: say how long the queue made it wait.
        return True, (f"{share:.0f}% of {measured} retries on time from their turn in the queue; "
                      f"{t['late_behind_older']} waited behind older jobs, up to {ms(t.get('turn_wait_max_s'))} "
                      f"(p99 {ms(t.get('lateness_p99'))} after the delay)")
    return True, f"{share:.0f}% of {measured} retries on time (p99 {ms(t.get('lateness_p99'))} late)"


_DELIVERY = (("lost_jobs", "lost (in none of the library's stores)"),
             ("unrecovered_jobs", "unrecovered at the end (still in a store)"),
             ("late_jobs", "terminal only after the deadline"), ("duplicate_executions", "duplicate executions"),
             ("duplicate_terminals", "duplicate terminal events"), ("unknown_jobs", "ran but never enqueued"),
             ("over_retries", "retried more than allowed"), ("under_retries", "gave up with retries left"),
             ("non_retryable_retried", "non-retryable errors retried"), ("plan_mismatches", "off the seeded plan"),
             ("poison_unaccounted", "poison jobs unaccounted for"))


def _delivery(checks: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str]:
    d = {**(checks.get("reliability") or {}), **(checks.get("delivery") or {})}
    problems = [f"{d[k]} {text}" for k, text in _DELIVERY if _n(d.get(k))]
    stores = d.get("unrecovered_in") or {}
    if stores == {"stores not searched": _n(d.get("unrecovered_jobs"))}:
        problems = [f"{d['unrecovered_jobs']} not terminal at the end (the library's stores were not searched: "
                    "still held or lost cannot be told)" if p.endswith("store)") else p for p in problems]
    elif stores:
        problems = [p + (f" in {', '.join(sorted(stores))}" if p.endswith("store)") else "") for p in problems]
    if not _n((checks.get("throughput") or {}).get("jobs")) and not _n(d.get("jobs")):
        problems.append("no job was enqueued")
    outage = checks.get("outage") or {}
    if outage and not outage.get("valid", True):
        problems.append("; ".join(outage.get("examples") or ["the outage accounting failed"])[:160])
    if problems:
        return False, "; ".join(problems)
    ok, failed, native = _n(d.get("succeeded")), _n(d.get("failed")), _n(d.get("failed_natively"))
    extra = f", {native} failed natively" if native else ""
    return True, f"every job accounted for: {ok} ok, {failed} failed for good{extra}"


def _failure_log(f: Mapping[str, Any]) -> tuple[bool, str]:
    problems = []
    for key, text in (("missing_records", "failures without a record"), ("duplicate_records", "duplicate records"),
                      ("unexpected_records", "records for jobs that did not fail"),
                      ("native_only", "in the library's failed store but not in the failure log"),
                      ("log_only", "in the failure log but not in the library's failed store"),
                      ("callback_mismatch", "jobs whose on_retry/on_failure did not run once per retry/failure"),
                      ("record_attempts_mismatch", "records with the wrong attempt count")):
        if _n(f.get(key)):
            problems.append(f"{f[key]} {text}")
    completeness = f.get("failure_log_completeness")
    if isinstance(completeness, (int, float)) and completeness < 100:
        problems.append(f"records {completeness:.0f}% complete")
    if problems:
        return False, "; ".join(problems)
    records = _n(f.get("failure_records"))
    return True, (f"{records} complete record(s), one per failure" + (
        ", matching the library's failed store" if f.get("native_checked") else "") if records
        else "no failures, no records")


def cell_contracts(checks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{contract: {"pass": bool, "reason": one line}}`` for one cell's checks."""
    out = {}
    for name, (ok, reason) in (("timing", _timing(checks.get("timing") or {})), ("delivery", _delivery(checks)),
                               ("failure_log", _failure_log(checks.get("failure_log") or {}))):
        out[name] = {"pass": ok, "reason": reason}
    return out


def cell_verdict(cell: Mapping[str, Any]) -> dict[str, Any]:
    """One cell's status, its contracts and, for each failed contract, the catalogue's causes."""
    checks = cell.get("checks") or {}
    throughput = checks.get("throughput") or {}
    if throughput.get("history_off") and not cell.get("partial"):
        # The overhead baseline records nothing: every contract would read "no job was enqueued".
        done = _n(throughput.get("jobs_done"))
        off = {n: {"pass": False, "reason": "history off"} for n in CONTRACTS}
        return {"status": HISTORY_OFF, "failed": [], "faults_not_fired": [], "contracts": off, "timing": {},
                "reason": f"{done} jobs finished by the library's own count"}
    contracts = cell_contracts(checks)
    for name, c in contracts.items():
        if not c["pass"]:
            c["causes"] = causes_for(str(cell.get("backend", "")), checks, name)
    failed = [n for n in CONTRACTS if not contracts[n]["pass"]]
    not_fired = list((checks.get("faults") or {}).get("faults_not_fired") or ())
    # A cell that reached its deadline is judged (delivery says what was left); one cut short is not.
    partial = bool(cell.get("partial"))
    status = PARTIAL if partial else NO_FAULT if not_fired else FAIL if failed else PASS
    timing = checks.get("timing") or {}
    own = {k: timing.get(k) for k in ("schedule", "scheduled_delays", "scheduled_delay_min", "scheduled_delay_max",
                                      "whole_second_delays", "zero_delays", "timer_lateness_p99")}
    return {"status": status, "failed": failed, "faults_not_fired": not_fired, "contracts": contracts,
            "timing": own,
            "reason": str(cell.get("reason") or "")}


def row_verdict(backend: str, cells: Sequence[Mapping[str, Any]], *, asked: int) -> dict[str, Any]:
    """One backend in one scenario over its repetitions: the worst cell decides; fewer cells than ``asked``
    make the row partial. The row's reasons are those of its worst cell."""
    verdicts = [cell.get("verdict") or cell_verdict(cell) for cell in cells]
    rank = {PARTIAL: 0, HISTORY_OFF: 1, NO_FAULT: 2, FAIL: 3, PASS: 4}
    worst = min(verdicts, key=lambda v: (rank[v["status"]], -len(v["failed"])), default=None)
    failed = sorted({n for v in verdicts for n in v["failed"]}, key=CONTRACTS.index)
    status = worst["status"] if worst is not None else PARTIAL
    if len(cells) < asked:
        status = PARTIAL
    return {"backend": backend, "status": status, "control": is_control(backend), "failed": failed,
            "n": len(cells), "asked": asked, "best_eligible": status == PASS and not is_control(backend),
            "contracts": worst["contracts"] if worst else {}, "timing": worst.get("timing", {}) if worst else {},
            "faults_not_fired": sorted({f for v in verdicts for f in v["faults_not_fired"]}),
            "reasons": [v["reason"] for v in verdicts if v["status"] in (PARTIAL, HISTORY_OFF) and v["reason"]]}


def pacing(definition: Mapping[str, Any] | None) -> str | None:
    """What paces a scenario's throughput, when something other than the backend does: configured retry delays
    or a fixed arrival rate (None: jobs arrive at once and retries are immediate, so jobs/s is capacity)."""
    definition = definition or {}
    if _n(definition.get("enqueue_rate")):
        return "arrival rate"
    from implementations.core.policy import PolicyError, RetryPolicy

    try:
        policy = RetryPolicy.from_dict(definition.get("policy") or {})
    except (PolicyError, TypeError, ValueError):
        return None
    # Failures come from the plan or from the task body itself (the lesson's): only a plan of nothing but
    # non-retryable errors is known to retry nothing.
    faults = [f for f in definition.get("faults") or () if isinstance(f, Mapping)]
    never = bool(faults) and all(f.get("kind") == "non_retryable" for f in faults)
    delays = any(policy.base_delay(n) > 0 for n in range(max(1, policy.max_retries or 0)))
    return "retry delays" if delays and not never else None


def own_schedule(timing: Mapping[str, Any]) -> str:
    """What the library itself scheduled (native mode): the range of its delays and how it draws them."""
    n = _n(timing.get("scheduled_delays"))
    if timing.get("schedule") != "native" or not n:
        return ""
    lo, hi = timing.get("scheduled_delay_min"), timing.get("scheduled_delay_max")
    parts = [f"its own schedule gave {n} delays of {lo:.2f}–{hi:.2f} s" if isinstance(lo, (int, float))
             and isinstance(hi, (int, float)) else f"its own schedule gave {n} delays"]
    if _n(timing.get("whole_second_delays")) == n:
        parts.append("all in whole seconds")
    if _n(timing.get("zero_delays")):
        parts.append(f"{timing['zero_delays']} of 0 s")
    p99 = timing.get("timer_lateness_p99")
    if isinstance(p99, (int, float)):
        parts.append(f"started p99 {ms(p99)} after the time it set")
    return " (" + ", ".join(parts) + ")"


def row_sentence(row: Mapping[str, Any]) -> str:
    """One plain sentence for one backend in one scenario (native mode: with what the library scheduled)."""
    sentence = _row_sentence(row)
    own = own_schedule(row.get("timing") or {})
    return f"{sentence[:-1]}{own}." if own and sentence.endswith(".") else sentence


def _row_sentence(row: Mapping[str, Any]) -> str:
    b, contracts = row["backend"], row.get("contracts") or {}
    if row["status"] == PARTIAL:
        why = "; ".join(row.get("reasons") or []) or "interrupted"
        failing = f"; so far it fails {', '.join(TITLES[c] for c in row['failed'])}" if row["failed"] else ""
        return f"{b} is partial ({row['n']} of {row['asked']} runs; {why}): not judged{failing}."
    if row["status"] == HISTORY_OFF:
        done = "; ".join(dict.fromkeys(row.get("reasons") or []))  # the same count from every repetition: once
        return (f"{b} ran with the history off (the overhead baseline{': ' + done if done else ''}): with nothing "
                f"recorded, no contract is judged.")
    if row["status"] == NO_FAULT:
        return (f"{b}: the planned {', '.join(row['faults_not_fired'])} fault never fired, so this cell measured "
                f"nothing of what the scenario is about (raise --jobs).")
    if row["status"] == FAIL:
        parts: list[str] = []
        for name in row["failed"]:
            c = contracts.get(name) or {}
            parts.extend(c.get("causes") or [c.get("reason", "")])
        head = f"{b} (control)" if row["control"] else b
        return f"{head} fails {' and '.join(TITLES[c] for c in row['failed'])}: {'; '.join(p for p in parts if p)}."
    reasons = "; ".join(contracts[c]["reason"] for c in CONTRACTS if c in contracts)
    if row["control"]:
        return f"{b} is the control (in-process, no broker; never ranked): {reasons}."
    return f"{b} honours every contract: {reasons}."


def _median(metrics: Mapping[str, Any], name: str) -> float | None:
    value = median_of(metrics.get(name))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def best_of(rows: Mapping[str, Mapping[str, Any]], aggregates: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The backend that honours every contract with the tightest timing (|p99 lateness|), then the most
    throughput; None when no complete, passing, non-control row exists."""
    eligible = [b for b, r in rows.items() if r["best_eligible"]]
    if not eligible:
        return None

    def key(b: str) -> tuple[float, float]:
        m = aggregates.get(b) or {}
        return abs(_median(m, "lateness_p99") or 0.0), -(_median(m, "throughput_jobs_s") or 0.0)

    return min(eligible, key=key)


def best_sentence(best: str | None, rows: Mapping[str, Mapping[str, Any]],
                  aggregates: Mapping[str, Mapping[str, Any]], paced: str | None) -> str:
    ranked = [b for b, r in rows.items() if not r["control"]]
    if best is None:
        if rows and all(r["status"] == HISTORY_OFF for r in rows.values()):
            return "The history was off: nothing to rank (this side of the sweep is the overhead baseline)."
        return ("No backend honours every contract here." if ranked else "Only the control ran: nothing to rank.")
    m = aggregates.get(best) or {}
    p99, cpu, tput = (_median(m, k) for k in ("lateness_p99", "cpu_ms_per_attempt", "throughput_jobs_s"))
    timing = f"a median p99 lateness of {ms(p99)}" if p99 is not None else "no retries to time"
    cost = [f"{cpu:.2f} ms of worker CPU per attempt"] if cpu is not None else []
    if tput is not None:
        cost.append(f"{tput:.1f} jobs/s" + (f" (paced by the {paced}, not capacity)" if paced else ""))
    others = sum(r["best_eligible"] for r in rows.values()) - 1
    among = (f" (of {others + 1} that honour every contract)" if others
             else " (the only one that honours every contract)")
    return f"Best: {best}{among}, with {timing}" + (f", at {' and '.join(cost)}." if cost else ".")


def scenario_verdicts(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per scenario: each row's verdict and sentence, and the best backend with its sentence."""
    asked = _n(results.get("repeat")) or 1
    by: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for cell in results.get("cells") or ():
        by.setdefault(str(cell.get("scenario")), {}).setdefault(str(cell.get("backend")), []).append(cell)
    out = {}
    for scenario, backends in by.items():
        rows = {b: row_verdict(b, cells, asked=asked) for b, cells in backends.items()}
        aggregates = (results.get("aggregates") or {}).get(scenario) or {}
        paced = pacing((results.get("scenarios") or {}).get(scenario))
        best = best_of(rows, aggregates)
        modes = sorted({str(((c.get("checks") or {}).get("timing") or {}).get("schedule") or "planned")
                        for cells in backends.values() for c in cells})
        out[scenario] = {"schedule": "/".join(modes), "rows": rows,
                         "sentences": {b: row_sentence(r) for b, r in rows.items()}, "best": best,
                         "paced_by": paced, "best_sentence": best_sentence(best, rows, aggregates, paced)}
    return out

"""Verdicts a reader can act on, pinned on literal histories: each case of issue "Verdicts" gives the verdict
it must (late retries fail, controls and failing or partial rows are never best, loss is decided by the
library's stores and never by a deadline, faults must fire, partial is partial)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from test_checks import attempt, callback, end, enqueue, ev, header, native, ns, record, start, terminal

from harness.analysis.causes import CAUSES, catalogue
from harness.analysis.checks import check_retry_timing, summarize
from harness.analysis.compare import compare
from harness.analysis.results import analyze
from harness.analysis.verdicts import best_of, cell_verdict, pacing, row_sentence, row_verdict
from harness.report.junit import write_junit
from harness.report.tables import _best


def retried(job: str, *, delay: float, gap: float, at: float = 0.0) -> list[dict[str, Any]]:
    """``job`` fails at ``at`` + 0.1 asking for ``delay``; its second try starts ``gap`` seconds later."""
    t1 = at + 0.1
    return [enqueue(job, at, expected={"state": "success", "attempts": 2, "delays": [delay]}),
            start(job, 1, at), attempt(job, 1, at, t1, "retry", "ConnectionError", delay=delay),
            callback("on_retry", job, 1, t1), start(job, 2, t1 + gap), attempt(job, 2, t1 + gap, t1 + gap + 0.01,
                                                                                "success"),
            terminal(job, "success", 2, t1 + gap + 0.01)]


def crash_header(fraction: float) -> dict[str, Any]:
    return {**header(), "faults": [{"kind": "crash", "fraction": fraction}]}


def cell_of(events: list[dict[str, Any]], *, backend: str = "rq", cell_id: str = "r1") -> dict[str, Any]:
    """One cell as results.json holds it (what ``analysis`` makes of a history)."""
    summary = summarize(events)
    cell = {"cell_id": cell_id, "backend": backend, "scenario": "unit", "complete": summary["run"]["complete"],
            "partial": summary["run"]["partial"], "reason": summary["run"]["reason"],
            "summary": summary["metrics"], "checks": summary["checks"]}
    cell["verdict"] = cell_verdict(cell)
    return cell


# -- timing is two-sided ---------------------------------------------------------------------------------
def test_a_retry_2_4_s_late_on_a_0_1_s_delay_fails_timing_with_its_reason() -> None:
    # Given a retry asked for 0.1 s that ran 2.5 s after the failure (24x later than asked)
    cell = cell_of([header(), *retried("j1", delay=0.1, gap=2.5), end()])
    timing = cell["verdict"]["contracts"]["timing"]
    # Then timing fails, and says how late against which budget
    assert cell["verdict"]["status"] == "fail" and cell["verdict"]["failed"] == ["timing"]
    assert timing["pass"] is False and "1 of 1 retries ran up to 2.4 s late (budget" in timing["reason"]
    assert cell["summary"]["valid"] is False and cell["summary"]["late_retries"] == 1


def test_the_default_late_budget_scales_with_the_delay_and_the_scenario_can_set_its_own() -> None:
    # 0.3 s late on a 5 s delay is within 0.1 s + 10 % (0.6 s); on a 0.1 s delay it is not
    assert check_retry_timing([header(), *retried("j1", delay=5.0, gap=5.3), end()])["late_retries"] == 0
    assert check_retry_timing([header(), *retried("j1", delay=0.1, gap=0.4), end()])["late_retries"] == 1
    # A late_budget_s in the run header (scenario key or -o late_budget_s) replaces the default
    strict = check_retry_timing([header(late_budget_s=0.05), *retried("j1", delay=5.0, gap=5.3), end()])
    assert (strict["late_retries"], strict["late_budget_s"]) == (1, 0.05)


def test_a_retry_21_ms_early_fails_and_on_time_retries_give_the_share_on_time() -> None:
    early = cell_of([header(), *retried("j1", delay=1.0, gap=0.979), *retried("j2", delay=1.0, gap=1.01), end()])
    assert early["verdict"]["contracts"]["timing"]["reason"] == "1 of 2 retries ran up to 21 ms early"
    assert early["summary"]["on_time_share"] == 50.0
    # And the catalogue names RQ's cause for early retries
    assert early["verdict"]["contracts"]["timing"]["causes"][0].startswith("RQ schedules retries in whole seconds")


def test_in_native_mode_lateness_is_timer_lateness_against_what_the_library_scheduled() -> None:
    # Given Celery's own full jitter drew 0 s for the retry, which then ran 50 ms after that due time
    due = ns(0.1)
    events = [header(schedule="native"), *retried("j1", delay=1.0, gap=0.05),
              ev("schedule", job_id="j1", attempt=1, due_ns=due, delay_s=0.0, source="celery:eta", schedule="native")]
    events.append(end())
    # header's policy: default_retry_delay 1 s, no jitter: 0 s is off the documented formula
    t = check_retry_timing(events)
    assert t["schedule"] == "native" and t["zero_delays"] == 1 and t["off_schedule"] == 1
    assert abs(t["lateness_median"] - 0.05) < 1e-6 and t["schedule_deviation_max"] == -1.0
    assert t["valid"] is False


# -- marks that cannot mislead -----------------------------------------------------------------------------
def _rows(**status: str) -> dict[str, dict[str, Any]]:
    out = {}
    for backend, st in status.items():
        cell = {"backend": backend, "complete": st != "partial", "partial": st == "partial", "checks": {},
                "verdict": {"status": st, "failed": ["timing"] if st == "fail" else [], "faults_not_fired": [],
                            "contracts": {}, "reason": ""}}
        out[backend] = row_verdict(backend, [cell], asked=1)
    return out


def test_the_control_is_never_best_nor_a_failing_or_partial_row() -> None:
    # Given the reference control has the tightest timing, rq ran early, arq was cut short, celery passed
    rows = _rows(reference="pass", rq="fail", arq="partial", celery="pass")
    aggregates = {"reference": {"lateness_p99": {"median": 0.001}, "throughput_jobs_s": {"median": 900}},
                  "rq": {"lateness_p99": {"median": -0.0001}, "throughput_jobs_s": {"median": 500}},
                  "arq": {"lateness_p99": {"median": 0.0}, "throughput_jobs_s": {"median": 800}},
                  "celery": {"lateness_p99": {"median": 0.2}, "throughput_jobs_s": {"median": 40}}}
    assert rows["reference"]["control"] and not rows["reference"]["best_eligible"]
    assert best_of(rows, aggregates) == "celery"
    # And the tables' per-metric marks only consider the same eligible rows
    eligible = {b for b, r in rows.items() if r["best_eligible"]}
    assert _best({"reference": 900, "rq": 500, "arq": 800, "celery": 40}, "throughput_jobs_s", eligible) is None
    assert _best({"rq": 500, "celery": 40, "x": 30}, "throughput_jobs_s", {"celery", "x"}) == "celery"


def test_lateness_is_ranked_by_its_absolute_size() -> None:
    assert _best({"early": -0.050, "late": 0.010}, "lateness_p99") == "late"


def test_throughput_paced_by_retry_delays_or_arrivals_is_not_capacity() -> None:
    policy = {"autoretry_for": ["ConnectionError"], "max_retries": 3, "retry_backoff": 1}
    assert pacing({"policy": policy, "faults": [{"kind": "fail_first", "k": 1}]}) == "retry delays"
    assert pacing({"policy": {**policy, "retry_backoff": False, "intervals": [0]},
                   "faults": [{"kind": "probability", "p": 0.2}]}) is None
    assert pacing({"policy": policy, "enqueue_rate": 7}) == "arrival rate"


# -- loss accounting ----------------------------------------------------------------------------------------
def crashed(job: str) -> list[dict[str, Any]]:
    return [enqueue(job, 0.0, expected={"state": "success", "attempts": 1, "delays": []}), start(job, 1, 0.1)]


def test_an_arq_crash_is_unrecovered_in_its_in_progress_key_not_lost() -> None:
    hint = "when that key expires (job_timeout + 10 s after the try began): within 290 s of the end of the run"
    cell = cell_of([crash_header(1), *crashed("j1"),
                    ev("whereabouts", jobs={"j1": ["arq queue", "arq in-progress key"]},
                       recovery={"arq in-progress key": hint}), end(False, "deadline: 1 job(s) not terminal")],
                   backend="arq")
    assert cell["summary"]["lost_jobs"] == 0 and cell["summary"]["unrecovered_jobs"] == 1
    delivery = cell["verdict"]["contracts"]["delivery"]
    assert "1 unrecovered at the end (still in a store) in arq in-progress key, arq queue" in delivery["reason"]
    assert any(c.startswith("ARQ runs a crashed job again only when its in-progress key expires") and hint in c
               for c in delivery["causes"])


def test_celery_worker_lost_is_failed_natively_and_breaks_the_failure_log_not_delivery() -> None:
    events = [crash_header(1), *crashed("j1"), native("j1"),
              ev("whereabouts", jobs={"j1": []}), end()]
    cell = cell_of(events, backend="celery")
    assert (cell["summary"]["lost_jobs"], cell["summary"]["failed_natively"]) == (0, 1)
    assert cell["verdict"]["failed"] == ["failure_log"]
    assert "WorkerLostError" in cell["verdict"]["contracts"]["failure_log"]["causes"][0]


# -- faults must fire, partial is partial ---------------------------------------------------------------------
def test_a_crash_preset_whose_crash_never_fired_is_not_valid() -> None:
    events = [crash_header(0.2), *retried("j1", delay=1.0, gap=1.01), end()]
    cell = cell_of(events)
    assert cell["checks"]["faults"]["faults_not_fired"] == ["crash"]
    assert cell["verdict"]["status"] == "fault did not fire" and cell["summary"]["valid"] is False


def test_a_history_with_no_attempts_is_not_valid() -> None:
    cell = cell_of([header(), end()])
    assert cell["summary"]["valid"] is False
    assert cell["verdict"]["contracts"]["delivery"]["reason"] == "no job was enqueued"


def test_the_overhead_baseline_with_the_history_off_is_not_judged_never_failed_nor_best() -> None:
    # Given the history-off side of the overhead sweep: no events but the end, which says how many jobs the
    # library itself counted finished
    off = ev("end", ts_ns=ns(100), complete=True, reason="complete", record_history=False, jobs_done=1000,
             wall_s=1.0)
    cell = cell_of([header(), off])
    # Then no contract is judged (an empty history would read "no job was enqueued"), and the row says why
    assert cell["verdict"]["status"] == "history off" and cell["verdict"]["failed"] == []
    row = row_verdict("saq", [cell, cell], asked=2)
    assert row["status"] == "history off" and not row["best_eligible"]
    assert row_sentence(row) == ("saq ran with the history off (the overhead baseline: 1000 jobs finished by the "
                                 "library's own count): with nothing recorded, no contract is judged.")
    # And a history-on cell with the same emptiness still fails delivery
    assert cell_of([header(), end()])["verdict"]["status"] == "fail"


def test_an_interrupted_cell_is_partial_never_valid_nor_best() -> None:
    # Given Ctrl-C: the history stops without an end event, after a perfect first job
    cell = cell_of([header(), *retried("j1", delay=1.0, gap=1.01)])
    assert cell["summary"]["valid"] is False and cell["verdict"]["status"] == "partial"
    row = row_verdict("rq", [cell], asked=1)
    assert row["status"] == "partial" and not row["best_eligible"]


def test_fewer_repetitions_than_asked_make_the_row_partial_with_the_real_n() -> None:
    good = cell_of([header(), *retried("j1", delay=1.0, gap=1.01), end()])
    row = row_verdict("rq", [good, good], asked=3)
    assert (row["status"], row["n"], row["asked"], row["best_eligible"]) == ("partial", 2, 3, False)


# -- the verdict at the top, JUnit and compare ---------------------------------------------------------------
def test_results_carry_a_sentence_per_backend_and_the_best_and_junit_fails_on_a_failing_row(tmp_path: Path) -> None:
    def as_cell(cell_id: str, backend: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**e, "cell_id": cell_id, "backend": backend} for e in events]

    ok = [header(), *retried("j1", delay=1.0, gap=1.01), end()]
    late = [header(), *retried("j1", delay=0.1, gap=2.5), end()]
    events = as_cell("c1", "reference", ok) + as_cell("c2", "rq", late) + as_cell("c3", "arq", ok)
    meta = {"type": "meta", "run_id": "run", "environment": {}, "scenarios": {"unit": {}}, "repeat": 1, "cells": 3}
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [meta, *events]))
    results = analyze(tmp_path)
    verdict = results["verdicts"]["unit"]
    assert verdict["best"] == "arq" and verdict["best_sentence"].startswith("Best: arq (the only one")
    assert verdict["sentences"]["reference"].startswith("reference is the control")
    assert verdict["sentences"]["rq"].startswith("rq fails timing: RQ's scheduler moves due jobs")
    assert write_junit(results, tmp_path / "junit.xml") >= 2  # rq's timing check and rq's verdict
    failing = {c.get("classname") for c in ET.parse(tmp_path / "junit.xml").iter("testcase") if c.find("failure")
               is not None}
    assert failing == {"retrybench.unit.rq"}


def test_compare_names_a_backend_or_scenario_that_new_lacks() -> None:
    base_cell = {"scenario": "s", "backend": "rq", "summary": {"lateness_p99": 0.01}}
    base = {"scenarios": {"s": {}, "t": {}}, "cells": [base_cell, {**base_cell, "backend": "arq"}]}
    new = {"scenarios": {"s": {}}, "cells": [base_cell]}
    _, failures = compare(base, new)
    assert "NEW lacks scenario 't'" in failures and "NEW lacks backend 'arq' in scenario 's'" in failures


def test_every_cause_of_the_catalogue_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "verdicts.md").read_text()
    assert len(catalogue()) == len(CAUSES)
    for cause in CAUSES:
        assert f"`{cause.key}`" in docs


def test_a_record_for_every_failure_passes_the_failure_log() -> None:
    events = [header(), enqueue("j1", 0.0, expected={"state": "failure", "attempts": 1, "delays": []}),
              start("j1", 1, 0.1), attempt("j1", 1, 0.1, 0.2, "failure", "ValueError"),
              callback("on_failure", "j1", 1, 0.2), terminal("j1", "failure", 1, 0.2), record("j1", 1, 0.2),
              native("j1"), end()]
    cell = cell_of(events)
    assert cell["verdict"]["contracts"]["failure_log"] == {
        "pass": True, "reason": "1 complete record(s), one per failure, matching the library's failed store"}


def test_a_native_row_says_what_the_library_itself_scheduled() -> None:
    # Given Celery's own full jitter drew 0 s and 2 s (whole seconds) for two retries it ran on time
    events = [header(schedule="native"), *retried("j1", delay=1.0, gap=0.0), *retried("j2", delay=1.0, gap=2.0)]
    events += [ev("schedule", job_id="j1", attempt=1, due_ns=ns(0.1), delay_s=0.0, source="celery:no_eta"),
               ev("schedule", job_id="j2", attempt=1, due_ns=ns(2.1), delay_s=2.0, source="celery:eta"), end()]
    row = row_verdict("celery", [cell_of(events, backend="celery")], asked=1)
    sentence = row_sentence(row)
    assert "its own schedule gave 2 delays of 0.00–2.00 s, all in whole seconds, 1 of 0 s" in sentence


def test_junit_skips_the_history_off_baseline_instead_of_failing_it(tmp_path: Path) -> None:
    # Given a run whose only cell is the overhead baseline: no events but the end, with the library's own count
    off = ev("end", ts_ns=ns(100), complete=True, reason="complete", record_history=False, jobs_done=1000, wall_s=1.0)
    events = [{**e, "cell_id": "c1", "backend": "saq"} for e in (header(), off)]
    meta = {"type": "meta", "run_id": "run", "environment": {}, "scenarios": {"unit": {}}, "repeat": 1, "cells": 1}
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [meta, *events]))
    results = analyze(tmp_path)
    # Then nothing is ranked, the verdict says why, and JUnit reports the row as skipped, not failed
    assert results["verdicts"]["unit"]["best"] is None
    assert results["verdicts"]["unit"]["best_sentence"].startswith("The history was off: nothing to rank")
    assert write_junit(results, tmp_path / "junit.xml") == 0
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("skipped") == "1" and suite.find("testcase/skipped") is not None

"""``analyze`` streams a history cell by cell; the index keeps slim entries; ``report`` reads the history once."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

import pytest
from test_checks import attempt, end, ev, failed_for_good, header, one_retry_then_success, record, start

import harness.analysis.history as history
import harness.analysis.results as analysis
from harness.analysis.history import iter_history, read_history
from harness.analysis.results import analyze, plot_inputs
from harness.analysis.runindex import TRACEBACK_KEPT, Attempt, index_run


def write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.mkdir(exist_ok=True)
    meta = {"type": "meta", "run_id": "run", "environment": {}, "scenarios": {}, "repeat": 1, "cells": 3}
    (path / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [meta, *events]))
    return path


def cell(cell_id: str, backend: str) -> list[dict[str, Any]]:
    """A clean one-job cell under ``cell_id`` (the builders of test_checks write run "r1")."""
    return [{**e, "cell_id": cell_id, "backend": backend,
             **({"job_id": f"{cell_id}-{e['job_id']}"} if "job_id" in e else {})}
            for e in one_retry_then_success(second_start=2.010)]


def test_each_cell_is_checked_and_released_before_the_next_cell_is_read(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a history of three cells, one after the other (how the runner writes them)
    cells = [cell(f"c{i}", backend) for i, backend in enumerate(("reference", "rq", "arq"))]
    run_dir = write(tmp_path / "run", [e for c in cells for e in c])
    indexes: list[weakref.ref[Any]] = []
    original = analysis.RunBuilder

    class Tracked(original):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            indexes.append(weakref.ref(self.idx))

    alive_when_cell_starts: list[int] = []

    def stream(path: Any, **kw: Any) -> Any:
        for event in iter_history(path, **kw):
            if event.get("type") == "run":  # the first event of each cell
                alive_when_cell_starts.append(sum(ref() is not None for ref in indexes))
            yield event

    monkeypatch.setattr(analysis, "RunBuilder", Tracked)
    monkeypatch.setattr(analysis, "iter_history", stream)
    # When it is analysed
    results = analyze(run_dir)
    # Then at most the previous cell's index is still alive when a cell starts: the history never is whole
    assert alive_when_cell_starts == [0, 1, 1]
    assert [c["backend"] for c in results["cells"]] == ["reference", "rq", "arq"]
    assert all(c["summary"]["valid"] for c in results["cells"])


def test_interleaved_cells_give_the_same_results_as_contiguous_ones(tmp_path: Path) -> None:
    a, b = cell("ca", "reference"), cell("cb", "rq")
    contiguous = analyze(write(tmp_path / "contiguous", a + b))
    # Given the same events, but the second cell's written in the middle of the first's
    mixed = analyze(write(tmp_path / "mixed", a[:4] + b[:6] + a[4:] + b[6:]))
    assert mixed["cells"] == contiguous["cells"] and mixed["aggregates"] == contiguous["aggregates"]
    assert [c["cell_id"] for c in mixed["cells"]] == ["ca", "cb"]
    assert mixed["cells"][0]["summary"]["retries_measured"] == 1


def test_report_plot_inputs_come_from_the_analysis_pass_without_reading_the_history_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = write(tmp_path / "run", cell("c0", "reference"))
    analyze(run_dir)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the history was read a second time")

    monkeypatch.setattr(analysis, "iter_history", fail)
    (plot,) = plot_inputs(run_dir)
    assert plot.scenario == "unit" and plot.backend == "reference"
    assert plot.lateness == pytest.approx([0.010], abs=1e-9)
    assert list(plot.sample.jobs) == ["c0-j1"]


def test_plot_inputs_of_a_history_that_was_not_just_analysed_are_computed(tmp_path: Path) -> None:
    run_dir = write(tmp_path / "run", cell("c0", "reference"))
    analyze(write(tmp_path / "other", cell("c1", "rq")))
    assert [p.backend for p in plot_inputs(run_dir)] == ["reference"]


def test_a_history_of_unreadable_lines_only_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text("not json\n")
    with pytest.raises(history.HistoryError, match="no readable events"):
        analyze(tmp_path)


def test_attempts_and_terminals_are_slim_but_read_like_the_events() -> None:
    idx = index_run(one_retry_then_success(second_start=2.010))
    jv = idx.jobs["j1"]
    first = jv.ends[1][0]
    assert isinstance(first, Attempt) and not hasattr(first, "exc_message")  # messages stay in the history
    assert first.get("outcome") == "retry" and first["expected_delay"] == 1.0 and first.outcome == "retry"
    assert first.get("exc_message") is None and first.get("fault", "none") == "none" and "fault" not in first
    assert jv.terminals[0].get("state") == "success" and jv.state == "success"
    assert jv.starts == {1: [attempt("j1", 1, 0.5, 1.0, "retry")["started_ns"]],
                         2: [start("j1", 2, 2.010)["started_ns"]]}


def test_a_long_traceback_is_cut_in_the_index_but_not_in_the_callers_event() -> None:
    long = "Traceback (most recent call last):\n" + "  frame\n" * 200 + "ConnectionError: down\n"
    rec = record("j1", 2, 1.3, traceback=long)
    idx = index_run(failed_for_good(rec))
    kept = idx.jobs["j1"].records[0]["traceback"]
    assert len(kept) == TRACEBACK_KEPT and kept.endswith("ConnectionError: down\n")
    assert rec["traceback"] == long


def test_lines_orjson_refuses_but_json_reads_are_events_not_problems(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(header()) + "\n" + '{"type": "x", "v": NaN, "big": 123456789012345678901234567890}\n'
                    + json.dumps(end()) + "\n")
    read = read_history(path)
    assert not read.problems and read.events[1]["big"] == 123456789012345678901234567890


def test_a_cell_without_header_takes_its_name_from_its_first_event(tmp_path: Path) -> None:
    events = [ev("enqueue", cell_id="c9", backend="celery", job_id="x", ts_ns=1), end()]
    results = analyze(write(tmp_path / "run", [{**e, "cell_id": "c9"} for e in events]))
    (only,) = results["cells"]
    assert (only["backend"], only["scenario"], only["complete"]) == ("celery", "unit", True)

"""Reading history files: corrupt, torn, missing, gzipped, and several runs in one file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_checks import enqueue, ev, header, one_retry_then_success, terminal

from harness.analysis.history import HistoryError, group_cells, iter_history, read_history


# -- reading history files -------------------------------------------------------------------------------
def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_a_corrupt_line_in_the_middle_is_reported_and_every_other_line_is_read(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "history.jsonl", [
        json.dumps(header()) + "\n",
        json.dumps(enqueue("j1", 0.0)) + "\n",
        '{"type": "attempt", "job_id": "j1", "att\n',  # line 3: torn
        json.dumps(terminal("j1", "success", 1, 0.2)) + "\n",
    ])
    history = read_history(path)
    assert [e["type"] for e in history.events] == ["run", "enqueue", "terminal"]
    assert len(history.problems) == 1
    assert history.problems[0].startswith(f"{path}:3: not valid JSON (")
    with pytest.raises(HistoryError, match=":3: not valid JSON"):
        read_history(path, strict=True)


def test_a_torn_last_line_says_the_write_was_cut_short(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "history.jsonl", [json.dumps(header()) + "\n", '{"type": "end", "ts'])
    history = read_history(path)
    assert len(history.events) == 1 and "cut short" in history.problems[0]


def test_missing_and_empty_history_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no such history file"):
        read_history(tmp_path / "nope.jsonl")
    with pytest.raises(HistoryError, match="empty"):
        iter_history(write_lines(tmp_path / "empty.jsonl", []))


def test_runs_are_grouped_by_run_id_in_order_of_appearance(tmp_path: Path) -> None:
    events = [header(), ev("run", cell_id="r2"), enqueue("a", 0.0), ev("enqueue", cell_id="r2", job_id="b")]
    path = write_lines(tmp_path / "history.jsonl", [json.dumps(e) + "\n" for e in events])
    runs = group_cells(iter_history(path))
    assert list(runs) == ["r1", "r2"]
    assert [e["type"] for e in runs["r1"]] == ["run", "enqueue"]
    assert runs["r2"][1]["job_id"] == "b"


def test_a_gzipped_history_reads_like_the_plain_one_and_a_corrupt_one_is_a_clear_error(tmp_path: Path) -> None:
    import gzip

    lines = [json.dumps(e) for e in one_retry_then_success(second_start=2.010)]
    plain = tmp_path / "history.jsonl"
    plain.write_text("\n".join(lines) + "\n")
    packed = tmp_path / "history.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_history(packed).events == read_history(plain).events
    packed.write_bytes(gzip.compress(plain.read_bytes())[:-30])
    with pytest.raises(HistoryError, match="cannot read history"):
        read_history(packed)


def test_a_version_1_history_reads_its_cells_run_id_as_cell_id_and_keeps_the_runs(tmp_path: Path) -> None:
    # Given a history written under event schema 1, where a cell's events named it run_id
    meta = {"type": "meta", "run_id": "20261201-0001", "schema_version": 1, "environment": {}, "scenarios": {},
            "repeat": 1, "cells": 1}
    new = one_retry_then_success(2.0)
    old = [{("run_id" if k == "cell_id" else k): v for k, v in e.items()} for e in new]
    path = write_lines(tmp_path / "history.jsonl", [json.dumps(e) + "\n" for e in [meta, *old]])
    # When it is read
    events = list(iter_history(path))
    # Then every cell event says cell_id, and the meta line still names the whole run
    assert events[0]["run_id"] == "20261201-0001" and "cell_id" not in events[0]
    assert events[1:] == new and all("run_id" not in e for e in events[1:])
    assert list(group_cells(events[1:])) == ["r1"]

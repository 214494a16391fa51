"""Smoke tests of ``benchmarks/instructions.py`` (the counts themselves need valgrind and minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.instructions import ROOT, cell_spec, wrapper


def test_the_wrapper_path_records_every_job_with_the_history_on_and_nothing_off() -> None:
    # Given the overhead preset's fault plan, when 200 jobs go through the shared wrapper in one thread
    on, off, window = wrapper(True, 200), wrapper(False, 200), wrapper(True, 200, window=True)
    # Then the driver's tally saw every job end, with a fifth or so of the attempts retried, whether the
    # history was written as it came or held (a reference cell's window)
    assert on.terminal == window.terminal == 200 and 200 < on.attempts < 300 and window.attempts == on.attempts
    # and with the history off it read no events at all
    assert off.attempts == 0 and not off.terminal_ids


def test_the_cell_spec_runs_a_reference_cell_to_completion_without_redis(tmp_path: Path) -> None:
    spec = cell_spec(str(tmp_path), 50)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "harness.driver", spec], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["finished"] and last["reason"] == "complete" and last["done"] == 50
    ends = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()
            if '"type":"end"' in line]
    assert ends and ends[-1]["record_history"] is False

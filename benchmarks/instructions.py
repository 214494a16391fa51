"""What recording the history costs a job of the ``overhead`` preset, in instructions counted by callgrind.

Time on a shared 2-core machine moves by more than recording costs the in-process reference backend (the
same code gave 3.3% one day and 10.9% another). Instructions do not: ``valgrind --tool=callgrind`` counts
the same for the same code and inputs whatever else the machine runs. Three counts, each as the difference
between a run of ``2 × jobs`` and of ``jobs`` (so start-up cancels out):

* **recording**: the shared wrapper's path in one thread, as the reference backend's workers and driver
  run it — enqueue, every attempt through ``Runtime.run_attempt`` with the preset's fault plan (a fifth
  fail and are retried at once), and every 8 jobs the driver's drain, ``history.jsonl`` write and tally —
  with the history on minus the same with it off; and of it, **in the window**: the same with the history
  held and never written, as a reference cell's driver holds it until its measured window has closed
  (Page faults are the kernel's and are not counted: a fresh allocation per encoded line once cost more
  than the encoding, and no instruction count showed it; docs/performance.md);
* **backend**: a whole reference cell of the preset (``harness.driver``, its 8 worker threads, 1 ms of
  work a job) with the history off: what one job costs the process whose throughput recording comes off.

    python -m benchmarks.instructions [--jobs 2000] [--json FILE]

Needs valgrind (``apt-get install valgrind``); three minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.cell import History, Tally

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "instr0000000000"  # as long as a real cell id: the same bytes go into every event
_KEPT: list[History] = []  # window mode's held history, alive until the child exits without a teardown
LOOK_EVERY = 8  # jobs between two driver reads; a real reference cell reads ~8 jobs' events at a time


def wrapper(record: bool, jobs: int, *, window: bool = False) -> Tally:
    """The child: ``jobs`` jobs through the shared wrapper and the driver's reading of their events.

    ``window``: the history is held, as a reference cell's driver holds it, and never written, so that the
    count is what recording costs inside the measured window (the held write comes after it).
    Returns the driver's tally (with the history on, every job terminal in it)."""
    from harness.scenarios import PRESETS
    from implementations.app import RetryApp

    scenario = PRESETS["overhead"]
    app = RetryApp("reference", run_id=RUN_ID, scenario="overhead[record_history=True]",
                   faults=[dict(f) for f in scenario.faults], seed=scenario.seed,
                   options={"record_history": record})
    task = app.task(name="work", policy=scenario.retry_policy())(lambda i: i)
    runtime, sink = app.runtime, app.runtime.sink
    tally = Tally(jobs=jobs)
    expected = {"state": "success", "attempts": 1, "delays": []}
    ids = [f"{RUN_ID}-{i:06d}" for i in range(jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        history = History(os.path.join(tmp, "history.jsonl"), hold=10 * jobs if window else 0)

        def look() -> None:
            if record:
                events = sink.drain_raw()  # as a reference cell's driver reads them
                history.write(events)
                tally.count(events)
            else:
                tally.terminal = app.backend.native_terminal_count() or 0

        for i, job_id in enumerate(ids):
            task.apply_async((i,), {}, task_id=job_id, meta={"expected": expected})
        app.backend._heap.clear()  # the attempts below run here, in this one thread, not in worker threads
        for i, job_id in enumerate(ids):
            attempt = 1
            while True:
                outcome = runtime.run_attempt(task, job_id, attempt, (i,), {}, native={"thread": True})
                if outcome.ok or not outcome.retry:
                    break
                runtime.fire_retry(task, job_id, outcome.exc, outcome.attempt, (i,), {})
                attempt += 1
            if i % LOOK_EVERY == LOOK_EVERY - 1:
                look()
        look()
        if window:  # held: never written nor freed, as a cell's window never pays for either
            _KEPT.append(history)
        else:
            history.close()
    return tally


def cell_spec(tmp: str, jobs: int) -> str:
    """A spec file for ``harness.driver``: one reference cell of the preset, history off, no Redis."""
    from harness.scenarios import PRESETS, with_overrides

    scenario = with_overrides(PRESETS["overhead"], jobs=jobs, sweep={},
                              options={**PRESETS["overhead"].options, "record_history": False})
    spec = {"scenario": scenario.to_dict(), "backend": "reference", "label": "reference", "run_id": RUN_ID,
            "redis_url": None, "history_path": f"{tmp}/history.jsonl", "failure_log": f"{tmp}/failed.log",
            "events_file": f"{tmp}/events.jsonl", "log_dir": tmp, "options": {}}
    path = f"{tmp}/spec.json"
    Path(path).write_text(json.dumps(spec))
    return path


def count(argv: list[str]) -> int:
    """Instructions of one Python process under callgrind (its own output file is not kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        # A cell's spec file is written here, in the run's own temporary directory: "{spec:N}" stands for it.
        argv = [cell_spec(tmp, int(a[6:-1])) if a.startswith("{spec:") else a for a in argv]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
                               sys.executable, *argv], env=env, cwd=ROOT, capture_output=True, text=True)
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or not found:
            raise SystemExit(f"callgrind run failed ({' '.join(argv)}):\n{proc.stderr[-2000:]}")
        return int(found.group(1))


def main() -> None:
    """``python -m benchmarks.instructions``: print (and with ``--json`` write) the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--json", help="also write the counts here")
    parser.add_argument("--child", choices=["on", "window", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tally = wrapper(args.child != "off", args.jobs, window=args.child == "window")
        if args.child != "off" and tally.terminal != args.jobs:  # recording broke: its count would mean nothing
            raise SystemExit(f"only {tally.terminal} of {args.jobs} jobs were recorded as terminal")
        # No teardown, in every mode alike: freeing what a run left (the held events above all) happens after
        # a real cell's window, and would be counted here
        sys.stdout.flush()
        os._exit(0)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    n = args.jobs
    runs = {f"{mode}:{k}": ["-m", "benchmarks.instructions", "--child", mode, "--jobs", str(k * n)]
            for mode in ("on", "window", "off") for k in (1, 2)}
    runs |= {f"cell:{k}": ["-m", "harness.driver", f"{{spec:{k * n}}}"] for k in (1, 2)}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        got = dict(zip(runs, pool.map(count, runs.values()), strict=True))
    per_job = {key: (got[f"{key}:2"] - got[f"{key}:1"]) / n for key in ("on", "window", "off", "cell")}
    out: dict[str, Any] = {
        "jobs": n, "counts": got,
        "recording_per_job": round(per_job["on"] - per_job["off"]),
        "recording_in_window_per_job": round(per_job["window"] - per_job["off"]),
        "wrapper_off_per_job": round(per_job["off"]),
        "backend_cell_per_job": round(per_job["cell"]),
    }
    out["recording_share"] = round(out["recording_per_job"] / out["backend_cell_per_job"], 4)
    print(f"recording: {out['recording_per_job']:,} instructions a job (the wrapper with the history off: "
          f"{out['wrapper_off_per_job']:,})")
    print(f"of which inside a reference cell's measured window (its history held, written after it): "
          f"{out['recording_in_window_per_job']:,}")
    print(f"a reference cell of the overhead preset, history off: {out['backend_cell_per_job']:,} a job")
    print(f"recording adds {100 * out['recording_share']:.1f}% to what a job costs the reference process")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

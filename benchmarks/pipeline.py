"""``retrybench report DIR`` in a child process, timed and with its peak memory.

A child of its own, because peak RSS is per process: measured in the test process it would include
pytest, the fixtures' events and whatever ran before. The child reports its own peak (what
``/usr/bin/time -v`` calls "Maximum resident set size"), so the figure is the report's alone.

    python -m benchmarks.pipeline DIR    # prints {"wall_s": ..., "peak_rss_mb": ..., "exit": ...}
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_report(run_dir: Path) -> dict[str, Any]:
    """Run the whole report (metrics, results.json, tables, plots, report.md/html) in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "measure.json"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "benchmarks.pipeline", str(run_dir), str(out)], cwd=ROOT,
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.perf_counter() - started
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"report failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        measured: dict[str, Any] = json.loads(out.read_text())
    return {**measured, "wall_s": wall}


def _child(run_dir: str, out: str) -> None:
    from harness.cli import main

    code: Any = 0
    with contextlib.redirect_stdout(io.StringIO()):  # the tables: not what is measured
        try:
            main(["report", run_dir])
        except SystemExit as exc:
            code = exc.code
    Path(out).write_text(json.dumps({"peak_rss_mb": round(_peak_rss_mb(), 1), "exit": code}))
    sys.exit(code if isinstance(code, int) else 1)


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    Linux's VmHWM belongs to the address space exec made. ``ru_maxrss`` (self or children) would carry
    over the peak of the process that forked this one: pytest holding a million events read 2.6 GB.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    # Elsewhere only ru_maxrss is there (bytes on macOS, KiB on other systems); it may include the parent's.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


if __name__ == "__main__":
    if len(sys.argv) == 2:
        print(json.dumps(run_report(Path(sys.argv[1]))))
    else:
        _child(sys.argv[1], sys.argv[2])

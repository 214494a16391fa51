"""`retrybench matrix` for real: two pinned releases of one library, each in its own environment, real workers on
a real Redis, and the "Between versions" section in results.json, report.md and report.html."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analysis.between import regressions

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent
RELEASES = ("0.27.0", "0.28.0")  # arq: small environments, and both run the harness's arq backend


def retrybench(*args: str, redis_url: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    # The URL (with its password) goes through the environment, never the command line.
    env = {**os.environ, "RETRYBENCH_REDIS_URL": redis_url}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, check=False)


def test_a_matrix_of_two_arq_releases_reports_what_changed_between_them(tmp_path: Path, redis_url: str) -> None:
    """Given two pinned arq releases and two repetitions of a small scenario, when the matrix runs with
    --fail-on-regression, then each release ran in its own environment, the section tested every metric
    between them, the exit code is 1 exactly when it found a regression, and `report` renders it again."""
    done = retrybench("matrix", "-b", "arq", "--versions", ",".join(reversed(RELEASES)), "-s", "seed-lesson",
                      "--repetitions", "2", "--fail-on-regression", "--out", str(tmp_path), redis_url=redis_url)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    run_dir = next(p.parent for p in tmp_path.glob("*/results.json"))
    results = json.loads((run_dir / "results.json").read_text())
    backends = results["environment"]["backends"]
    assert [backends[f"arq=={v}"]["arq"] for v in RELEASES] == list(RELEASES)
    assert all(c["complete"] for c in results["cells"]) and len(results["cells"]) == 4
    assert set(results["verdicts"]["seed-lesson"]["rows"]) == {f"arq=={v}" for v in RELEASES}  # verdicts apply

    section = results["between_versions"]
    (group,) = section["groups"]
    assert [(r["version"], r["n"]) for r in group["releases"]] == [(v, 2) for v in RELEASES]  # oldest first
    (pair,) = group["pairs"]
    # Timing, CPU and latency vary from run to run; most counts are fixed by the seeded plan.
    assert pair["untestable"] is None and pair["tested"] >= 5 and pair["tested"] + pair["identical"] >= 30
    found = regressions(section)
    assert done.returncode == (1 if found else 0), done.stdout[-3000:] + done.stderr[-2000:]
    assert "Between versions" in done.stdout
    assert ("REGRESSION" in done.stdout) == bool(found)

    title = f"{RELEASES[0]} → {RELEASES[1]}"
    md = (run_dir / "report.md").read_text()
    assert "## Between versions" in md and f"**{title}** (`arq=={RELEASES[0]}` → `arq=={RELEASES[1]}`)" in md
    assert 'id="between-versions"' in (run_dir / "report.html").read_text()

    # `report` recomputes the section from the history alone: no Redis, no re-run.
    (run_dir / "report.md").unlink()
    (run_dir / "results.json").unlink()
    again = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run_dir)], capture_output=True,
                           text=True, timeout=300, cwd=ROOT, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["between_versions"]["groups"][0]["releases"] == \
        group["releases"]
    assert f"**{title}**" in (run_dir / "report.md").read_text()

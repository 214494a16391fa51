"""Reports people read and CI gates on: report.md/html from a real run, compare, JUnit."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent
SCENARIO = """
name = "one-retry"
description = "Every job fails once, retried after 0.2 s."
jobs = 8
workers = 1
concurrency = 2
[policy]
autoretry_for = ["ConnectionError"]
max_retries = 2
intervals = [0.2]
[[faults]]
kind = "fail_first"
k = 1
"""


def retrybench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, check=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, redis_url: str, backend_envs: Any) -> Path:
    """Given a real run of rq and the reference backend, twice each, with its reports."""
    out = tmp_path_factory.mktemp("report")
    scenario = out / "one-retry.toml"
    scenario.write_text(SCENARIO)
    done = retrybench("run", "-b", "reference", "-b", "rq", "-s", str(scenario), "--repeat", "2",
                      "--redis-url", redis_url, "--out", str(out), "--junit", str(out / "junit.xml"))
    assert done.returncode == 0, done.stderr
    return (out / "latest").resolve()


def test_run_writes_markdown_and_self_contained_html(run_dir: Path) -> None:
    md = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    assert "## one-retry" in md and "| rq |" in md and "| reference (control) |" in md
    assert md.index("## Verdict") < md.index("## one-retry")
    assert "Best: " in md or "No backend honours" in md
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (run_dir / image).is_file(), image
    # Self-contained: nothing fetched from anywhere, every plot a decodable PNG inside the page.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)


def test_report_regenerates_the_same_reports_from_the_history(run_dir: Path) -> None:
    before = (run_dir / "report.md").read_text()
    (run_dir / "report.md").unlink()
    (run_dir / "report.html").unlink()
    done = retrybench("report", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert (run_dir / "report.md").read_text() == before and (run_dir / "report.html").exists()


def test_junit_lists_every_check_of_every_cell(run_dir: Path) -> None:
    suite = ET.parse(run_dir.parent / "junit.xml").getroot()
    cases = suite.findall("testcase")
    results = json.loads((run_dir / "results.json").read_text())
    rows = [(s, b, r) for s, v in results["verdicts"].items() for b, r in v["rows"].items()]
    assert len(cases) == sum(len(c["checks"]) + 1 for c in results["cells"]) + len(rows)
    failing = [(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None]
    expected = [(f"retrybench.{c['scenario']}.{c['backend']}", name) for c in results["cells"]
                for name, v in c["checks"].items() if not v["valid"]]
    expected += [(f"retrybench.{s}.{b}", "verdict") for s, b, r in rows if r["status"] != "pass"]
    assert sorted(failing) == sorted(expected) and int(suite.get("failures", -1)) == len(expected)


def test_compare_a_run_against_itself_passes(run_dir: Path) -> None:
    done = retrybench("compare", str(run_dir), str(run_dir), "--fail-on", "lateness_p95:+10%", "--fail-on-invalid")
    assert done.returncode == 0, done.stdout + done.stderr


def test_compare_fails_when_retries_run_5_s_later(run_dir: Path, tmp_path: Path) -> None:
    # Given a copy of the run whose history says every retry started 5 s later. Not less: RQ's whole-second
    # scheduler puts each repetition's lateness anywhere in ~0-1 s, and with two repetitions a side Welch's
    # test (df 2) calls a shift significant only beyond 4.3 of their standard deviations (up to ~0.7 s), so
    # a 500 ms shift was, rightly, sometimes "noise" and the gate let it through.
    slower = tmp_path / "slower"
    shutil.copytree(run_dir, slower)
    lines = []
    for line in (slower / "history.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") in ("attempt_start", "attempt") and event.get("attempt", 1) > 1:
            for key in ("started_ns", "finished_ns"):
                if event.get(key):
                    event[key] += 5_000_000_000
        lines.append(json.dumps(event))
    (slower / "history.jsonl").write_text("\n".join(lines) + "\n")
    assert retrybench("report", str(slower)).returncode == 0
    # When it is compared with the original under a lateness gate
    done = retrybench("compare", str(run_dir), str(slower), "--fail-on", "lateness_p95:+10%", "--format", "markdown")
    # Then the gate fails, naming the metric and the backend
    assert done.returncode == 1, done.stdout + done.stderr
    fails = [line for line in done.stdout.splitlines() if "FAIL" in line]
    assert any("lateness_p95" in line and "rq" in line for line in fails), done.stdout
    assert any("lateness_p95" in line and "reference" in line for line in fails), done.stdout


def test_compare_refuses_results_it_cannot_read(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{not json")
    done = retrybench("compare", str(run_dir), str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "not valid JSON" in done.stderr


def test_report_html_renders_in_headless_chromium(run_dir: Path, chromium: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto((run_dir / "report.html").as_uri(), wait_until="load")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        plots = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => ({ok: i.complete && i.naturalWidth > 0, "
                   "w: i.getBoundingClientRect().width, h: i.getBoundingClientRect().height, "
                   "shown: getComputedStyle(i).display !== 'none' && getComputedStyle(i).visibility !== 'hidden'}))")
        browser.close()
    assert errors == []
    assert plots and all(p["ok"] and p["w"] > 50 and p["h"] > 50 and p["shown"] for p in plots), plots
    assert (tmp_path / "report.png").stat().st_size > 10_000


# The canonical committed runs (results/README.md): each must still be readable by today's code. Not compared
# byte for byte with what is committed: a report's wording may change without re-committing every run.
CANONICAL = ("example", "reliability", "perf", "baseline")


@pytest.mark.parametrize("name", CANONICAL)
def test_a_canonical_committed_run_is_reported_again_from_its_history(tmp_path: Path, name: str) -> None:
    # Given a committed run's history (gzipped), copied so the checkout is left alone
    committed = json.loads((ROOT / "results" / name / "results.json").read_text())
    copy = tmp_path / name
    copy.mkdir()
    shutil.copy(ROOT / "results" / name / "history.jsonl.gz", copy)
    # When its results and reports are rebuilt from the history alone
    done = retrybench("report", str(copy))
    assert done.returncode == 0, done.stderr
    # Then every scenario and backend it measured has a verdict, and the report opens with it
    rebuilt = json.loads((copy / "results.json").read_text())
    assert {(s, b) for s, v in rebuilt["verdicts"].items() for b in v["rows"]} == \
        {(s, b) for s, by in committed["aggregates"].items() for b in by}
    assert (copy / "report.md").read_text().index("## Verdict") < 100

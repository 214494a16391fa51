"""README and docs/ document what the code does: every metric of the registry, every preset, every scenario key.

README.md is a short front page that links every docs/ page; the reference lives in docs/*.md."""

from __future__ import annotations

import re
from pathlib import Path

from harness.analysis.metrics import markdown_table
from harness.plan.presets import PRESETS
from harness.plan.scenarios import _TYPES, load_file

ROOT = Path(__file__).resolve().parent.parent.parent
README = (ROOT / "README.md").read_text()
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCS = "\n".join([README, *(page.read_text() for page in PAGES)])


def test_the_docs_hold_the_metric_registry_verbatim() -> None:
    assert markdown_table() in DOCS, ("regenerate docs/metrics.md's metric table with "
                                      "harness.analysis.metrics.markdown_table()")


def test_the_docs_list_every_preset_and_every_scenario_key() -> None:
    for name in PRESETS:
        assert f"| `{name}` |" in DOCS
    for key in _TYPES:
        assert f"| `{key}` |" in DOCS


def test_readme_is_a_front_page_of_at_most_300_lines() -> None:
    assert len(README.splitlines()) <= 300


def test_readme_links_every_docs_page() -> None:
    assert PAGES
    for page in PAGES:
        assert f"](docs/{page.name})" in README, f"README.md does not link docs/{page.name}"


def test_no_commit_hashes_in_readme_or_docs() -> None:
    hashes = re.findall(r"`([0-9a-f]{7,40})`", DOCS)
    assert not hashes, f"commit hashes in README.md or docs/: {hashes}"


def test_the_example_scenario_file_in_readme_is_valid() -> None:
    scenario = load_file(ROOT / "tests" / "scenarios" / "flaky-api.toml")
    assert scenario.name == "flaky-api" and scenario.faults


def test_the_size_benchmark_is_the_scaling_workload_at_three_sizes() -> None:
    from harness.plan.sweep import variants

    scenario = load_file(ROOT / "benchmarks" / "scaling-jobs.toml")
    scaling = PRESETS["scaling"]
    assert (scenario.policy, scenario.faults, scenario.work_ms) == (scaling.policy, scaling.faults, scaling.work_ms)
    assert [v.jobs for v in variants(scenario, "rq")] == [1000, 10_000, 100_000]


def test_the_work10_overhead_benchmark_is_the_overhead_preset_but_for_its_work() -> None:
    scenario = load_file(ROOT / "benchmarks" / "overhead-work10.toml")
    preset = PRESETS["overhead"]
    same = ("policy", "faults", "jobs", "workers", "concurrency", "options", "sweep", "task")
    assert {k: getattr(scenario, k) for k in same} == {k: getattr(preset, k) for k in same}
    assert (preset.work_ms, scenario.work_ms) == (1, 10)


def test_the_threads_overhead_benchmark_is_the_overhead_preset_on_one_worker_with_1_to_8_slots() -> None:
    from harness.plan.sweep import variants

    scenario = load_file(ROOT / "benchmarks" / "overhead-threads.toml")
    preset = PRESETS["overhead"]
    same = ("policy", "faults", "jobs", "work_ms", "options", "task")
    assert {k: getattr(scenario, k) for k in same} == {k: getattr(preset, k) for k in same}
    assert [(v.workers, v.concurrency, v.options["record_history"]) for v in variants(scenario, "reference")] == [
        (1, c, on) for c in (1, 2, 4, 8) for on in (True, False)]


def test_ci_runs_exactly_readme_s_second_command() -> None:
    block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == commands[1]

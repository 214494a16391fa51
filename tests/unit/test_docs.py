"""README (and docs/) document what the code does: every metric of the registry, every preset, every scenario key."""

from __future__ import annotations

from pathlib import Path

from harness.metrics import markdown_table
from harness.scenarios import _TYPES, PRESETS, load_file

ROOT = Path(__file__).resolve().parent.parent.parent
README = (ROOT / "README.md").read_text()
# Topics with a page of their own (docs/schedules.md, …) document their keys there.
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def test_readme_holds_the_metric_registry_verbatim() -> None:
    assert markdown_table() in README, "regenerate README's metric table with harness.metrics.markdown_table()"


def test_readme_lists_every_preset_and_every_scenario_key() -> None:
    for name in PRESETS:
        assert f"| `{name}` |" in README
    for key in _TYPES:
        assert f"| `{key}` |" in DOCS, f"scenario key {key!r} is documented neither in README.md nor in docs/*.md"


def test_the_example_scenario_file_in_readme_is_valid() -> None:
    scenario = load_file(ROOT / "tests" / "scenarios" / "flaky-api.toml")
    assert scenario.name == "flaky-api" and scenario.faults


def test_the_size_benchmark_is_the_scaling_workload_at_three_sizes() -> None:
    from harness.sweep import variants

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
    from harness.sweep import variants

    scenario = load_file(ROOT / "benchmarks" / "overhead-threads.toml")
    preset = PRESETS["overhead"]
    same = ("policy", "faults", "jobs", "work_ms", "options", "task")
    assert {k: getattr(scenario, k) for k in same} == {k: getattr(preset, k) for k in same}
    assert [(v.workers, v.concurrency, v.options["record_history"]) for v in variants(scenario, "reference")] == [
        (1, c, on) for c in (1, 2, 4, 8) for on in (True, False)]

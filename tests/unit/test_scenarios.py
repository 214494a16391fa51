"""Presets and user scenario files share one set of keys; malformed files get a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenarios import PRESETS, ScenarioError, load_file, resolve

REQUIRED = {"seed-lesson", "transient-1", "transient-3", "flaky-20", "permanent", "non-retryable", "outage",
            "backoff-jitter", "throughput-0", "throughput-20"}


def test_every_required_preset_exists_and_is_valid() -> None:
    assert REQUIRED <= set(PRESETS)
    for scenario in PRESETS.values():
        scenario.retry_policy()
        scenario.fault_plan()


def test_seed_lesson_is_the_lesson() -> None:
    lesson = PRESETS["seed-lesson"]
    policy = lesson.retry_policy()
    assert lesson.task == "process_message"
    assert policy.max_retries == 3 and policy.intervals == (10, 30, 60)
    assert policy.is_retryable(ConnectionError()) and not policy.is_retryable(ValueError())


def test_a_user_file_runs_like_a_preset(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('jobs = 5\nworkers = 1\n[policy]\nautoretry_for = ["ConnectionError"]\nmax_retries = 2\n'
                    'intervals = [0.5]\n[[faults]]\nkind = "fail_first"\nk = 1\n')
    scenario = resolve(str(path))
    assert (scenario.name, scenario.jobs, scenario.retry_policy().max_retries) == ("mine", 5, 2)


@pytest.mark.parametrize("text, message", [
    ("jobs = 'many'", "jobs: expected int"),
    ("jobz = 3", "unknown key"),
    ("jobs = 0", "jobs: expected a whole number >= 1"),
    ("[policy]\nmax_retries = -1", "policy: max_retries must be >= 0"),
    ("[[faults]]\nkind = 'boom'", r"faults\[0\].kind"),
    ("jobs = [", "not valid TOML"),
])
def test_malformed_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message) as info:
        load_file(path)
    assert "bad.toml" in str(info.value)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ScenarioError, match="seed-lesson"):
        resolve("nope")

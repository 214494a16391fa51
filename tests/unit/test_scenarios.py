"""Presets and user scenario files share one set of keys; malformed files get a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.plan.presets import PRESETS, resolve
from harness.plan.scenarios import ScenarioError, load_file

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
    ("poison = 1.5", "poison: expected a share of jobs between 0 and 1"),
    ("late_from = 'queue'", "late_from: expected 'due' or 'turn', got 'queue'"),
    ("[options]\ncelery_acks_lat = true", "unknown option.*celery_acks_lat.*known:.*celery_acks_late"),
    ("[options]\ndeadline_s = 'soon'", "deadline_s must be a number > 0, got 'soon'"),
    ("[options]\ndeadline_s = -5", "deadline_s must be a number > 0, got -5"),
    ("[options]\narq_poll_delay = 0", "arq_poll_delay must be a number > 0"),
    ("[options]\ncelery_prefetch = -1", "celery_prefetch must be a number >= 0"),
    ("[options]\nbroker_wait_s = true", "broker_wait_s must be a number > 0, got True"),
    ("[[faults]]\nkind = 'crash'\ntarget = 'host'", r"faults\[0\].target: expected process or worker"),
    ("[[faults]]\nkind = 'timeout'\ntarget = 'worker'", "unknown key.*target"),
    ("schedule = 'library'", "schedule: expected 'planned' or 'native', got 'library'"),
    ("schedule = 1", "schedule: expected str"),
])
def test_malformed_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message) as info:
        load_file(path)
    assert "bad.toml" in str(info.value)


def test_a_number_option_is_checked_on_the_command_line_too() -> None:
    from harness.plan.options import check_options

    # Given -o values as the CLI parses them (numbers where they look like one)
    check_options({"deadline_s": 30, "celery_prefetch": 0, "broker_down_s": 0.5}, "--option")
    # Then a too-small or non-number one is refused with its name
    with pytest.raises(ScenarioError, match="--option: broker_wait_s must be a number > 0, got 0"):
        check_options({"broker_wait_s": 0}, "--option")


def test_the_schedule_mode_comes_from_the_file_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    from harness.cli.parser import build_parser, plan_run

    path = tmp_path / "native.toml"
    path.write_text('schedule = "native"\njobs = 2\n')
    assert PRESETS["transient-1"].schedule == "planned"  # the default: today's behaviour
    assert load_file(path).schedule == "native"
    parser = build_parser()
    plan = plan_run(parser.parse_args(["run", "-s", str(path)]))
    assert plan.scenarios[0].schedule == "native"
    plan = plan_run(parser.parse_args(["run", "-s", str(path), "-s", "transient-1", "--schedule", "planned"]))
    assert [s.schedule for s in plan.scenarios] == ["planned", "planned"]
    plan = plan_run(parser.parse_args(["run", "-s", "transient-1", "--schedule", "native"]))
    assert plan.scenarios[0].schedule == "native" and plan.scenarios[0].to_dict()["schedule"] == "native"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--schedule", "library"])


def test_the_app_config_carries_the_schedule_to_the_workers() -> None:
    from implementations.core.config import AppConfig

    config = AppConfig(backend="rq", schedule="native")
    assert AppConfig.from_json(config.to_json()).schedule == "native"
    assert AppConfig().schedule == "planned"
    with pytest.raises(ValueError, match="schedule must be one of planned, native"):
        AppConfig(schedule="sometimes")


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ScenarioError, match="seed-lesson"):
        resolve("nope")


def test_the_reliability_presets_cover_every_failure_the_issue_names() -> None:
    kinds = {name: {f["kind"] for f in PRESETS[name].faults} for name in PRESETS}
    assert "crash" in kinds["worker-crash"] and "crash" in kinds["worker-crash-recovery"]
    assert PRESETS["host-crash-recovery"].faults[0]["target"] == "worker"
    assert "timeout" in kinds["time-limit"] and PRESETS["time-limit"].task_options["time_limit"] > 0
    assert PRESETS["poison"].poison > 0
    assert PRESETS["broker-restart"].options["broker_restart_at"] > 0
    assert PRESETS["load-10k"].jobs == 10_000 and PRESETS["load-10k"].workers == 4
    # The recovery presets differ from the defaults only in their settings
    plain, tuned = PRESETS["worker-crash"], PRESETS["worker-crash-recovery"]
    assert plain.faults == tuned.faults and plain.policy == tuned.policy
    assert tuned.options["celery_acks_late"] is True and "celery_acks_late" not in plain.options


def test_poison_jobs_are_picked_from_the_seed_and_carry_an_undecodable_argument() -> None:
    import pickle

    scenario = PRESETS["poison"]
    picked = [i for i in range(scenario.jobs) if scenario.is_poison(i)]
    assert picked == [i for i in range(scenario.jobs) if scenario.is_poison(i)] and picked
    (arg,), _ = scenario.job_args(picked[0])
    data = pickle.dumps(arg)  # it serialises ...
    with pytest.raises(ValueError, match="cannot be decoded"):
        pickle.loads(data)  # ... and a worker cannot decode it


def test_a_native_cell_waits_as_long_as_the_slowest_library_may_schedule() -> None:
    from dataclasses import replace

    from harness.bench.cell import retry_schedule_s

    # Given a policy with intervals, and one with a sub-second backoff (time scale 0.1)
    lesson = PRESETS["seed-lesson"]  # intervals 10, 30, 60 s × 0.1; default_retry_delay 180 s × 0.1
    backoff = replace(PRESETS["transient-1"], time_scale=0.1)  # factor 1 × 0.1, three retries
    # Then planned: the plan's own delays
    assert retry_schedule_s(lesson) == pytest.approx(10.0)
    assert retry_schedule_s(backoff) == pytest.approx(0.7)
    # And native: Celery's default_retry_delay for each retry, and one more delay (ARQ's last Retry) …
    assert retry_schedule_s(replace(lesson, schedule="native")) == pytest.approx(4 * 18.0)
    # … and Celery's whole seconds, at least 1 s a step: 1, 2, 4, 8
    assert retry_schedule_s(replace(backoff, schedule="native")) == pytest.approx(1 + 2 + 4 + 8)

"""Reliability on real workers: time limits, worker crashes, poison payloads and a broker restart.

Each test runs a small scenario file through ``retrybench run`` and reads the cell's summary. What a
library does on its defaults is a finding, not a failure: tests assert what the history must show (every
job accounted for, crashes seen, time-outs retried), and only the recovery settings are held to "nothing
lost".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import assert_clear_error, retrybench

from implementations.backends import ALL_BACKENDS, QUEUES, REGISTRY

pytestmark = pytest.mark.integration
BACKENDS = ALL_BACKENDS
POLICY = '[policy]\nautoretry_for = ["ConnectionError", "TimeoutError"]\nmax_retries = 3\nretry_backoff = 1\n' \
         'default_retry_delay = 1\n'
# worker-crash-recovery's settings, with ARQ's in-progress key expiring after 1 + 10 s instead of 13.
# Dramatiq's maintenance on every broker command (10^6 in 10^6): at the presets' 10 % an idle worker that polls
# about once a second can go 40 s without one, and this test would then hang on chance, not on the library.
RECOVERY = ("celery_acks_late=true", "celery_reject_on_worker_lost=true", "celery_retry_on_worker_lost=true",
            "celery_visibility_timeout=10", "celery_unacked_restore_interval=1", "celery_unacked_restore_throttle=1",
            "rq_maintenance_interval=5", "arq_job_timeout=1", "dramatiq_heartbeat_timeout=5000",
            "dramatiq_maintenance_chance=1000000", "taskiq_idle_timeout=5", "taskiq_reclaim_tick=1",
            "taskiq_xread_count=1", "saq_heartbeat=1", "saq_sweep=1")


def scenario(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\ntask = "work"\nworkers = 1\nconcurrency = 1\n{body}\n{POLICY}')
    return str(path)


def run(tmp_path: Path, backend: str, scenario_file: str, *extra: str) -> dict[str, Any]:
    done = retrybench("run", "-b", backend, "-s", scenario_file, "--out", str(tmp_path / "out"), *extra,
                      timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    (cell,) = results["cells"]
    return dict(cell["summary"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_task_that_outlives_its_time_limit_is_stopped_by_the_library_and_retried(
        backend: str, redis_url: str, backend_envs: object, tmp_path: Path) -> None:
    # Given half of the jobs hang on their first attempt, past a 1 s time limit
    body = 'jobs = 6\ntask_options = {time_limit = 1}\nfaults = [{kind = "timeout", fraction = 0.5}]'
    s = run(tmp_path, backend, scenario(tmp_path, "hang", body), "--redis-url", redis_url)
    # Then each library's own limit stopped them (RQ's SIGALRM, Celery's soft limit, ARQ's cancellation), the
    # time-out reached the policy as a TimeoutError and was retried, and every job succeeded on its retry
    assert s["timed_out_attempts"] > 0 and s["timeouts_retried"] == s["timed_out_attempts"]
    assert s["succeeded"] == s["jobs"] == 6 and s["attempts"] == 6 + s["timed_out_attempts"]
    assert s["lost_jobs"] == s["duplicate_executions"] == s["callback_mismatch"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_with_documented_recovery_settings_a_worker_crash_loses_no_job(
        backend: str, redis_url: str, backend_envs: object, tmp_path: Path) -> None:
    if why := REGISTRY[backend].lacking("crash_recovery"):
        pytest.skip(f"{backend} has no recovery from a worker crash: {why}")
    # Given half of the jobs SIGKILL the process running them on their first attempt
    body = 'jobs = 6\nfaults = [{kind = "crash", fraction = 0.5}]\noptions = {deadline_s = 40}'
    extra = [arg for option in RECOVERY for arg in ("-o", option)]
    s = run(tmp_path, backend, scenario(tmp_path, "crash", body), "--redis-url", redis_url, *extra)
    # Then the crashes are in the history as attempts that started and never finished, and every job hit
    # ran again and succeeded: nothing lost, nothing marked failed behind the failure log's back
    assert s["interrupted_attempts"] >= s["crash_hit_jobs"] > 0
    assert s["recovered_jobs"] == s["crash_hit_jobs"]
    assert s["succeeded"] == s["jobs"] == 6
    assert s["lost_after_crash"] == s["failed_natively_after_crash"] == s["lost_jobs"] == 0
    assert s["recovery_max_s"] is not None and s["callback_mismatch"] == 0


def test_celery_on_its_defaults_marks_a_crashed_task_failed_without_calling_on_failure(
        redis_url: str, backend_envs: object, tmp_path: Path) -> None:
    # Given Celery's defaults (the message is acknowledged before the task runs)
    body = 'jobs = 6\nfaults = [{kind = "crash", fraction = 0.5}]\noptions = {deadline_s = 15}'
    s = run(tmp_path, "celery", scenario(tmp_path, "crash", body), "--redis-url", redis_url)
    # Then the parent records FAILURE (WorkerLostError) in the result backend, the task never runs again and
    # the Celery-style on_failure never runs, so the failure log misses it
    assert s["crash_hit_jobs"] > 0 and s["failed_natively_after_crash"] == s["crash_hit_jobs"]
    assert s["recovered_jobs"] == 0 and s["native_mismatch"] == s["crash_hit_jobs"]


# On its defaults, where each library keeps a job whose whole worker died, as read from its own stores.
HELD = {"rq": "rq StartedJobRegistry", "arq": "arq in-progress key",
        "dramatiq": "dramatiq unacked (fetched by a worker)",
        "taskiq": "taskiq stream, pending (delivered, unacked)",
        "saq": "saq active list"}


@pytest.mark.parametrize("backend", list(QUEUES))
def test_on_the_defaults_a_crashed_job_is_where_the_library_stores_say_never_lost_for_a_deadline(
        backend: str, redis_url: str, backend_envs: object, tmp_path: Path) -> None:
    # Given the whole worker is SIGKILLed under some of six jobs, and a deadline far shorter than any
    # library's own recovery on its defaults (RQ's heartbeat TTL, ARQ's in-progress key)
    body = 'jobs = 6\nfaults = [{kind = "crash", fraction = 0.5, target = "worker"}]\noptions = {deadline_s = 8}'
    done = retrybench("run", "-b", backend, "-s", scenario(tmp_path, "crash", body), "--redis-url", redis_url,
                      "--out", str(tmp_path / "out"), timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    (cell,) = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())["cells"]
    s, delivery = cell["summary"], cell["checks"]["delivery"]
    assert s["crash_hit_jobs"] > 0 and delivery["stores_searched"] is True
    if backend in HELD:
        # Then RQ, ARQ, Dramatiq, taskiq and SAQ still hold each crashed job, in a store they name (and when back):
        # unrecovered at the deadline, not lost
        assert s["unrecovered_jobs"] == s["crash_hit_jobs"] and s["lost_jobs"] == 0
        assert HELD[backend] in delivery["unrecovered_in"] and delivery["recovery_hints"][HELD[backend]]
        assert cell["verdict"]["failed"] == ["delivery"] and cell["verdict"]["contracts"]["delivery"]["causes"]
    else:
        # Then Celery, which acknowledged the message before the task ran, holds it nowhere: in no queue, not
        # unacked, not FAILURE (no parent survived to mark it): lost, in every store
        assert s["lost_jobs"] == s["crash_hit_jobs"] and s["unrecovered_jobs"] == s["failed_natively"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_poison_payloads_end_where_each_library_puts_them_and_the_rest_of_the_run_is_unaffected(
        backend: str, redis_url: str, backend_envs: object, tmp_path: Path) -> None:
    # Given a third of the jobs carry an argument that pickles but cannot be unpickled
    body = 'jobs = 12\npoison = 0.34\nfaults = [{kind = "fail_first", k = 1, fraction = 0.5}]\n' \
           'options = {deadline_s = 30}'
    s = run(tmp_path, backend, scenario(tmp_path, "poison", body), "--redis-url", redis_url)
    # Then every poison job is where the library put it (the registry says where: a library that drops an
    # undecodable message leaves it unaccounted for, and that is the finding)
    where = REGISTRY[backend].poison
    assert s["poison_jobs"] > 0 and s[where] == s["poison_jobs"]
    assert where == "poison_unaccounted" or s["poison_unaccounted"] == 0
    # And every other job ran to success, retries included
    assert s["succeeded"] == 12 - s["poison_jobs"]
    assert s["lost_jobs"] == s["duplicate_executions"] == s["under_retries"] == 0


@pytest.mark.parametrize("backend", list(QUEUES))
def test_a_broker_restart_mid_run_is_recorded_and_every_job_is_accounted_for(
        backend: str, backend_envs: object, tmp_path: Path) -> None:
    # Given the harness's own Redis (AOF on) is SIGKILLed 1 s into the run and back 1 s later, with the
    # recovery settings, while 20 jobs arrive at 10/s
    body = ('jobs = 20\nenqueue_rate = 10\nfaults = [{kind = "fail_first", k = 1, fraction = 0.2}]\n'
            'options = {broker_restart_at = 1, broker_down_s = 1, deadline_s = 40}')
    extra = [arg for option in (*RECOVERY, "arq_conn_retries=20", "rq_worker_ttl=20") for arg in ("-o", option)]
    s = run(tmp_path, backend, scenario(tmp_path, "restart", body), *extra)
    # Then the downtime is in the history, and every job either finished or is reported lost (none vanish
    # from the count): the numbers per library are the README's, not this test's
    assert s["broker_down_s"] is not None and s["broker_down_s"] >= 1.0
    assert s["succeeded"] + s["failed"] + s["failed_natively"] + s["unrecovered_jobs"] + s["lost_jobs"] >= \
        s["jobs"] - s["unfinished"]


def test_a_broker_restart_needs_the_redis_the_harness_started(redis_url: str, tmp_path: Path) -> None:
    done = retrybench("run", "-b", "rq", "-s", "broker-restart", "--redis-url", redis_url, "--out", str(tmp_path))
    assert_clear_error(done, "broker-restart", "drop --redis-url")


def test_a_misspelt_option_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    done = retrybench("run", "-b", "celery", "-o", "celery_acks_lat=true", "--out", str(tmp_path))
    assert_clear_error(done, "unknown option(s) celery_acks_lat", "celery_acks_late")

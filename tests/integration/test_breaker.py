"""The circuit breaker (pybreaker, state shared through Redis) on real workers of every backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import retrybench

from implementations.backends import ALL_BACKENDS

pytestmark = pytest.mark.integration
BACKENDS = ALL_BACKENDS
# Two retries 0.3 s apart cannot outlast a 3 s outage: without a breaker the jobs that meet it fail. (RQ's
# scheduler runs a retry at its next check, up to ~1 s late: against a 2 s outage only 2-3 of RQ's 20 jobs
# failed, and none on a slow CI run.)
SHORT_RETRIES = """
name = "{name}"
description = "20 jobs at 10/s; a 6 s outage from 0.5 s; 2 retries 0.3 s apart."
jobs = 20
enqueue_rate = 10
[policy]
autoretry_for = ["ConnectionError"]
max_retries = 2
intervals = [0.3]
{breaker}
[[faults]]
kind = "outage"
start = 0.5
duration = 6
"""


def cells(out: Path) -> dict[str, dict[str, Any]]:
    return {c["scenario"]: c for c in json.loads((out / "latest" / "results.json").read_text())["cells"]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_during_an_outage_the_breaker_keeps_calls_away_from_the_dependency_without_losing_jobs(
        backend: str, redis_url: str, backend_envs: object, tmp_path: Path) -> None:
    # Given the outage preset, run without and with the breaker
    done = retrybench("run", "-b", backend, "-s", "outage", "-s", "outage-breaker", "--redis-url", redis_url,
                      "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    plain, guarded = (cells(tmp_path)[name]["summary"] for name in ("outage", "outage-breaker"))
    # Then every job succeeded in both, nothing was lost or run twice, retries were neither over- nor
    # under-spent and the callbacks agree (timing is not asserted: RQ's early retries are its own finding)
    for s in (plain, guarded):
        assert s["succeeded"] == s["jobs"] == 60
        assert [s[k] for k in ("lost_jobs", "duplicate_executions", "over_retries", "under_retries",
                               "callback_mismatch", "missing_records")] == [0] * 6
    # And with the breaker open, attempts were deferred instead of calling the dependency
    assert plain["deferrals"] == 0 and guarded["deferrals"] > 0
    assert guarded["outage_calls"] < plain["outage_calls"]
    assert guarded["recovery_s"] is not None and plain["recovery_s"] is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_deferrals_do_not_spend_the_tasks_retries(backend: str, redis_url: str, backend_envs: object,
                                                  tmp_path: Path) -> None:
    files = []
    for name, breaker in (("short", ""), ("short-breaker", "breaker_fail_max = 3\nbreaker_reset_timeout = 1")):
        path = tmp_path / f"{name}.toml"
        path.write_text(SHORT_RETRIES.format(name=name, breaker=breaker))
        files += ["-s", str(path)]
    done = retrybench("run", "-b", backend, *files, "--redis-url", redis_url, "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    plain, guarded = (cells(tmp_path / "out")[name]["summary"] for name in ("short", "short-breaker"))
    # Without a breaker the jobs that meet the outage spend their two retries inside it and fail;
    # with it, deferred attempts are not retries, so fewer jobs fail — and no job ran more real attempts
    # than max_retries + 1 allows (over_retries is part of `valid`).
    assert plain["failed"] > guarded["failed"]
    assert guarded["deferrals"] > 0
    assert [guarded[k] for k in ("lost_jobs", "over_retries", "under_retries", "callback_mismatch",
                                 "missing_records", "native_mismatch")] == [0] * 6

"""`retrybench run --external-workers`: workers started elsewhere (docker compose, other hosts) are measured.

The supervisors here are plain processes on this host, started exactly as the docker-compose services
start them (``python -m implementations.processes.external --backend … --redis-url …``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import ROOT, _pids_mentioning, _wait_for, assert_clear_error, retrybench

from harness.orchestrate.envs import BackendEnv
from harness.orchestrate.redis_server import RedisServer
from implementations.backends import QUEUES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_redis() -> Iterator[str]:
    # The supervisors' channel (retrybench:external:<backend>) is per Redis: keep it away from other tests.
    with RedisServer() as server:
        yield server.url


@pytest.fixture(params=list(QUEUES))
def supervisors(request: pytest.FixtureRequest, backend_envs: dict[str, BackendEnv],
                own_redis: str) -> Iterator[tuple[str, list[subprocess.Popen[str]]]]:
    backend = request.param
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([str(backend_envs[backend].python), "-m", "implementations.processes.external",
                               "--backend", backend, "--redis-url", own_redis], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
             for _ in range(2)]
    try:
        yield backend, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_a_run_measures_workers_started_elsewhere(supervisors: tuple[str, list[subprocess.Popen[str]]],
                                                 own_redis: str, tmp_path: Path) -> None:
    backend, procs = supervisors
    # Given two supervisors waiting on the Redis, and a run that starts no workers of its own
    done = retrybench("run", "-b", backend, "-s", "transient-1", "-s", "permanent", "--jobs", "6",
                      "--time-scale", "0.1", "--redis-url", own_redis, "--external-workers", "2",
                      "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    run_dir = (tmp_path / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    # Then both cells completed, every job and failure accounted for, on workers that the supervisors started
    # (one set per cell); timing is judged, but is the library's own business
    assert [(c["scenario"], c["complete"], c["verdict"]["contracts"]["delivery"]["pass"],
             c["verdict"]["contracts"]["failure_log"]["pass"]) for c in results["cells"]] == \
        [("transient-1", True, True, True), ("permanent", True, True, True)]
    events = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["type"] == "worker" and e["event"] == "start"]
    supervisor_pids = {p.pid for p in procs}
    assert starts and {e["ppid"] for e in starts} == supervisor_pids
    # And the failure records of workers elsewhere reached this run's failed_jobs.log
    records = (run_dir / "failed_jobs.log").read_text().splitlines()
    assert len(records) == 6 and all(json.loads(r)["exc_type"] == "ConnectionError" for r in records)
    # And after the run the supervisors idle with no worker left (workers carry the Redis URL in their config)
    assert all(proc.poll() is None for proc in procs)
    _wait_for(lambda: set(_pids_mentioning(own_redis)) == supervisor_pids, 15, "workers to exit after the run")
    # And they stop cleanly on SIGTERM
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    assert _pids_mentioning(own_redis) == []


def test_external_workers_need_a_redis_url(tmp_path: Path) -> None:
    assert_clear_error(retrybench("run", "-b", "rq", "--external-workers", "--out", str(tmp_path)), "--redis-url")


def test_the_reference_backend_cannot_run_elsewhere(tmp_path: Path) -> None:
    assert_clear_error(retrybench("run", "-b", "reference", "--external-workers", "--redis-url",
                                  "redis://127.0.0.1:1/0", "--out", str(tmp_path)), "reference")


def test_a_supervisor_replaces_a_worker_that_died_and_keeps_its_logs(backend_envs: dict[str, BackendEnv],
                                                                   own_redis: str, tmp_path: Path) -> None:
    # Given one supervisor that keeps worker logs, and a run whose crashes SIGKILL the whole worker
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RETRYBENCH_WORKER_LOG_DIR": str(tmp_path / "worker-logs")}
    # (Celery: its documented recovery brings a dead worker's jobs back in ~10 s, RQ's in ~70.)
    proc = subprocess.Popen([str(backend_envs["celery"].python), "-m", "implementations.processes.external",
                             "--backend", "celery", "--redis-url", own_redis], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        done = retrybench("run", "-b", "celery", "-s", "host-crash-recovery", "--jobs", "10", "--redis-url", own_redis,
                          "--external-workers", "1", "--out", str(tmp_path / "out"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    run_dir = (tmp_path / "out" / "latest").resolve()
    events = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    crashes = [e for e in events if e["type"] == "attempt_start" and e.get("fault") == "crash"]
    starts = [e for e in events if e["type"] == "worker" and e["event"] == "start"]
    restarted = [e for e in events if e["type"] == "worker" and e["event"] == "restarted"]
    # Then each worker the crashes killed (two crashes may share one) was replaced, as a process supervisor would,
    # and the history says so
    assert 1 <= len(restarted) <= len(crashes) and all(e["exit_code"] == -signal.SIGKILL for e in restarted)
    assert {e["new_pid"] for e in restarted} <= {e["pid"] for e in starts}
    # And the replacement worked: attempts started after the last replacement (whether Celery then ran a recovered
    # job twice, or lost one, is the library's business: docs/backends.md)
    last = max(e["ts_ns"] for e in restarted)
    assert any(e["started_ns"] > last for e in events if e["type"] == "attempt_start")
    (cell,) = json.loads((run_dir / "results.json").read_text())["cells"]
    # And the logs of the workers, the dead ones included, are kept under the cell's id
    logs = sorted(p.name for p in (tmp_path / "worker-logs" / cell["cell_id"]).iterdir())
    assert len(logs) == len(starts) and all(name.startswith("celery-worker-") for name in logs)

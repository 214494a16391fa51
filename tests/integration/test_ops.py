"""Monitoring failures: `retrybench failed-jobs` and the `/failed-jobs` API, on real runs of every backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection
from test_cli import ROOT, assert_clear_error, retrybench

from harness.ops.failed import RedisSource, ResultsSource
from harness.ops.server import create_app
from harness.orchestrate.envs import BackendEnv
from harness.orchestrate.redis_server import RedisServer
from implementations.backends import QUEUES

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def small_results(path: Path) -> Path:
    """A hand-made results directory: two failure records and the history of one of them."""
    recs = [{"cell_id": "abc001x0", "backend": b, "scenario": "unit", "task": "work", "job_id": j, "args": [1],
             "kwargs": {}, "exc_type": "ConnectionError", "exc_message": "boom", "traceback": "Traceback…",
             "attempts": 2, "enqueued_ns": 1, "failed_ns": n, "worker": "h:1"}
            for b, j, n in (("rq", "j1", 10), ("arq", "j2", 20))]
    (path / "failed_jobs.log").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (path / "history.jsonl").write_text(json.dumps({"type": "attempt", "cell_id": "abc001x0", "job_id": "j1",
                                                    "attempt": 1, "started_ns": 5, "outcome": "retry"}) + "\n")
    return path


def test_the_api_lists_pages_and_shows_failed_jobs_and_refuses_requeue_from_a_results_directory(
        tmp_path: Path) -> None:
    client = TestClient(create_app(ResultsSource(small_results(tmp_path)), token=TOKEN))
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/failed-jobs", params={"limit": 1}).json()
    assert (page["total"], [i["job_id"] for i in page["items"]]) == (2, ["j2"])
    assert [i["job_id"] for i in client.get("/failed-jobs", params={"backend": "rq"}).json()["items"]] == ["j1"]
    detail = client.get("/failed-jobs/j1").json()
    assert detail["traceback"] == "Traceback…" and [e["attempt"] for e in detail["history"]] == [1]
    assert client.get("/failed-jobs/nope").status_code == 404
    assert client.get("/failed-jobs", params={"since": "yesterday"}).status_code == 422
    # (the hand-made records failed 10 and 20 ns after the epoch)
    assert client.get("/failed-jobs", params={"after": "1969-12-31T23:59:59Z"}).json()["total"] == 2
    assert client.get("/failed-jobs", params={"after": "2001-01-01T00:00:00"}).json()["total"] == 0
    assert client.get("/failed-jobs", params={"limit": 0}).status_code == 422
    # Requeue always needs the token; with it, a results directory is a record of the past
    assert client.post("/failed-jobs/j1/requeue").status_code == 401
    assert client.post("/failed-jobs/j1/requeue", headers=AUTH).status_code == 409
    # With a token set, the spec needs it too (tests/security/test_api_docs.py)
    assert client.get("/openapi.json").status_code == 401
    assert "/failed-jobs/{job_id}/requeue" in client.get("/openapi.json", headers=AUTH).json()["paths"]


def test_beyond_loopback_every_endpoint_needs_the_token(tmp_path: Path) -> None:
    client = TestClient(create_app(ResultsSource(small_results(tmp_path)), token=TOKEN, require_token=True))
    for path in ("/health", "/failed-jobs", "/failed-jobs/j1"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers=AUTH).status_code == 200


def test_serve_refuses_to_bind_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    done = retrybench("serve", "--results", str(small_results(tmp_path)), "--host", "0.0.0.0",
                      env={"RETRYBENCH_API_TOKEN": ""})
    assert_clear_error(done, "--token")


_schema_dir = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"retrybench-schemathesis-{os.getpid()}"
_schema_dir.mkdir(parents=True, exist_ok=True)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(ResultsSource(small_results(_schema_dir)), token=TOKEN, require_token=True),
    headers=AUTH)


SPEC_OPERATIONS = ("GET /health", "GET /failed-jobs", "GET /failed-jobs/{job_id}", "POST /failed-jobs/{job_id}/requeue")


def no_request_the_spec_allows_gets_a_server_error(label: str) -> Any:
    @schema.include(name=label).parametrize()
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def test(case: Any) -> None:
        # With the token: no 5xx, only documented statuses, responses match their schemas, and every request
        # the spec allows is accepted. Not checked: that everything outside the spec is refused — `after`
        # leniently also takes a Unix timestamp (pydantic's datetime), which the spec does not advertise.
        case.call_and_validate(headers=AUTH, excluded_checks=[negative_data_rejection])
    return test


# One test function per operation: schemathesis gives all of one function's operations the same node id
# (under pytest 9), and `make test`'s xdist scheduler, keyed by node id, would run only one of them.
test_health_spec = no_request_the_spec_allows_gets_a_server_error("GET /health")
test_failed_jobs_spec = no_request_the_spec_allows_gets_a_server_error("GET /failed-jobs")
test_failed_job_spec = no_request_the_spec_allows_gets_a_server_error("GET /failed-jobs/{job_id}")
test_requeue_spec = no_request_the_spec_allows_gets_a_server_error("POST /failed-jobs/{job_id}/requeue")


def test_every_operation_of_the_spec_has_its_test_above() -> None:
    assert sorted(r.ok().label for r in schema.get_all_operations()) == sorted(SPEC_OPERATIONS)


# --- a live Redis, real workers of every backend ---------------------------------------------------------

@pytest.fixture(scope="module")
def own_redis() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="module", params=list(QUEUES))
def failed_run(request: pytest.FixtureRequest, own_redis: str, backend_envs: dict[str, BackendEnv],
               tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """Given a real run in which three jobs failed for good on one backend."""
    backend = request.param
    out = tmp_path_factory.mktemp(f"ops-{backend}")
    done = retrybench("run", "-b", backend, "-s", "permanent", "--jobs", "3", "--time-scale", "0.05",
                      "--redis-url", own_redis, "--out", str(out))
    assert done.returncode == 0, done.stderr
    cell = json.loads((out / "latest" / "results.json").read_text())["cells"][0]
    return backend, cell


def test_failed_jobs_lists_and_shows_the_failures_of_a_live_redis(failed_run: tuple[str, dict[str, Any]],
                                                                  own_redis: str) -> None:
    backend, cell = failed_run
    listed = retrybench("failed-jobs", "--redis-url", own_redis, "--run", cell["cell_id"], "--json")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert page["total"] == 3 and {i["backend"] for i in page["items"]} == {backend}
    job = page["items"][0]["job_id"]
    shown = json.loads(retrybench("failed-jobs", "show", job, "--redis-url", own_redis, "--json").stdout)
    assert "ConnectionError" in shown["traceback"]
    assert [e["attempt"] for e in shown["history"] if e["type"] == "attempt"] == [1, 2, 3, 4]
    table = retrybench("failed-jobs", "--redis-url", own_redis, "--backend", backend)
    assert table.returncode == 0 and job in table.stdout
    assert_clear_error(retrybench("failed-jobs", "show", "no-such-job", "--redis-url", own_redis), "no-such-job")


def test_a_requeued_job_runs_again_through_the_native_mechanism_and_its_outcome_reaches_the_history(
        failed_run: tuple[str, dict[str, Any]], own_redis: str, backend_envs: dict[str, BackendEnv]) -> None:
    backend, cell = failed_run
    client = TestClient(create_app(RedisSource(own_redis), token=TOKEN))
    job = client.get("/failed-jobs", params={"run": cell["cell_id"], "limit": 1}).json()["items"][0]["job_id"]
    # Given workers for that run again (a supervisor, as docker compose runs it, given the run's saved config)
    r = redis.Redis.from_url(own_redis)
    config = json.loads(r.get(f"retrybench:{cell['cell_id']}:config") or b"{}")
    assert config["backend"] == backend
    supervisor = subprocess.Popen([str(backend_envs[backend].python), "-m", "implementations.processes.external",
                                   "--backend", backend, "--redis-url", own_redis], cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r.set(f"retrybench:external:{backend}", json.dumps({"config": config, "concurrency": 1}))
        # When an operator requeues it (the token is required)
        assert client.post(f"/failed-jobs/{job}/requeue").status_code == 401
        answer = client.post(f"/failed-jobs/{job}/requeue", headers=AUTH)
        assert answer.status_code == 200, answer.text
        runs_as = answer.json()["requeued_as"]
        # Then the job runs again and its new terminal state reaches the run's event stream
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            history = client.get(f"/failed-jobs/{job}").json()["history"]
            kinds = [e["type"] for e in history]
            if "requeue" in kinds and "terminal" in kinds[kinds.index("requeue"):]:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no terminal state after the requeue: {kinds}")
        after = history[kinds.index("requeue"):]
        assert any(e["type"] == "attempt" and e["job_id"] == runs_as for e in after)
        assert after[-1]["type"] in ("terminal", "callback", "failure_record")
    finally:
        r.delete(f"retrybench:external:{backend}")
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)

"""The Celery-style API on real workers of every backend (run inside each backend's own environment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.orchestrate.envs import BackendEnv
from implementations.backends import QUEUES

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BACKENDS = list(QUEUES)


def probe(env: BackendEnv, backend: str, redis_url: str, broker_url: str | None = None) -> dict[str, Any]:
    env_vars = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    cmd = [str(env.python), str(HERE / "probe.py"), backend, redis_url] + ([broker_url] if broker_url else [])
    done = subprocess.run(cmd, env=env_vars, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module", params=BACKENDS)
def outcome(request: pytest.FixtureRequest, backend_envs: dict[str, BackendEnv], redis_url: str) -> dict[str, Any]:
    backend = request.param
    data = probe(backend_envs[backend], backend, redis_url)
    data["backend"] = backend
    return data


def attempts_of(outcome: dict[str, Any], name: str) -> list[dict[str, Any]]:
    job_id = outcome[name]["id"]
    return [e for e in outcome["events"] if e["type"] == "attempt" and e["job_id"] == job_id]


def test_a_bound_task_sees_request_retries_and_succeeds_after_its_transient_errors(outcome: dict) -> None:
    # Given a bound task that fails while self.request.retries < 2, with max_retries=2
    # Then the third attempt returns 2 and the native queue ran three separate executions
    assert outcome["flaky"] == {"ok": True, "value": 2, "id": outcome["flaky"]["id"]}
    assert [a["attempt"] for a in attempts_of(outcome, "flaky")] == [1, 2, 3]


def test_self_retry_with_countdown_retries_once_even_for_an_exception_not_in_autoretry_for(outcome: dict) -> None:
    assert outcome["manual"]["ok"] and outcome["manual"]["value"] == "done after 1 retry"
    first, second = attempts_of(outcome, "manual")
    assert first["outcome"] == "retry" and first["expected_delay"] == pytest.approx(0.3)
    assert second["started_ns"] - first["finished_ns"] > 0


def test_on_failure_runs_once_per_terminal_failure_with_the_celery_signature(outcome: dict) -> None:
    calls = {c["task_id"]: c for c in outcome["on_failure"]}
    assert len(outcome["on_failure"]) == 2 == len(calls)
    empty, retry = calls[outcome["empty"]["id"]], calls[outcome["retry"]["id"]]
    assert (empty["exc_type"], empty["args"], empty["attempts"], empty["has_traceback"]) == \
        ("ValueError", [""], 1, True)
    assert (retry["exc_type"], retry["args"], retry["attempts"]) == ("ConnectionError", ["please retry"], 4)


def test_on_retry_runs_once_per_retry(outcome: dict) -> None:
    counts = {name: outcome["on_retry"].count(outcome[name]["id"]) for name in ("flaky", "manual", "retry", "empty")}
    assert counts == {"flaky": 2, "manual": 1, "retry": 3, "empty": 0}


def test_countdown_delays_the_first_run(outcome: dict) -> None:
    job_id = outcome["retry"]["id"]
    enqueue = next(e for e in outcome["events"] if e["type"] == "enqueue" and e["job_id"] == job_id)
    first = attempts_of(outcome, "retry")[0]
    assert enqueue["countdown"] == pytest.approx(0.5)
    assert first["started_ns"] >= enqueue["ts_ns"]


def test_every_failed_attempt_left_its_error_in_the_native_job_metadata(outcome: dict) -> None:
    errors = outcome["native_errors"]
    if outcome["backend"] == "celery":
        # Celery keeps the error in its result backend: state and traceback of the final failure.
        assert errors["state"] == "FAILURE" and "ConnectionError" in errors["traceback"]
    else:
        assert errors == {"errors": 4, "last": "ConnectionError"}


def test_the_native_failure_store_agrees_with_the_failure_handler(outcome: dict) -> None:
    assert sorted(outcome["native_failures"]["job_ids"]) == sorted([outcome["empty"]["id"], outcome["retry"]["id"]])


@pytest.mark.skipif(os.environ.get("RETRYBENCH_NO_RABBITMQ") == "1", reason="RabbitMQ tests disabled")
@pytest.mark.parametrize("backend", ["celery", "dramatiq"])  # the libraries with a RabbitMQ broker of their own
def test_the_same_api_runs_over_rabbitmq(backend: str, backend_envs: dict[str, BackendEnv], redis_url: str) -> None:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.skip("no RabbitMQ on 127.0.0.1:5672 (.ci/run starts one where it can)")
    data = probe(backend_envs[backend], backend, redis_url, "amqp://127.0.0.1:5672//")
    assert data["flaky"]["ok"] and data["retry"]["error"].startswith("ConnectionError")
    assert len(data["on_failure"]) == 2
    # The end-of-run search cannot read what RabbitMQ holds: it says "not searched" ({}), never "in no store"
    # (which the checker would call lost).
    assert data["whereabouts"] == {}



def test_celery_results_stuck_in_retry_end_a_history_off_run_only_when_celery_holds_nothing(
        backend_envs: dict[str, BackendEnv], redis_url: str) -> None:
    # Celery stores RETRY after it sends the retry, so a retried copy that finishes first is overwritten and
    # its result says RETRY for good (a read-then-write race in the result backend): the history-off count
    # must still end the run, but never while a retry is really waiting.
    env_vars = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    done = subprocess.run([str(backend_envs["celery"].python), str(HERE / "stale_probe.py"), redis_url],
                          env=env_vars, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out["while_a_retry_waits"]) == {0}  # the ETA message is in the worker: not done
    assert out["when_idle"][0] == 0 and out["when_idle"][-1] == 1 and out["stale_states"] == 1
    # And a task waiting in kombu's list for its priority is found by the end-of-run search (not called lost)
    assert out["prio_keys"] and out["prio_whereabouts"] == {"prio-job": ["celery broker queue"]}

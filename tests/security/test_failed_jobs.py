"""Item 4: failed-jobs and serve survive any record, pass requeue payloads on stdin, and requeue each
failure once (a second requeue: 409 in the API, exit 1 in the CLI) on every backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from harness.ops.failed import RedisSource, ResultsSource, normalize, query
from harness.ops.server import create_app
from harness.orchestrate.redis_server import RedisServer
from implementations.backends import QUEUES
from security.conftest import cli

pytestmark = pytest.mark.integration
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

GOOD = {"job_id": "ok-1", "backend": "rq", "scenario": "s", "task": "t", "exc_type": "ValueError",
        "exc_message": "closing [/bold] tag and [link=file:///etc/passwd]x[/link]", "attempts": 2,
        "failed_ns": 1_700_000_000_000_000_000, "cell_id": "r1", "traceback": "[/]", "args": [], "kwargs": {}}
HOSTILE: list[Any] = [
    json.dumps(GOOD),
    json.dumps({**GOOD, "job_id": "bad-ns", "failed_ns": "yesterday"}),
    json.dumps({**GOOD, "job_id": "bad-types", "attempts": [1], "args": "x", "kwargs": 3, "exc_message": {"a": 1}}),
    "not json at all [red]",
    json.dumps([1, 2, 3]),
    json.dumps({**GOOD, "job_id": "huge", "traceback": "x" * (200 * 1024)}),
]


@pytest.fixture(scope="module")
def hostile_redis() -> Iterator[str]:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.rpush("retrybench:r1:failures", *HOSTILE)
        yield server.url


def test_normalize_never_raises() -> None:
    for raw in [*HOSTILE, b"\xff\xfe", "null", "1", json.dumps({"job_id": None}), "x" * (2 << 20)]:
        record = normalize(raw)
        assert isinstance(record["job_id"], str)
        assert record.get("failed_ns") is None or isinstance(record["failed_ns"], int)


def test_the_cli_lists_and_shows_hostile_records(hostile_redis: str) -> None:
    listed = cli("failed-jobs", "list", "--redis-url", hostile_redis)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr and "MALFORMED" in listed.stdout and "ok-1" in listed.stdout
    assert "[/bold]" in listed.stdout  # shown as text, not read as markup
    shown = cli("failed-jobs", "show", "ok-1", "--redis-url", hostile_redis)
    assert shown.returncode == 0 and "[link=file:///etc/passwd]" in shown.stdout, shown.stderr
    as_json = json.loads(cli("failed-jobs", "--redis-url", hostile_redis, "--json").stdout)
    assert as_json["total"] == len(HOSTILE)
    assert sum(1 for i in as_json["items"] if i["malformed"]) == 4


def test_the_api_lists_and_shows_hostile_records(hostile_redis: str) -> None:
    api = TestClient(create_app(RedisSource(hostile_redis), token=TOKEN))
    page = api.get("/failed-jobs")
    assert page.status_code == 200, page.text
    assert page.json()["total"] == len(HOSTILE)
    for job in ("ok-1", "bad-ns", "bad-types", "huge"):
        answer = api.get(f"/failed-jobs/{job}")
        assert answer.status_code == 200, (job, answer.text)
    assert api.get("/failed-jobs/bad-types").json()["malformed"]


def test_a_results_directory_with_a_broken_log_still_lists(tmp_path: Path) -> None:
    (tmp_path / "failed_jobs.log").write_text("\n".join(HOSTILE) + "\n")
    (tmp_path / "history.jsonl").write_text("")
    total, items = query(ResultsSource(tmp_path), __import__("harness.ops.failed", fromlist=["Filter"]).Filter())
    assert total == len(HOSTILE) and items[0]["job_id"] == "ok-1"


# --- requeue on real backends ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.parametrize("backend", list(QUEUES))
def test_requeue_is_idempotent_and_takes_large_records(backend: str, own_redis: RedisServer, tmp_path: Path,
                                                       queue_envs: None) -> None:
    url = own_redis.url
    done = cli("run", "-b", backend, "-s", "permanent", "--jobs", "3", "--time-scale", "0.05", "--out",
               str(tmp_path), env={"RETRYBENCH_REDIS_URL": url})
    assert done.returncode == 0, done.stderr
    cell_id = json.loads((tmp_path / "latest" / "results.json").read_text())["cells"][0]["cell_id"]
    client = redis.Redis.from_url(url)
    key = f"retrybench:{cell_id}:failures"
    records = [json.loads(r) for r in client.lrange(key, 0, -1)]
    assert len(records) == 3
    # One record made larger than the kernel allows one argument (128 KB): it used to fail with E2BIG.
    big = {**records[2], "traceback": records[2].get("traceback", "") + "#" * (300 * 1024)}
    client.lset(key, 2, json.dumps(big))
    api = TestClient(create_app(RedisSource(url), token=TOKEN))
    first, second = api.post(f"/failed-jobs/{records[0]['job_id']}/requeue", headers=AUTH), None
    assert first.status_code == 200, first.text
    second = api.post(f"/failed-jobs/{records[0]['job_id']}/requeue", headers=AUTH)
    assert second.status_code == 409 and "requeued already" in second.json()["detail"]
    env = {"RETRYBENCH_REDIS_URL": url}
    once = cli("failed-jobs", "requeue", records[1]["job_id"], env=env)
    assert once.returncode == 0, once.stderr
    twice = cli("failed-jobs", "requeue", records[1]["job_id"], env=env)
    assert twice.returncode == 1 and "requeued already" in twice.stderr and "Traceback" not in twice.stderr
    large = api.post(f"/failed-jobs/{big['job_id']}/requeue", headers=AUTH)
    assert large.status_code == 200, large.text

"""Alerts on terminal failure and JSON-lines logs of every attempt, on real workers of every backend."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from test_cli import retrybench

from implementations.backends import ALL_BACKENDS
from implementations.recording.joblog import FIELDS
from implementations.runtime.alerts import Alerts, payload

pytestmark = pytest.mark.integration


class Webhook:
    """A local Slack-style webhook: records every POST, answers 500 to the first ``fail_first``."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 500 if len(hook.statuses) < fail_first else 200
                hook.statuses.append(status)
                if status == 200:
                    hook.bodies.append(body)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(fail_first=1)
    yield hook
    hook.close()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_one_alert_per_task_per_window_survives_a_failing_webhook_and_every_attempt_is_logged(
        backend: str, webhook: Webhook, redis_url: str, backend_envs: object, tmp_path: Path) -> None:
    # Given four jobs that fail for good, a webhook whose first answer is a 500, and JSON logs on
    # (a file name: the driver places it inside the run directory, docs/security.md)
    done = retrybench("run", "-b", backend, "-s", "permanent", "--jobs", "4", "--time-scale", "0.05",
                      "--redis-url", redis_url, "--out", str(tmp_path), "-o", "alert_webhook=env",
                      "-o", "log_json=jobs.log", env={"RETRYBENCH_ALERT_WEBHOOK": webhook.url})
    assert done.returncode == 0, done.stderr
    log = tmp_path / "latest" / "jobs.log"
    cell = json.loads((tmp_path / "latest" / "results.json").read_text())["cells"][0]
    # Then the alerts never got in the jobs' way: the run is complete, every job and failure accounted for
    # (timing is the library's own business here: 50 ms delays are below RQ's and ARQ's resolution)
    contracts = cell["verdict"]["contracts"]
    assert cell["complete"] and contracts["delivery"]["pass"] and contracts["failure_log"]["pass"], contracts
    # And exactly one alert got through (after one retried delivery), Slack-shaped, for the first failure
    assert webhook.statuses[:2] == [500, 200] and len(webhook.bodies) == 1
    # And the URL (it holds the webhook's token) is in no file of the run
    assert not [f for f in (tmp_path / "latest").resolve().rglob("*") if f.is_file() and webhook.url.encode() in
                f.read_bytes()]
    alert = webhook.bodies[0]
    assert "work failed for good" in alert["text"] and alert["blocks"][0]["type"] == "section"
    assert alert["retrybench"]["backend"] == backend and alert["retrybench"]["suppressed"] == 0
    if backend != "reference":  # the other three were counted, in Redis, for the next alert to report
        suppressed = redis.Redis.from_url(redis_url).get(f"retrybench:{cell['cell_id']}:alerts:limit:work:suppressed")
        assert int(suppressed or 0) == 3
    # And every attempt left one JSON line with the same fields, whatever the backend
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == cell["summary"]["attempts"] == 16
    assert all(list(line) == list(FIELDS) for line in lines)
    assert sorted({(line["outcome"], line["level"]) for line in lines}) == [("failure", "ERROR"), ("retry", "WARNING")]
    assert {line["backend"] for line in lines} == {backend}


def test_the_window_reopens_and_the_next_alert_reports_what_was_suppressed(redis_url: str) -> None:
    hook = Webhook()
    alerts = Alerts(hook.url, prefix=f"retrybench:alerts-test-{time.time_ns()}", redis_url=redis_url,
                    window_s=0.3)
    try:
        alerts.start_sender()
        record = {"task": "t", "job_id": "j", "backend": "rq", "attempts": 1, "exc_type": "E", "exc_message": "m"}
        for _ in range(3):
            alerts.notify(record)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(hook.bodies) < 2:
            alerts.notify(record)  # admitted again only once the window has passed
            time.sleep(0.05)
        assert alerts.flush()
        assert hook.bodies[0]["retrybench"]["suppressed"] == 0 and hook.bodies[1]["retrybench"]["suppressed"] >= 2
    finally:
        alerts.stop()
        hook.close()


def test_the_payload_names_the_failure_and_the_suppressed_count() -> None:
    body = payload({"task": "send_email", "backend": "celery", "attempts": 4, "exc_type": "ConnectionError",
                    "exc_message": "smtp down", "job_id": "j1"}, suppressed=5)
    assert body["text"].startswith(":rotating_light: send_email failed for good on celery after 4 attempt(s)")
    assert "5 more failure(s)" in body["text"] and body["retrybench"]["suppressed"] == 5


@pytest.mark.parametrize(("option", "env", "needle"), [
    ("alert_webhook=https://hooks.example/T/B/secret", {}, "must be 'env'"),
    ("alert_webhook=env", {"RETRYBENCH_ALERT_WEBHOOK": ""}, "needs $RETRYBENCH_ALERT_WEBHOOK"),
    ("alert_webhook=env", {"RETRYBENCH_ALERT_WEBHOOK": "file:///etc/passwd"}, "http or https"),
])
def test_a_webhook_url_never_comes_from_a_command_line_and_only_http_is_posted_to(
        option: str, env: dict[str, str], needle: str) -> None:
    from test_cli import assert_clear_error

    done = retrybench("run", "-b", "reference", "-s", "permanent", "-o", option, env=env, timeout=60)
    assert_clear_error(done, needle)
    assert "secret" not in done.stderr

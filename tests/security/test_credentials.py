"""Items 1 and 2 of the hardening issue: the private Redis needs a password, and no credential leaves
memory — not in the run directory, the logs, the API's answers, the start line or any command line."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
import redis

from harness.orchestrate.redis_server import RedisServer, check_redis_url, clean_stale_dirs
from implementations.backends import QUEUES
from implementations.core.redact import redact_argv, redact_text, redact_url
from security.conftest import cli, cmdlines, descendants, popen_cli

pytestmark = pytest.mark.integration


def test_redact_url_and_text() -> None:
    assert redact_url("redis://:s3cr3t@127.0.0.1:6390/0") == "redis://:***@127.0.0.1:6390/0"
    assert redact_url("amqp://guest:hunter2@rabbit//") == "amqp://guest:***@rabbit//"
    assert redact_url("redis://lonely@h/0") == "redis://***@h/0"
    assert "x9" not in str(redact_url("redis://h:1/0?password=x9&db=1"))
    assert redact_text("cannot reach Redis at redis://u:pw@h:1/0: refused") == \
        "cannot reach Redis at redis://u:***@h:1/0: refused"
    assert redact_argv(["run", "--redis-url", "redis://:pw@h/0", "--token", "t0k", "--token=t1k"]) == \
        ["run", "--redis-url", "redis://:***@h/0", "--token", "***", "--token=***"]


def test_private_redis_refuses_an_unauthenticated_client() -> None:
    with RedisServer() as server:
        assert server.password and len(server.password) >= 24
        anonymous = redis.Redis(host=server.host, port=server.port, socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        assert redis.Redis.from_url(server.url).ping()
        # The password is in a 0600 file inside a 0700 directory, never on the server's command line.
        conf = Path(server.dir or "") / "auth.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(server.dir or "").stat().st_mode) == 0o700
        assert server.password not in cmdlines()[server.pid or 0]


def test_an_unreachable_url_is_reported_without_its_password() -> None:
    with pytest.raises(Exception) as caught:
        check_redis_url("redis://:topsecret@127.0.0.1:1/0", timeout=0.5)
    assert "topsecret" not in str(caught.value) and "redis://:***@127.0.0.1:1/0" in str(caught.value)


def test_a_run_on_the_private_redis_refuses_anonymous_clients(tmp_path: Path, queue_envs: None) -> None:
    proc = popen_cli("run", "-b", "rq", "-s", "permanent", "--jobs", "3", "--time-scale", "0.3",
                     "--out", str(tmp_path))
    assert proc.stdout is not None
    port = None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "started a private" in line:
            assert "(password required)" in line and ":***@" in line
            port = int(line.split("127.0.0.1:")[1].split("/")[0])
            break
    assert port, "".join(lines)
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=2).ping()
    finally:
        rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, "".join(lines) + rest


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("given", ["argv", "env"])
def test_a_password_is_found_nowhere(given: str, tmp_path: Path, queue_envs: None) -> None:
    """A run with a password-protected --redis-url on every queue backend: the password is in no file
    of the results, in no command line of the processes the run starts, in no API answer. Given on the
    command line (only the CLI's own argv holds it: that one the user typed) or as $RETRYBENCH_REDIS_URL."""
    with RedisServer() as server:
        secret = server.password
        url = server.url
        out = tmp_path / "results"
        how = ["--redis-url", url] if given == "argv" else []
        proc = popen_cli("run", *how, *[arg for b in QUEUES for arg in ("-b", b)], "-s", "permanent", "--jobs", "2",
                         "--time-scale", "0.1", "--out", str(out), "--junit", str(tmp_path / "junit.xml"),
                         env={} if how else {"RETRYBENCH_REDIS_URL": url})
        seen: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                procs = cmdlines()
                own = procs.get(proc.pid)
                # A child caught between fork and exec still shows the CLI's own command line: the one the user
                # typed, not a new copy of the password.
                seen.extend(c for p in descendants(proc.pid) if (c := procs.get(p, "")) and c != own)
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        output = proc.communicate(timeout=300)[0]
        stop.set()
        watcher.join()
        assert proc.returncode == 0, output
        assert secret not in output
        assert len(seen) > 5 and not [c for c in seen if secret in c]
        files = _files(out) + [tmp_path / "junit.xml"]
        assert any(f.name == "results.json" for f in files) and any(f.suffix == ".log" for f in files)
        leaks = [str(f) for f in files if secret.encode() in f.read_bytes()]
        assert not leaks
        if how:
            results = (out / "latest" / "results.json").read_text()
            assert "redis://:***@" in results  # the command line is kept, redacted
        # What the run saved in Redis for workers started later (the config key) holds no password either.
        client = redis.Redis.from_url(url)
        configs = [client.get(k) for k in client.scan_iter("retrybench:*:config")]
        assert configs and not [c for c in configs if c and secret.encode() in c]

        # failed-jobs and the API: the source line, /health and errors.
        listed = cli("failed-jobs", "list", env={"RETRYBENCH_REDIS_URL": url})
        assert listed.returncode == 0 and secret not in listed.stdout + listed.stderr
        from fastapi.testclient import TestClient

        from harness.ops.failed import RedisSource
        from harness.ops.server import create_app

        api = TestClient(create_app(RedisSource(url), token="tok"))
        for path in ("/health", "/failed-jobs", "/openapi.json"):
            answer = api.get(path, headers={"Authorization": "Bearer tok"})
            assert answer.status_code == 200 and secret not in answer.text


def test_stale_private_redis_dirs_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / "retrybench-redis-999999999-abc"
    alive = tmp_path / f"retrybench-redis-{os.getpid()}-abc"
    other = tmp_path / "retrybench-redis-abc"
    for d in (dead, alive, other):
        d.mkdir()
        (d / "redis.log").write_text("x")
    removed = clean_stale_dirs(str(tmp_path))
    assert removed == [str(dead)] and alive.exists() and other.exists() and not dead.exists()

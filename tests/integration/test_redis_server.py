"""A private redis-server: start, stop, restart with AOF, port races, URL checks (never port 6379)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

import harness.orchestrate.redis_server as redis_server  # noqa: E402 - after the importorskip
from harness.orchestrate.redis_server import (  # noqa: E402
    SYSTEM_PORT,
    RedisServer,
    RedisUnavailable,
    check_redis_url,
    find_redis_server,
)

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as r:
        assert r.port != SYSTEM_PORT
        yield r


def test_start_ping_stop(server: RedisServer) -> None:
    assert server.url == f"redis://:{server.password}@127.0.0.1:{server.port}/0"
    assert server.safe_url == f"redis://:***@127.0.0.1:{server.port}/0"
    client = redis.Redis.from_url(server.url)
    assert client.ping() and client.info("server")["process_id"] == server.pid
    assert server.version["server"] in ("redis", "valkey") and server.version["version"][0].isdigit()
    pid, data_dir = server.pid, server.dir
    assert pid is not None and _alive(pid) and data_dir and Path(data_dir).is_dir()
    server.stop()
    assert not _alive(pid) and server.pid is None
    assert not Path(data_dir).exists()  # the temp dir it created is removed
    server.stop()  # idempotent
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_no_persistence_by_default(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
    client.set("k", "v")
    server.restart()
    assert client.get("k") is None


@pytest.mark.parametrize("hard", [False, True])
def test_restart_keeps_aof_data_on_the_same_port(hard: bool) -> None:
    with RedisServer(appendonly=True) as r:
        port, pid = r.port, r.pid
        client = redis.Redis.from_url(r.url)
        client.rpush("queue", "a", "b")
        r.restart(hard=hard)
        assert r.port == port and r.pid != pid and pid is not None and not _alive(pid)
        assert client.lrange("queue", 0, -1) == [b"a", b"b"]


def test_context_manager_stops_on_exception() -> None:
    r = RedisServer()
    with pytest.raises(KeyError), r:
        pid = r.pid
        raise KeyError("boom")
    assert pid is not None and not _alive(pid) and r.pid is None


def test_picked_port_taken_meanwhile_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        real = redis_server._free_port
        monkeypatch.setattr(redis_server, "_free_port", lambda host: next(picks, None) or real(host))
        with RedisServer() as r:
            assert r.port not in (taken, SYSTEM_PORT) and redis.Redis.from_url(r.url).ping()
        # An explicit port is not silently changed: it fails with the server's own words.
        with pytest.raises(RedisUnavailable, match="in use"):
            RedisServer(port=taken).start()


def test_refuses_the_system_port() -> None:
    with pytest.raises(ValueError, match="6379"):
        RedisServer(port=SYSTEM_PORT).start()


def test_check_redis_url(server: RedisServer) -> None:
    assert check_redis_url(server.url) == server.version


def test_check_redis_url_on_a_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when we leave: nothing listens there
    assert port != SYSTEM_PORT
    url = f"redis://127.0.0.1:{port}/0"
    with pytest.raises(RedisUnavailable) as caught:
        check_redis_url(url, timeout=1)
    message = str(caught.value)
    assert message.startswith(f"cannot reach Redis at {url}: ") and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_check_redis_url_rejects_other_schemes() -> None:
    with pytest.raises(RedisUnavailable, match=r"redis://, rediss:// or unix://"):
        check_redis_url("http://127.0.0.1:6390/0")


def test_find_redis_server_honours_the_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = find_redis_server()
    monkeypatch.setenv("RETRYBENCH_REDIS_SERVER", real)
    assert find_redis_server() == real
    monkeypatch.setenv("RETRYBENCH_REDIS_SERVER", str(tmp_path / "nope"))
    with pytest.raises(RedisUnavailable, match="RETRYBENCH_REDIS_SERVER"):
        find_redis_server()


def test_missing_server_explains_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETRYBENCH_REDIS_SERVER", raising=False)
    monkeypatch.setattr(redis_server, "_locate", lambda: None)
    with pytest.raises(RedisUnavailable) as caught:
        find_redis_server(install=False)
    message = str(caught.value)
    for hint in ("apt-get install redis-server", "docker compose up -d redis", "--redis-url redis://"):
        assert hint in message


def test_dead_server_reports_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "fake-redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: config is broken' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RedisUnavailable, match=r"exited with 3: FATAL: config is broken"):
        RedisServer(binary=str(fake), dir=str(tmp_path)).start(timeout=5)
    assert (tmp_path / "redis.log").exists()  # a dir we were given is left alone

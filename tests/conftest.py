"""Shared fixtures: one private redis-server per test session, and the per-backend environments.

Tests never use the machine's Redis on 6379; every test works under its own run prefix, so no test
depends on another's data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.orchestrate.envs import BackendEnv, ensure_envs, parse_backend_spec
from harness.orchestrate.redis_server import RedisServer
from implementations.backends import QUEUES, REGISTRY

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = list(REGISTRY)  # every backend, the control first (implementations/backends/__init__.py)
QUEUE_BACKENDS = list(QUEUES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make test`'s scheduler (pytest-xdist --dist loadscope) keys its queue by node id: of two tests with one
    # id, one would silently not run.
    seen: set[str] = set()
    for item in items:
        if item.nodeid in seen:
            raise pytest.UsageError(f"two tests share the node id {item.nodeid}: under xdist one would not run")
        seen.add(item.nodeid)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def backend_envs() -> dict[str, BackendEnv]:
    """rq, arq and celery environments under .venvs/ (created once, then reused)."""
    envs = ensure_envs([parse_backend_spec(b) for b in QUEUE_BACKENDS], root=ROOT / ".venvs")
    return {env.spec.backend: env for env in envs}


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed with apt-get on first use when we are root (as on CI)."""
    import os
    import shutil
    import subprocess

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    apt = shutil.which("apt-get")
    if not apt or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "sudo apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "update", "-qq"], env=env, capture_output=True, check=False, timeout=600)
    done = subprocess.run([apt, "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env,
                          capture_output=True, text=True, check=False, timeout=900)
    found = shutil.which("chromium")
    if not found:
        pytest.fail(f"installing chromium with apt-get failed: {done.stderr.strip()[-500:]}")
    return found

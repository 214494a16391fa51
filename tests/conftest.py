"""Shared fixtures: one private redis-server per test session, and the per-backend environments.

Tests never use the machine's Redis on 6379; every test works under its own run prefix, so no test
depends on another's data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.envs import BackendEnv, ensure_envs, parse_backend_spec
from harness.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["reference", "rq", "arq", "celery"]
QUEUE_BACKENDS = ["rq", "arq", "celery"]


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

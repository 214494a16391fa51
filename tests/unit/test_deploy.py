"""docker-compose.yml, the Dockerfile and the CI workflow say what README says they do.

No Docker engine runs in CI, so these read the files: docker-compose.yml is validated against the
compose-spec JSON schema, vendored as tests/schemas/compose-spec.json (compose-spec/compose-spec,
schema/compose-spec.json as of 2025-10-28, commit a08f8d51631b7127ddac3d2c65537db429d0f1d0; Apache-2.0).
`tests/integration/test_external.py` runs the supervisor the worker images run, on real workers;
deploy/kubernetes/ is tests/unit/test_kubernetes.py's.
"""

from __future__ import annotations

import copy
import json
import re
import signal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from implementations.backends import QUEUES
from implementations.processes.external import Supervisor

ROOT = Path(__file__).resolve().parent.parent.parent
WORKERS = {f"{backend}-worker": backend for backend in QUEUES}
COMPOSE_SPEC = jsonschema.Draft7Validator(json.loads((ROOT / "tests/schemas/compose-spec.json").read_text()))


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def compose_errors(compose: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in COMPOSE_SPEC.iter_errors(compose)]


def test_compose_is_valid_under_the_compose_spec() -> None:
    assert compose_errors(load("docker-compose.yml")) == []


@pytest.mark.parametrize("break_it", [
    lambda c: c["services"]["redis"].__setitem__("healthchek", {}),  # misspelt
    lambda c: c["services"]["rq-worker"].__setitem__("depends_on", {"redis": {"condition": "healthy"}}),
    lambda c: c["services"]["rq-worker"]["build"].__setitem__("args", "BACKEND"),
    lambda c: c.__setitem__("service", c.pop("services")),
], ids=["misspelt-key", "bad-condition", "args-a-string", "no-services"])
def test_the_compose_validator_rejects_a_broken_file(break_it: Any) -> None:
    broken = copy.deepcopy(load("docker-compose.yml"))
    break_it(broken)
    assert compose_errors(broken)


def test_compose_serves_redis_rabbitmq_and_one_scalable_worker_service_per_backend() -> None:
    services = load("docker-compose.yml")["services"]
    assert {"redis", "rabbitmq", *WORKERS} <= set(services)
    named = {name.removesuffix("-worker") for name in services if name.endswith("-worker")}
    assert named == set(QUEUES), "one worker service per queue backend of the registry, and no other"
    assert "healthcheck" in services["redis"] and "healthcheck" in services["rabbitmq"]
    for name, backend in WORKERS.items():
        svc = services[name]
        # Scaling (--scale rq-worker=4) is impossible with a fixed container name or host port.
        assert "container_name" not in svc and "ports" not in svc, name
        assert svc["build"]["args"]["BACKEND"] == backend
        assert svc["image"] == f"retrybench-{backend}", "the image name deploy/kubernetes/ pulls"
        assert (ROOT / "requirements" / f"{backend}.txt").is_file()
        assert svc["environment"]["RETRYBENCH_REDIS_URL"] == "redis://:${REDIS_PASSWORD:-}@redis:6379/0"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_s_redis_requires_the_password_from_the_environment_and_no_command_line_holds_it() -> None:
    redis = load("docker-compose.yml")["services"]["redis"]
    assert redis["environment"] == {"REDIS_PASSWORD": "${REDIS_PASSWORD:-}"}
    script = redis["command"][-1]
    # Refuses to start without one, writes it to a file only redis-server's user reads, and passes that file.
    assert script.startswith('test -n "$$REDIS_PASSWORD" || {')
    assert "umask 077 && printf 'requirepass %s\\n' \"$$REDIS_PASSWORD\" > /tmp/auth.conf" in script
    assert script.endswith("exec redis-server /tmp/auth.conf --save '' --appendonly no")
    assert "--requirepass" not in script and "-a " not in " ".join(redis["healthcheck"]["test"])
    assert redis["healthcheck"]["test"][1].startswith('REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli ping')
    assert redis["user"] == "redis"


def test_the_worker_image_runs_the_supervisor_for_its_backend() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^CMD \["python", "-m", "implementations.processes.external"\]$', dockerfile, re.M)
    assert "RETRYBENCH_BACKEND=${BACKEND}" in dockerfile
    assert "requirements/${BACKEND}.txt" in dockerfile
    # The uid deploy/kubernetes/ runs it as, so runAsNonRoot holds for the image too.
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)


def test_the_workflow_runs_the_suite_and_a_gated_smoke_benchmark_against_a_redis_service() -> None:
    jobs = load(".github/workflows/ci.yml")["jobs"]
    assert any(step.get("run") == "bash .ci/run" for step in jobs["test"]["steps"])
    smoke = jobs["smoke"]
    assert "redis" in smoke["services"]
    runs = " ".join(step.get("run", "") for step in smoke["steps"])
    uses = [step.get("uses", "") for step in smoke["steps"]]
    assert "bash .ci/smoke" in runs and any(u.startswith("actions/upload-artifact") for u in uses)
    script = (ROOT / ".ci/smoke").read_text()
    assert "GITHUB_STEP_SUMMARY" in script and "compare results/baseline" in script and "--junit" in script
    assert (ROOT / "results/baseline/results.json").is_file(), "the committed baseline the gate compares with"


class _LooksThenStops:
    """A Redis with nothing published that asks the supervisor to stop after ``looks`` looks."""

    def __init__(self, supervisor: Supervisor, heartbeat: Path, looks: int = 2) -> None:
        self.supervisor, self.heartbeat, self.looks = supervisor, heartbeat, looks
        self.seen: list[bool] = []  # whether the heartbeat existed at each look

    def get(self, key: str) -> None:
        self.seen.append(self.heartbeat.exists())
        self.looks -= 1
        if self.looks == 0:
            self.supervisor._stop = True


def test_the_supervisor_s_heartbeat_is_there_between_its_first_and_last_look(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    heartbeat.touch()  # left by a previous container of the pod: not a sign of life
    supervisor = Supervisor("rq", "redis://127.0.0.1:1/0", heartbeat=heartbeat, poll=0)
    redis = _LooksThenStops(supervisor, heartbeat)
    supervisor._redis = redis  # type: ignore[assignment]
    before = signal.getsignal(signal.SIGTERM)
    try:
        supervisor.run()
    finally:
        signal.signal(signal.SIGTERM, before)
    assert redis.seen == [False, True], "removed at the start, touched after each look"
    assert not heartbeat.exists(), "removed when the supervisor stops"

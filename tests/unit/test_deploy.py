"""docker-compose.yml, the Dockerfile and the CI workflow say what README says they do.

No Docker engine runs in CI, so these read the files; `tests/integration/test_external.py` runs the
supervisor the worker images run, on real workers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
WORKERS = {"rq-worker": "rq", "arq-worker": "arq", "celery-worker": "celery"}


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def test_compose_serves_redis_rabbitmq_and_one_scalable_worker_service_per_backend() -> None:
    services = load("docker-compose.yml")["services"]
    assert {"redis", "rabbitmq", *WORKERS} <= set(services)
    assert "healthcheck" in services["redis"] and "healthcheck" in services["rabbitmq"]
    for name, backend in WORKERS.items():
        svc = services[name]
        # Scaling (--scale rq-worker=4) is impossible with a fixed container name or host port.
        assert "container_name" not in svc and "ports" not in svc, name
        assert svc["build"]["args"]["BACKEND"] == backend
        assert (ROOT / "requirements" / f"{backend}.txt").is_file()
        assert svc["environment"]["RETRYBENCH_REDIS_URL"] == "redis://redis:6379/0"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_worker_image_runs_the_supervisor_for_its_backend() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^CMD \["python", "-m", "implementations.processes.external"\]$', dockerfile, re.M)
    assert "RETRYBENCH_BACKEND=${BACKEND}" in dockerfile
    assert "requirements/${BACKEND}.txt" in dockerfile


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

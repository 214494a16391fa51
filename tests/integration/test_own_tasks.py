"""Benchmark your own task (issue 25, docs/own-tasks.md): the example end to end on all four backends with real
Redis and real workers, and every bad input of a user task stopped with one line and exit 2 before any worker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from implementations.backends import ALL_BACKENDS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "flaky-http"


def retrybench(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False, env={**os.environ, **(env or {})})


def _service_pids() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"flaky_service.py" in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_the_example_runs_on_every_backend_and_gets_a_verdict(tmp_path: Path, backend_envs: object) -> None:
    before = set(_service_pids())
    every = [arg for backend in ALL_BACKENDS for arg in ("-b", backend)]
    done = retrybench("run", *every, "-s", str(EXAMPLE / "scenario.toml"), "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Verdict" in done.stdout and "not planned" in done.stdout
    results = json.loads((tmp_path / "latest" / "results.json").read_text())
    verdict = results["verdicts"]["flaky-http"]
    assert set(verdict["sentences"]) == set(ALL_BACKENDS)
    assert verdict["best_sentence"]
    # The service's failures are seeded: the same jobs fail on every backend (3 orders declined for good).
    for backend, agg in results["aggregates"]["flaky-http"].items():
        med = {k: (v.get("median") if isinstance(v, dict) else v) for k, v in agg.items()}
        assert med["jobs"] == 20 and med["succeeded"] == 17 and med["failed"] == 3, (backend, med)
        assert med["lost_jobs"] == 0 and med["duplicate_executions"] == 0, (backend, med)
        assert med["failure_records"] == 3 and med["missing_records"] == 0, (backend, med)
    for cell in results["cells"]:
        delivery, log = cell["checks"]["delivery"], cell["checks"]["failure_log"]
        assert delivery["planned"] is False and delivery["plan_mismatches"] is None
        assert log["planned"] is False and log["expected_records"] is None
        assert delivery["under_retries"] == 0 and delivery["non_retryable_retried"] == 0
    user = results["environment"]["user_code"]["flaky-http"]
    assert user["task"] == "charges:charge" and user["path"] == str(EXAMPLE)
    installed = user["requirements"]["installed"]
    assert set(installed) == set(ALL_BACKENDS)
    assert all("httpx" in libs for libs in installed.values())
    report = (tmp_path / "latest" / "report.md").read_text()
    assert "not planned" in report and "charges:charge" in report
    # Every attempt of the user's own task is in the history, with its own exception names.
    history = [json.loads(line) for line in (tmp_path / "latest" / "history.jsonl").open()]
    errors = {e.get("exc_type") for e in history if e.get("type") == "attempt" and e.get("outcome") != "success"}
    assert errors == {"charges.PaymentUnavailable", "charges.CardDeclined"}
    assert set(_service_pids()) <= before, "the example's service outlived the run"


def _scenario(tmp_path: Path, *, task: str = "mymod:work", module: str | None = "def work(n):\n    return n\n",
              extra: str = "", requirements: str | None = None) -> Path:
    if module is not None:
        (tmp_path / "mymod.py").write_text(module)
    if requirements is not None:
        (tmp_path / "reqs.txt").write_text(requirements)
        extra += '\nrequirements = "reqs.txt"'
    path = tmp_path / "own.toml"
    path.write_text(f'task = "{task}"\njobs = 2\n{extra}\n')
    return path


def _assert_stopped_before_workers(done: subprocess.CompletedProcess[str], out: Path, *needles: str) -> None:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("retrybench: error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "redis-server" not in done.stdout  # no Redis was started, so no worker either
    assert not out.exists() or not any(out.iterdir()), "a run directory was made"


@pytest.mark.parametrize("backend", ["reference", "rq"])
def test_a_missing_module(tmp_path: Path, backend: str) -> None:
    scenario = _scenario(tmp_path, task="nosuchmod:work", module=None)
    done = retrybench("run", "-b", backend, "-s", str(scenario), "--out", str(tmp_path / "res"))
    _assert_stopped_before_workers(done, tmp_path / "res", "no module 'nosuchmod'", str(tmp_path))


def test_a_missing_function(tmp_path: Path, backend_envs: object) -> None:
    scenario = _scenario(tmp_path, task="mymod:nope")
    done = retrybench("run", "-b", "reference", "-b", "arq", "-s", str(scenario), "--out", str(tmp_path / "res"))
    _assert_stopped_before_workers(done, tmp_path / "res", "has no function 'nope'")


def test_a_function_not_importable_in_one_backend_s_environment(tmp_path: Path, backend_envs: object) -> None:
    # Importable where Celery is installed, not in RQ's environment: the run stops before any worker anywhere.
    scenario = _scenario(tmp_path, module="import celery\n\ndef work(n):\n    return n\n")
    done = retrybench("run", "-b", "celery", "-b", "rq", "-s", str(scenario), "--out", str(tmp_path / "res"))
    _assert_stopped_before_workers(done, tmp_path / "res", "No module named 'celery'", "rq environment")


def test_a_requirement_that_does_not_install(tmp_path: Path, backend_envs: object) -> None:
    scenario = _scenario(tmp_path, requirements="this is not a requirement ===\n")
    done = retrybench("run", "-b", "rq", "-s", str(scenario), "--out", str(tmp_path / "res"))
    _assert_stopped_before_workers(done, tmp_path / "res", "reqs.txt")


def test_a_requirement_that_conflicts_with_the_backend_s_pins(tmp_path: Path, backend_envs: object) -> None:
    scenario = _scenario(tmp_path, requirements="redis==4.0.0\n")  # RQ's environment pins another redis
    done = retrybench("run", "-b", "rq", "-s", str(scenario), "--out", str(tmp_path / "res"))
    _assert_stopped_before_workers(done, tmp_path / "res", "reqs.txt")


def test_a_module_outside_the_allowed_path_is_not_imported(tmp_path: Path) -> None:
    # "json" exists on sys.path, not in the scenario's directory: the name cannot reach it.
    scenario = _scenario(tmp_path, task="json:dumps")
    done = retrybench("run", "-b", "reference", "-s", str(scenario), "--out", str(tmp_path / "res"))
    _assert_stopped_before_workers(done, tmp_path / "res", "no module 'json'")


def test_path_points_at_the_task_s_directory(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "mymod.py").write_text(
        "class Flaky(Exception):\n    pass\n\n"
        "def work(n):\n    if n % 2:\n        raise Flaky(f'odd {n}')\n    return n\n\n"
        "def make_args(index, seed):\n    return [index]\n")
    scenario = tmp_path / "own.toml"
    scenario.write_text('task = "mymod:work"\nargs = "mymod:make_args"\njobs = 4\n'
                        '[policy]\nautoretry_for = ["mymod.Flaky"]\nmax_retries = 1\nintervals = [0.2]\n')
    done = retrybench("run", "-b", "reference", "-s", str(scenario), "--out", str(tmp_path / "res"))
    assert done.returncode == 2 and "no module 'mymod'" in done.stderr  # not beside the scenario file
    done = retrybench("run", "-b", "reference", "-s", str(scenario), "--path", str(code),
                      "--out", str(tmp_path / "res"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    results = json.loads((tmp_path / "res" / "latest" / "results.json").read_text())
    cell = results["cells"][0]
    assert cell["checks"]["delivery"]["succeeded"] == 2 and cell["checks"]["delivery"]["failed"] == 2
    assert cell["checks"]["failure_log"]["failure_records"] == 2
    assert cell["checks"]["timing"]["retries"] == 2  # mymod.Flaky resolved from the allowed path: retried once


def test_exec_and_shell_run_in_a_backend_s_environment(tmp_path: Path, backend_envs: object) -> None:
    done = retrybench("exec", "-b", "rq", "--", "python", "-c",
                      "import rq, implementations.api.app, sys; print(rq.__name__, sys.prefix)", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "rq" and ".venvs" in done.stdout
    done = subprocess.run([sys.executable, "-m", "harness.cli", "shell", "-b", "celery"], input="import celery\n"
                          "print('celery', celery.__version__)\n", capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)
    assert done.returncode == 0 and "celery 5" in done.stdout, done.stderr


def test_a_missing_backend_library_names_the_commands_to_use() -> None:
    # The harness's own environment has no rq: the error says how to run the code where rq is.
    code = ("from implementations.api.app import RetryApp\n"
            "try:\n    RetryApp(backend='rq')\nexcept ImportError as exc:\n    print(exc)\n")
    if shutil.which("rq") and subprocess.run([sys.executable, "-c", "import rq"], check=False).returncode == 0:
        pytest.skip("rq is importable in this interpreter")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert "retrybench exec -b rq -- python script.py" in done.stdout
    assert "retrybench shell -b rq" in done.stdout


def test_requirements_are_cached_by_the_file_s_hash(tmp_path: Path, backend_envs: dict,  # type: ignore[type-arg]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.orchestrate.envs as envs

    reqs = EXAMPLE / "requirements.txt"
    first = envs.ensure_user_requirements(backend_envs["rq"], reqs, root=ROOT / ".venvs")
    assert "httpx" in first.installed and first.sha256 == envs.requirements_digest(reqs.read_text())

    def no_pip(*args: object, **kwargs: object) -> str:
        raise AssertionError("pip ran again for an unchanged requirements file")

    monkeypatch.setattr(envs, "_run", no_pip)
    again = envs.ensure_user_requirements(backend_envs["rq"], reqs, root=ROOT / ".venvs")
    assert again.path == first.path and again.installed == first.installed
    changed = tmp_path / "requirements.txt"
    changed.write_text(reqs.read_text() + "# a comment changes the hash\n")
    with pytest.raises(AssertionError, match="pip ran again"):
        envs.ensure_user_requirements(backend_envs["rq"], changed, root=ROOT / ".venvs")


def test_injected_faults_come_on_top_of_the_task_s_own_behaviour(tmp_path: Path) -> None:
    # The fault plan names an exception of the task's own module: imported from the allowed path, then raised.
    (tmp_path / "ownexc.py").write_text("class Flaky(Exception):\n    pass\n\ndef work(n):\n    return n\n")
    scenario = tmp_path / "own.toml"
    scenario.write_text('task = "ownexc:work"\njobs = 3\n'
                        'faults = [{kind = "fail_first", k = 1, exc = "ownexc.Flaky"}]\n'
                        '[policy]\nautoretry_for = ["ownexc.Flaky"]\nmax_retries = 2\nintervals = [0.1]\n')
    done = retrybench("run", "-b", "reference", "-s", str(scenario), "--out", str(tmp_path / "res"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    cell = json.loads((tmp_path / "res" / "latest" / "results.json").read_text())["cells"][0]
    checks = cell["checks"]
    assert checks["delivery"]["succeeded"] == 3 and checks["timing"]["retries"] == 3
    assert checks["faults"]["faults_fired"] == ["fail_first"] and checks["delivery"]["plan_mismatches"] is None
    history = [json.loads(line) for line in (tmp_path / "res" / "latest" / "history.jsonl").open()]
    assert {e.get("exc_type") for e in history if e.get("outcome") == "retry"} == {"ownexc.Flaky"}


def test_a_failed_user_task_is_requeued_from_a_live_redis_and_runs_its_own_code_again(
        tmp_path: Path, backend_envs: dict[str, Any]) -> None:
    import signal
    import time

    import redis

    from harness.orchestrate.redis_server import RedisServer

    with RedisServer() as server:
        # Given a run of the example on RQ in which orders were declined for good (its own task, its own errors)
        done = retrybench("run", "-b", "rq", "-s", str(EXAMPLE / "scenario.toml"), "--out", str(tmp_path),
                          env={"RETRYBENCH_REDIS_URL": server.url})
        assert done.returncode == 0, done.stderr[-3000:]
        cell = json.loads((tmp_path / "latest" / "results.json").read_text())["cells"][0]
        listed = retrybench("failed-jobs", "--run", cell["cell_id"], "--json", env={"RETRYBENCH_REDIS_URL": server.url})
        items = json.loads(listed.stdout)["items"]
        assert items and {i["exc_type"] for i in items} == {"charges.CardDeclined"}, listed.stdout
        job = items[0]["job_id"]
        # And workers for that run again, built from its saved config (the user's module, from its own directory)
        r = redis.Redis.from_url(server.url)
        config = json.loads(r.get(f"retrybench:{cell['cell_id']}:config") or b"{}")
        assert config["task"] == "charges:charge" and config["user_path"]
        supervisor = subprocess.Popen([str(backend_envs["rq"].python), "-m", "implementations.processes.external",
                                       "--backend", "rq"], cwd=ROOT, start_new_session=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT), "RETRYBENCH_REDIS_URL": server.url},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r.set("retrybench:external:rq", json.dumps({"config": config, "concurrency": 1}))
            # When the operator requeues it
            again = retrybench("failed-jobs", "requeue", job, env={"RETRYBENCH_REDIS_URL": server.url})
            assert again.returncode == 0, again.stderr
            # Then the user's function runs again: the payment service is gone now, so its own retryable error
            # (httpx's) is retried by RQ and the job fails for good once more, recorded in the run's stream
            deadline, after = time.monotonic() + 90, []
            while time.monotonic() < deadline:
                shown = json.loads(retrybench("failed-jobs", "show", job, "--json",
                                              env={"RETRYBENCH_REDIS_URL": server.url}).stdout)
                kinds = [e["type"] for e in shown["history"]]
                after = shown["history"][kinds.index("requeue"):] if "requeue" in kinds else []
                if any(e["type"] == "terminal" for e in after):
                    break
                time.sleep(0.5)
            attempts = [e for e in after if e["type"] == "attempt"]
            assert attempts and all(e["task"] == "charges.charge" for e in attempts), after
            assert any(e["type"] == "terminal" for e in after), after
        finally:
            r.delete("retrybench:external:rq")
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=30)

"""Item 5: setup failures are one line and exit 2 before anything starts; a dead driver makes the run exit 1;
--workers, --concurrency and --jobs have documented limits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from security.conftest import ROOT, assert_clear_error, cli, cmdlines, descendants, popen_cli

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("option", ["celery_pool=banana", "rq_worker_class=Nope", "restart_workers=7",
                                    "redis_appendfsync=sometimes"])
def test_a_bad_backend_option_is_refused_before_anything_runs(option: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_clear_error(cli("run", "-b", "celery", "-o", option, "--out", str(out)), option.split("=")[0])
    assert not out.exists()


def test_an_unwritable_out_or_a_file(tmp_path: Path) -> None:
    assert_clear_error(cli("run", "-b", "reference", "--out", "/proc/nope"), "/proc/nope")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_clear_error(cli("run", "-b", "reference", "--out", str(a_file)), "not a directory")
    assert_clear_error(cli("run", "-b", "reference", "--out", str(a_file / "sub")), "cannot write")


@pytest.mark.parametrize(("flag", "value"), [("--workers", "100000"), ("--jobs", "99999999999999"),
                                             ("--concurrency", "10000")])
def test_limits(flag: str, value: str, tmp_path: Path) -> None:
    assert_clear_error(cli("run", "-b", "reference", flag, value, "--out", str(tmp_path)), "--allow-large")
    # With the override the limit is gone (this run then stops at the Redis it cannot reach).
    done = cli("run", "-b", "rq", flag, value, "--allow-large", "--redis-url", "redis://127.0.0.1:1/0",
               "--out", str(tmp_path))
    assert_clear_error(done, "cannot reach Redis")


def test_no_run_directory_before_redis_answers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_clear_error(cli("run", "-b", "rq", "--redis-url", "redis://127.0.0.1:1/0", "--out", str(out)),
                       "cannot reach Redis")
    assert list(out.iterdir()) == []  # no run directory, no `latest`


def test_serve_on_a_busy_port(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text("")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = cli("serve", "--results", str(tmp_path), "--port", str(port), timeout=30)
    assert_clear_error(done, "cannot listen", str(port))
    assert "serving" not in done.stdout


def test_serve_prints_serving_once_listening(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_text("")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", "--results", str(tmp_path), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving")
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # already accepting
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("broken", [{"cells": "x"}, {"cells": ["x"]}, {"cells": [{"scenario": 1}]},
                                    {"cells": [], "aggregates": []}])
def test_mistyped_results_files(broken: dict[str, object], tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"schema_version": 1, "cells": []}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, **broken}))
    assert_clear_error(cli("compare", str(good), str(bad)), "bad.json")


def test_a_dead_driver_makes_the_run_exit_1(tmp_path: Path, queue_envs: None) -> None:
    proc = popen_cli("run", "-b", "rq", "-s", "permanent", "--jobs", "20", "--out", str(tmp_path))
    driver = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver is None:
        lines = cmdlines()
        driver = next((p for p in descendants(proc.pid) if "harness.bench.driver" in lines.get(p, "")), None)
        time.sleep(0.2)
    assert driver is not None
    time.sleep(2)
    os.kill(driver, signal.SIGKILL)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1, output
    assert "died" in output


def test_a_cell_whose_workers_cannot_start_stops_the_run_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The driver's exit 2 (its workers refused to start) is a setup error of the whole run: one line, exit 2."""
    import harness.cli as cli
    import harness.orchestrate.runner as runner

    def refused(cell: object, **_: object) -> dict[str, object]:
        return {"error": "celery worker exited with code 1 during start-up", "exit_code": 2}

    monkeypatch.setattr(runner, "launch_cell", refused)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["run", "-b", "reference", "--jobs", "2", "--out", str(tmp_path)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "during start-up" in err[0] and err[0].startswith("retrybench: error: ")

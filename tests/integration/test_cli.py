"""The command line as a user meets it: clear one-line errors, and Ctrl-C that leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.analysis.history import read_history

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent


def retrybench(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd or ROOT, check=False)


def assert_clear_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("retrybench: error: "), done.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unknown_backend(tmp_path: Path) -> None:
    assert_clear_error(retrybench("run", "--backend", "sidekiq", "--out", str(tmp_path)), "sidekiq", "celery")


@pytest.mark.parametrize(("args", "key"), [(["-s", "scaling", "--workers", "2"], "workers"),
                                            (["-s", "overhead", "-o", "record_history=false"], "record_history")])
def test_a_swept_setting_cannot_also_be_set_on_the_command_line(args: list[str], key: str, tmp_path: Path) -> None:
    # Every variant would run alike under the sweep's labels: a table that lies
    assert_clear_error(retrybench("run", "-b", "reference", *args, "--out", str(tmp_path)), "sweeps", key)


def test_a_negative_max_retries_in_a_scenario_file(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[policy]\nautoretry_for = ['ConnectionError']\nmax_retries = -1\n")
    assert_clear_error(retrybench("run", "-s", str(scenario), "--out", str(tmp_path)), "bad.toml", "max_retries")


def test_an_unreachable_redis_url(tmp_path: Path) -> None:
    done = retrybench("run", "-b", "reference", "--redis-url", "redis://127.0.0.1:1/0", "--out", str(tmp_path))
    assert_clear_error(done, "redis://127.0.0.1:1/0")


def test_no_redis_server_and_no_way_to_get_one(tmp_path: Path) -> None:
    done = retrybench("run", "-b", "reference", "--out", str(tmp_path),
                      env={"RETRYBENCH_REDIS_SERVER": str(tmp_path / "no-such-redis-server")})
    assert_clear_error(done, "RETRYBENCH_REDIS_SERVER")


def test_a_version_pin_that_cannot_be_installed(tmp_path: Path) -> None:
    done = retrybench("run", "-b", "rq==0.0.0.999", "--out", str(tmp_path), timeout=600)
    assert_clear_error(done, "rq==0.0.0.999")


def test_a_pinned_version_runs_with_the_harness_s_own_worker_dependencies(tmp_path: Path) -> None:
    """Given a pin other than the lock file's, when a scenario runs on it, then its workers start (they
    import pybreaker and orjson besides the library) and every job of the run is judged on that version."""
    done = retrybench("run", "-b", "arq==0.27.*", "-s", "seed-lesson", "--out", str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(next(tmp_path.glob("*/results.json")).read_text())
    (versions,) = results["environment"]["backends"].values()
    assert versions["arq"].startswith("0.27.")
    (cell,) = results["cells"]
    assert cell["complete"] and cell["summary"]["lost_jobs"] == 0


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line or environment mentions ``text`` (our run directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            found.append(int(proc.name))
    return found


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_mid_run_leaves_no_redis_or_worker_behind(tmp_path: Path, backend_envs: object,
                                                         sig: signal.Signals) -> None:
    # Given a bench run with workers of two backends and a private redis-server, well under way
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "-b", "rq", "-b", "celery",
                             "-s", "seed-lesson", "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # As from a terminal: a suite started in the background by a non-interactive
                            # shell inherits SIGINT ignored, and Python would keep ignoring it.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run_dirs = lambda: [p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]  # noqa: E731
    _wait_for(lambda: run_dirs() and (run_dirs()[0] / "history.jsonl").exists() and
              '"attempt"' in (run_dirs()[0] / "history.jsonl").read_text(), 120, "the first attempt")
    run_dir = run_dirs()[0]
    meta = json.loads((run_dir / "history.jsonl").read_text().splitlines()[0])
    redis_pid = meta["environment"]["redis"]["pid"]
    assert _pids_mentioning(str(run_dir)), "workers should be running"
    # When the user presses Ctrl-C (or the process is told to stop)
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    # Then it exits 130, and no worker, driver or redis-server of this run is left
    assert proc.returncode == 130, stderr
    assert _pids_mentioning(str(run_dir)) == []
    assert not Path(f"/proc/{redis_pid}").exists()
    # And what was recorded is kept and readable
    report = retrybench("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    assert "partial" in report.stdout


def test_a_user_scenario_file_runs_like_a_preset_and_report_recomputes_it_without_redis(
        tmp_path: Path, redis_url: str) -> None:
    # Given the example scenario file from README, run on the reference backend
    done = retrybench("run", "-b", "reference", "-s", "tests/scenarios/flaky-api.toml", "--redis-url", redis_url,
                      "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    run_dir = (tmp_path / "latest").resolve()
    first = json.loads((run_dir / "results.json").read_text())
    cell = first["cells"][0]
    # Then every job did what the seeded plan predicted, and the run is complete and valid
    assert cell["scenario"] == "flaky-api" and cell["complete"]
    assert cell["summary"]["plan_mismatches"] == 0 and cell["summary"]["valid"] is True
    assert cell["summary"]["jobs"] == 12
    # When the results are recomputed later, from the history alone (no Redis URL anywhere)
    (run_dir / "results.json").unlink()
    again = retrybench("report", str(run_dir), env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert again.returncode == 0, again.stderr
    # Then every metric comes out the same
    assert json.loads((run_dir / "results.json").read_text())["cells"][0]["summary"] == cell["summary"]


def test_a_corrupt_history_gets_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "history.jsonl").write_bytes(b"\x00\xffnot json at all\n{\"type\": \n")
    assert_clear_error(retrybench("report", str(tmp_path)), str(tmp_path))


def test_report_on_a_directory_that_is_not_a_results_directory(tmp_path: Path) -> None:
    assert_clear_error(retrybench("report", str(tmp_path)), "history.jsonl")


def test_redis_going_away_mid_run_stops_the_run_with_a_clear_message_and_keeps_the_history(
        tmp_path: Path, backend_envs: object) -> None:
    from harness.orchestrate.redis_server import RedisServer

    # Given a run of two cells on a Redis of its own, well under way
    server = RedisServer()
    server.start()
    try:
        # (the driver waits 3 s for it to come back, not the default 30: a restart would be back by then)
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "-b", "rq", "-s", "transient-3",
                                 "-s", "permanent", "--redis-url", server.url, "--out", str(tmp_path),
                                 "-o", "broker_wait_s=3"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        run_dirs = lambda: [p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]  # noqa: E731
        _wait_for(lambda: run_dirs() and (run_dirs()[0] / "history.jsonl").exists() and
                  '"attempt"' in (run_dirs()[0] / "history.jsonl").read_text(), 120, "the first attempt")
        run_dir = run_dirs()[0]
        # When the Redis disappears
        os.kill(server.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        server.stop()
    # Then the run stops (exit 1) with one clear line, and nothing of it is left running
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "retrybench: run stopped: Redis went away during rq · transient-3" in stderr
    assert _pids_mentioning(str(run_dir)) == []
    # And the history gathered so far is analysed: a partial run whose unfinished jobs are not called lost
    results = json.loads((run_dir / "results.json").read_text())
    assert results["partial"] and [c["scenario"] for c in results["cells"]] == ["transient-3"]
    summary = results["cells"][0]["summary"]
    assert summary["attempts"] > 0 and summary["lost_jobs"] == 0 and summary["unfinished"] > 0
    assert (run_dir / "report.md").exists()
    # And the cell's end says how long its driver waited for Redis to come back: the --option reached it
    (end,) = [e for e in read_history(run_dir / "history.jsonl").events if e["type"] == "end"]
    assert "unreachable for 3s (broker_wait_s)" in end["reason"]

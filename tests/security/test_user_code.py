"""Issue 25 item 6 within issue 23's inert scenario files: a scenario that runs a task of the user's own
imports modules only from its allowed path (the scenario file's directory or --path), never from the working
directory or sys.path, and a built-in scenario still imports nothing."""

from __future__ import annotations

from pathlib import Path

from security.conftest import ROOT, assert_clear_error, cli
from security.test_scenario_files import EVIL


def _setup(tmp_path: Path, policy: str) -> tuple[Path, Path, Path]:
    hostile, own = tmp_path / "cwd", tmp_path / "own"
    hostile.mkdir()
    own.mkdir()
    (hostile / "evilmod.py").write_text(EVIL)
    (own / "mytask.py").write_text("class Flaky(Exception):\n    pass\n\ndef work(n):\n    return n\n")
    scenario = own / "s.toml"
    scenario.write_text(f'task = "mytask:work"\njobs = 2\n[policy]\n{policy}\n')
    return scenario, hostile, hostile / "PWNED"


def test_a_user_task_s_exception_names_import_only_from_its_allowed_path(tmp_path: Path) -> None:
    scenario, hostile, marker = _setup(tmp_path, 'autoretry_for = ["evilmod.Boom"]\nmax_retries = 1')
    done = cli("run", "-b", "reference", "-s", str(scenario), "--out", str(tmp_path / "out"), cwd=hostile,
               env={"PYTHONPATH": str(ROOT)})
    assert_clear_error(done, "evilmod.Boom")
    assert not marker.exists()
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())  # no run directory


def test_a_user_task_s_own_exception_names_resolve(tmp_path: Path) -> None:
    scenario, hostile, marker = _setup(tmp_path, 'autoretry_for = ["mytask.Flaky"]\nmax_retries = 1')
    done = cli("run", "-b", "reference", "-s", str(scenario), "--out", str(tmp_path / "out"), cwd=hostile,
               env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert not marker.exists()


def test_path_cannot_be_used_to_reach_the_working_directory_s_modules_by_other_names(tmp_path: Path) -> None:
    # --path is the one allowed directory: the scenario's own directory is then not searched either.
    scenario, hostile, marker = _setup(tmp_path, 'max_retries = 1')
    done = cli("run", "-b", "reference", "-s", str(scenario), "--path", str(hostile), "--out",
               str(tmp_path / "out"), cwd=hostile, env={"PYTHONPATH": str(ROOT)})
    assert_clear_error(done, "no module 'mytask'")
    assert not marker.exists()

"""Item 3: scenario files are data. Exception names import nothing, names cannot leave the results
directory or crash the plots, and options cannot write outside the run directory. Each refusal: one line,
exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness.report.plots as plots
from harness.plan.scenarios import ScenarioError, from_mapping
from harness.report.render import _safe_stem
from implementations.core.policy import PolicyError, RetryPolicy, allow_exception, resolve_exception
from security.conftest import ROOT, assert_clear_error, cli

EVIL = "from pathlib import Path\nPath(__file__).with_name('PWNED').write_text('ran')\nclass Boom(Exception): pass\n"


def _in_hostile_dir(tmp_path: Path, toml: str) -> tuple[Path, Path]:
    (tmp_path / "evilmod.py").write_text(EVIL)
    scenario = tmp_path / "s.toml"
    scenario.write_text(toml)
    return scenario, tmp_path / "PWNED"


@pytest.mark.parametrize("toml", [
    'faults = [{kind = "probability", p = 0.5, exc = "evilmod.Boom"}]\n',
    '[policy]\nautoretry_for = ["evilmod.Boom"]\nmax_retries = 1\n',
    '[policy]\nautoretry_for = ["ConnectionError"]\ndont_autoretry_for = ["evilmod.Boom"]\n',
])
def test_an_exception_name_imports_nothing(toml: str, tmp_path: Path) -> None:
    scenario, marker = _in_hostile_dir(tmp_path, toml)
    # The working directory holds evilmod.py and comes first on sys.path, as it does for `python -m`.
    done = cli("run", "-b", "reference", "-s", str(scenario), "--out", str(tmp_path / "out"), cwd=tmp_path,
               env={"PYTHONPATH": str(ROOT)})
    assert_clear_error(done, "evilmod.Boom")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_resolution_rules() -> None:
    assert resolve_exception("ConnectionError") is ConnectionError
    with pytest.raises(PolicyError):
        resolve_exception("evilmod_never_imported.Boom")

    class Declared(Exception):
        pass

    with pytest.raises(PolicyError):
        resolve_exception(f"{__name__}.test_resolution_rules.<locals>.Declared")
    allow_exception(Declared)
    assert resolve_exception(f"{__name__}.test_resolution_rules.<locals>.Declared") is Declared
    # A class given to a policy in code is declared by that: its name round-trips through to_dict().

    class Flaky(Exception):
        pass

    names = RetryPolicy(autoretry_for=(Flaky,)).to_dict()["autoretry_for"]
    assert RetryPolicy(autoretry_for=names).autoretry_for == (Flaky,)


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs", "a/b", "$\\foo$", "tab\there", "..", ".hidden",
                                  "x" * 101])
def test_unsafe_scenario_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="name"):
        from_mapping({"name": name}, "s.toml")
    scenario = tmp_path / "s.toml"
    scenario.write_text(f"name = {name!r}\n".replace("'", '"') if "\t" not in name and "\\" not in name
                        else f"name = '''{name}'''\n")
    assert_clear_error(cli("run", "-b", "reference", "-s", str(scenario), "--out", str(tmp_path / "out")), "name")


@pytest.mark.parametrize("value", ["/tmp/owned.log", "../owned.log", "logs/../../owned.log"])
def test_log_json_cannot_leave_the_run_directory(value: str, tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'[options]\nlog_json = "{value}"\n')
    assert_clear_error(cli("run", "-b", "reference", "-s", str(scenario), "--out", str(tmp_path / "out")), "log_json")
    assert_clear_error(cli("run", "-b", "reference", "-o", f"log_json={value}", "--out", str(tmp_path / "out")),
                       "log_json")


def test_log_json_lands_inside_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = cli("run", "-b", "reference", "-s", "transient-1", "--jobs", "3", "--time-scale", "0.01",
               "-o", "log_json=jobs.log", "--out", str(out), cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert (out / "latest" / "jobs.log").read_text().count("job.attempt") >= 3
    assert not (tmp_path / "jobs.log").exists()


def test_mathtext_in_a_name_is_plain_text() -> None:
    assert plots.lateness_plot("$\\foo$", {"rq": [1.0, 2.0], "$\\bar$": [3.0]}, tolerance_s=0.002)


def test_plot_file_names_from_a_results_file_stay_in_plots() -> None:
    for hostile in ("../../etc/passwd", "/abs", "..", "a/../../b"):
        stem = _safe_stem(hostile)
        assert "/" not in stem and ".." not in stem and not stem.startswith(".")

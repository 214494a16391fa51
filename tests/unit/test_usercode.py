"""A task of the user's own (docs/own-tasks.md): imports only from the allowed path, arguments, scenario keys,
and checks that say "not planned" instead of inventing an expectation (literal histories)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.checks import check_delivery, check_failure_log, summarize
from harness.analysis.metrics import format_value
from harness.analysis.verdicts import cell_verdict, row_sentence, row_verdict
from harness.plan.expect import expectations
from harness.plan.scenarios import ScenarioError, load_file
from implementations.api.usercode import (
    UserCodeError,
    exception_modules,
    import_from,
    load_function,
    normalize_args,
    task_name,
)
from tests.unit.test_checks import attempt, callback, end, enqueue, header, record, start, terminal


@pytest.fixture
def code(tmp_path: Path) -> Path:
    name = f"utmod_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("class Flaky(Exception):\n    pass\n\nVALUE = 3\n\n"
                                         "def work(n):\n    return n\n\ndef gen(i, seed):\n    return [i, seed]\n")
    yield tmp_path
    sys.modules.pop(name, None)


def _mod(path: Path) -> str:
    return f"utmod_{path.name.replace('-', '_')}"


def test_a_function_is_imported_from_the_allowed_path(code: Path) -> None:
    fn = load_function(f"{_mod(code)}:work", str(code))
    assert fn(5) == 5
    assert str(code) not in sys.path  # the directory is never put on sys.path


def test_a_module_importable_elsewhere_is_not_reached(tmp_path: Path) -> None:
    with pytest.raises(UserCodeError, match="no module 'json'"):
        load_function("json:dumps", str(tmp_path))


def test_a_module_already_imported_from_elsewhere_is_refused(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text("def dumps(x):\n    return 'shadow'\n")
    with pytest.raises(UserCodeError, match="already imported"):
        import_from("json", str(tmp_path))


@pytest.mark.parametrize(("ref", "message"), [("nomod:work", "no module 'nomod'"), ("bad ref", "module:function"),
                                              ("{mod}:missing", "has no function 'missing'"),
                                              ("{mod}:VALUE", "not a function")])
def test_bad_references_say_what_is_wrong_in_one_line(code: Path, ref: str, message: str) -> None:
    with pytest.raises(UserCodeError, match=message) as info:
        load_function(ref.format(mod=_mod(code)), str(code))
    assert "\n" not in str(info.value)


def test_a_module_whose_import_fails_names_the_missing_dependency(tmp_path: Path) -> None:
    (tmp_path / "needsdep.py").write_text("import not_installed_anywhere_xyz\n")
    with pytest.raises(UserCodeError, match="No module named 'not_installed_anywhere_xyz'.*requirements"):
        load_function("needsdep:work", str(tmp_path))
    assert "needsdep" not in sys.modules  # a failed import leaves nothing half-loaded


def test_exception_names_import_only_modules_in_the_allowed_path(code: Path) -> None:
    names = [f"{_mod(code)}.Flaky", "ConnectionError", "httpx.TransportError", "json.JSONDecodeError"]
    assert exception_modules(names, str(code)) == [_mod(code)]


@pytest.mark.parametrize(("value", "expected"), [([1, 2], ((1, 2), {})), ({"a": 1}, ((), {"a": 1})),
                                                 ({"args": [1], "kwargs": {"b": 2}}, ((1,), {"b": 2})),
                                                 (7, ((7,), {}))])
def test_job_arguments_take_every_documented_shape(value: Any, expected: Any) -> None:
    assert normalize_args(value, "args[0]") == expected


def test_task_names_are_the_same_on_every_backend() -> None:
    assert task_name("mytasks:charge_card") == "mytasks.charge_card"


# -- scenario files -------------------------------------------------------------------------------------------
def _file(path: Path, text: str) -> Path:
    scenario = path / "s.toml"
    scenario.write_text(text)
    return scenario


def test_a_scenario_file_names_a_task_args_and_requirements(code: Path) -> None:
    (code / "reqs.txt").write_text("httpx\n")
    s = load_file(_file(code, f'task = "{_mod(code)}:work"\nargs = [[1], [2, 3]]\nrequirements = "reqs.txt"\n'
                              "jobs = 3\n"))
    assert s.user_task and s.path == str(code.resolve()) and s.requirements == str((code / "reqs.txt").resolve())
    assert [s.job_args(i) for i in range(3)] == [((1,), {}), ((2, 3), {}), ((1,), {})]
    assert expectations(s, "run") == [None, None, None]  # nothing planned for the user's own task


def test_an_argument_generator_is_called_with_index_and_seed(code: Path) -> None:
    s = load_file(_file(code, f'task = "{_mod(code)}:work"\nargs = "{_mod(code)}:gen"\nseed = 9\n'))
    assert s.job_args(4) == ((4, 9), {})


def test_without_args_each_job_gets_its_index(code: Path) -> None:
    s = load_file(_file(code, f'task = "{_mod(code)}:work"\n'))
    assert s.job_args(2) == ((2,), {})


@pytest.mark.parametrize(("text", "message"), [
    ('task = "nomod:work"\n', "no module 'nomod'"),
    ('task = "x y:z"\n', "module:function"),
    ('task = "{mod}:work"\nargs = []\n', "empty list"),
    ('task = "{mod}:work"\nargs = "not a ref"\n', "list or 'module:function'"),
    ('task = "{mod}:work"\nrequirements = "missing.txt"\n', "no such file"),
    ('task = "work"\nargs = [[1]]\n', "task of your own"),
    ('task = "nope"\n', "module:function"),
])
def test_bad_user_task_keys_are_refused_at_load(code: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_file(_file(code, text.format(mod=_mod(code))))


def test_dotted_exception_names_are_left_to_the_backend_environment(code: Path) -> None:
    # httpx need not exist in the harness's environment: the name is checked where the task is imported.
    s = load_file(_file(code, f'task = "{_mod(code)}:work"\n[policy]\nautoretry_for = ["{_mod(code)}.Flaky", '
                              '"nowhere_pkg.Error", "ConnectionError"]\n'))
    assert s.policy["autoretry_for"][0].endswith(".Flaky")


# -- checks on a literal history of a user task ------------------------------------------------------------
def _user_history() -> list[dict[str, Any]]:
    """Two jobs of a user task with no plan: j1 fails once and succeeds, j2 fails for good (non-retryable)."""
    return [header(task="mymod:work", planned=False),
            enqueue("j1", 0.0), enqueue("j2", 0.0),
            start("j1", 1, 0.1), attempt("j1", 1, 0.1, 0.2, "retry", "ConnectionError", delay=1.0),
            callback("on_retry", "j1", 1, 0.2),
            start("j1", 2, 1.2), attempt("j1", 2, 1.2, 1.3, "success"), terminal("j1", "success", 2, 1.3),
            start("j2", 1, 0.1), attempt("j2", 1, 0.1, 0.2, "failure", "ValueError"),
            record("j2", 1, 0.2, exc_type="ValueError"), callback("on_failure", "j2", 1, 0.2),
            terminal("j2", "failure", 1, 0.2), end()]


def test_a_user_task_s_own_failures_are_checked_and_nothing_is_planned() -> None:
    events = _user_history()
    delivery, log = check_delivery(events), check_failure_log(events)
    assert delivery["planned"] is False and delivery["plan_mismatches"] is None
    assert delivery["succeeded"] == 1 and delivery["failed"] == 1 and delivery["valid"]
    assert delivery["under_retries"] == 0 and delivery["non_retryable_retried"] == 0
    assert log["planned"] is False and log["expected_records"] is None
    assert log["missing_records"] == 0 and log["failure_records"] == 1 and log["valid"]
    assert format_value("plan_mismatches", None) == "not planned"
    assert format_value("expected_records", None) == "not planned"


def test_a_user_task_that_gives_up_early_is_still_an_under_retry() -> None:
    events = [e for e in _user_history() if e.get("job_id") != "j1"]
    events.insert(-1, start("j3", 1, 0.1))
    events[1:1] = [enqueue("j3", 0.0)]
    events.insert(-1, attempt("j3", 1, 0.1, 0.2, "failure", "ConnectionError"))
    events.insert(-1, terminal("j3", "failure", 1, 0.2))
    delivery = check_delivery(events)
    assert delivery["under_retries"] == 1 and not delivery["valid"]  # judged against the policy, not a plan


def test_the_verdict_works_unchanged_on_a_user_task() -> None:
    cell = summarize(_user_history())
    assert cell["checks"]["delivery"]["plan_mismatches"] is None
    verdict = cell_verdict({**cell["run"], "checks": cell["checks"]})
    assert verdict["status"] == "pass", verdict
    row = row_verdict("rq", [{**cell["run"], "checks": cell["checks"], "backend": "rq"}], asked=1)
    assert row_sentence(row).startswith("rq honours every contract")

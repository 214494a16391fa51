"""The version matrix without a network or a worker: Welch's test, `--last N` on a literal release list, and the
"Between versions" section on literal results."""

from __future__ import annotations

import functools
import http.server
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.between import between_context, between_versions, regressions
from harness.analysis.stats import holm, t_two_sided_p, welch
from harness.cli import main
from harness.orchestrate.matrix import MatrixError, newest_finals, parse_versions, plan_matrix, pypi_releases
from harness.report.render import _jinja

# -- Welch's test: the values scipy.stats.ttest_ind(b, a, equal_var=False) gives ------------------------------
WIKIPEDIA_A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
WIKIPEDIA_A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


@pytest.mark.parametrize(("a", "b", "t", "df", "p"), [
    (WIKIPEDIA_A1, WIKIPEDIA_A2, 2.455356398286006, 24.988529290231416, 0.021378001462866992),
    ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0], 2.121320343559643, 4.0754716981132075, 0.09991286431180087),
    ([10.0, 11.0], [30.0, 31.5], 22.46535794712178, 1.7422680412371134, 0.003767859119532865),
    ([5.0, 5.0, 5.0], [5.5, 6.5, 6.0], 3.464101615137755, 2.0, 0.07417990022744854),  # one side constant
    ([1.0, 1.1], [float(v) for v in range(50, 63)], 50.819394269582745, 12.050819648713235, 1.975292924120852e-15),
])
def test_welch_matches_scipy(a: list[float], b: list[float], t: float, df: float, p: float) -> None:
    result = welch(a, b)
    assert result is not None
    assert result.t == pytest.approx(t, rel=1e-12)
    assert result.df == pytest.approx(df, rel=1e-12)
    assert result.p == pytest.approx(p, rel=1e-9)


@pytest.mark.parametrize(("t", "df", "p"), [(2.0, 10, 0.07338803477074037), (1.0, 1, 0.5), (0.0, 5, 1.0),
                                            (3.5, 2.5, 0.052345546960320344), (10, 30, 4.575251408229618e-11)])
def test_student_t_two_sided_p(t: float, df: float, p: float) -> None:
    assert t_two_sided_p(t, df) == pytest.approx(p, rel=1e-9)


def test_welch_cannot_be_made_with_one_value_and_is_certain_on_two_constant_samples() -> None:
    assert welch([1.0], [1.0, 2.0]) is None and welch([1.0, 2.0], []) is None
    same, apart = welch([3.0, 3.0], [3.0, 3.0]), welch([3.0, 3.0], [4.0, 4.0, 4.0])
    assert same is not None and same.p == 1.0
    assert apart is not None and apart.p == 0.0 and math.isinf(apart.t) and apart.t > 0


def test_holm_adjusts_as_r_p_adjust_does() -> None:
    # p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") in R: 0.03 0.06 0.06 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


# -- which releases ---------------------------------------------------------------------------------------------
def _files(requires: str | None = None, yanked: bool = False) -> list[dict[str, Any]]:
    return [{"requires_python": requires, "yanked": yanked}]


RELEASES = {"0.9.0": _files(), "0.10.0": _files(), "0.10.1": _files(), "0.11.0b1": _files(), "0.11.0.dev3": _files(),
            "0.9.1": _files(yanked=True), "0.12.0": _files(">=3.99"), "0.10.2": [], "not-a-version": _files(),
            "0.10.1.post1": _files(">=3.8")}


def test_last_n_are_the_newest_final_installable_releases_in_pep440_order() -> None:
    # 0.10 is newer than 0.9 (not by string); pre-, dev-, yanked, file-less releases and releases this
    # Python cannot install are skipped; a post-release is a final release.
    assert newest_finals(RELEASES, 3, python="3.11.7") == ["0.10.0", "0.10.1", "0.10.1.post1"]
    assert newest_finals(RELEASES, 10, python="3.11.7") == ["0.9.0", "0.10.0", "0.10.1", "0.10.1.post1"]
    assert newest_finals(RELEASES, 2, python="3.99.0")[-1] == "0.12.0"


def test_plan_matrix_resolves_last_from_an_injected_list_and_pins_each_release() -> None:
    plan = plan_matrix("arq", last=2, fetch=lambda project: RELEASES if project == "arq" else {}, python="3.11.7")
    assert plan.versions == ("0.10.1", "0.10.1.post1")
    assert plan.labels == ["arq==0.10.1", "arq==0.10.1.post1"]
    celery = plan_matrix("celery", last=2, fetch=lambda project: {"5.6.0": _files(), "5.7.0": _files()}
                         if project == "celery" else {})  # celery[redis] is looked up as celery
    assert celery.labels == ["celery==5.6.0", "celery==5.7.0"]


def test_explicit_versions_are_sorted_and_need_no_network() -> None:
    def offline(project: str) -> Any:
        raise AssertionError("--versions must not fetch")

    assert plan_matrix("rq", versions="2.10.0, ==1.16.2", fetch=offline).versions == ("1.16.2", "2.10.0")
    assert parse_versions("0.26.3,0.25.0") == ("0.25.0", "0.26.3")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"backend": "reference", "versions": "1,2"}, "in-process control"),
    ({"backend": "sidekiq", "versions": "1,2"}, "unknown backend"),
    ({"backend": "arq==0.26.1", "versions": "1,2"}, "name the library alone"),
    ({"backend": "arq"}, "either --last N or --versions"),
    ({"backend": "arq", "versions": "0.26.1"}, "at least two"),
    ({"backend": "arq", "versions": "0.26.*,0.27.0"}, "not a PEP 440 version"),
    ({"backend": "arq", "versions": "0.26.1,0.26.1"}, "given twice"),
    ({"backend": "arq", "versions": "0.26.1,"}, "comma-separated"),
    ({"backend": "arq", "last": 1}, "--last must be >= 2"),
    ({"backend": "arq", "last": 3, "fetch": lambda p: {"1.0a1": _files()}}, "no final release"),
])
def test_bad_matrix_input_is_one_clear_error(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(MatrixError, match=needle):
        plan_matrix(kwargs.pop("backend"), **kwargs)


def test_an_unreachable_index_is_one_clear_error() -> None:
    with pytest.raises(MatrixError, match="cannot list the releases of arq .*--versions"):
        pypi_releases("arq", base="http://127.0.0.1:9/pypi", timeout=2)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[str]:
    """A JSON API on loopback, PyPI's shape, that knows one project: arq."""
    (tmp_path / "arq").mkdir()
    (tmp_path / "arq" / "json").write_text(json.dumps({"info": {"name": "arq"}, "releases": RELEASES}))
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_release_list_is_read_from_the_json_api_and_an_unknown_project_is_one_clear_error(index: str) -> None:
    assert newest_finals(pypi_releases("arq", base=index), 2, python="3.11.7") == ["0.10.1", "0.10.1.post1"]
    with pytest.raises(MatrixError, match="no project 'rq' there"):
        pypi_releases("rq", base=index)


def test_matrix_last_offline_says_so_in_one_line_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RETRYBENCH_PYPI_JSON", "http://127.0.0.1:9/pypi")
    with pytest.raises(SystemExit) as exit_:
        main(["matrix", "-b", "arq", "--last", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("retrybench: error: matrix: cannot list the releases of arq") and "offline?" in err[0]


@pytest.mark.parametrize(("argv", "needle"), [
    (["matrix", "-b", "reference", "--versions", "1.0,2.0"], "in-process control"),
    (["matrix", "-b", "arq", "--versions", "0.27.0,0.28.0", "--repetitions", "1", "--fail-on-regression"],
     "needs --repetitions 2"),
    (["matrix", "-b", "arq", "--versions", "0.27.0,0.28.0", "--repetitions", "0"], "--repetitions must be >= 1"),
])
def test_the_cli_says_bad_input_in_one_line_and_exits_2(argv: list[str], needle: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and needle in err[0] and err[0].startswith("retrybench: error:")


# -- the section, on literal results ----------------------------------------------------------------------------
def _cell(label: str, **summary: float) -> dict[str, Any]:
    return {"scenario": "seed-lesson", "backend": label, "summary": {"valid": True, "complete": True, **summary}}


def _results(reps_new: int = 3) -> dict[str, Any]:
    old = [dict(lateness_p99=0.010, throughput_jobs_s=5.0, attempts=20, jobs=6, latency_p50=0.30),
           dict(lateness_p99=0.011, throughput_jobs_s=5.1, attempts=20, jobs=6, latency_p50=0.40),
           dict(lateness_p99=0.012, throughput_jobs_s=4.9, attempts=20, jobs=6, latency_p50=0.35)]
    new = [dict(lateness_p99=0.500, throughput_jobs_s=8.0, attempts=24, jobs=6, latency_p50=0.36),
           dict(lateness_p99=0.520, throughput_jobs_s=8.2, attempts=24, jobs=6, latency_p50=0.31),
           dict(lateness_p99=0.510, throughput_jobs_s=7.9, attempts=24, jobs=6, latency_p50=0.42)][:reps_new]
    # The newer release is listed first, and its label's pin is wider than the version it ran: the
    # order and the versions come from what the environment recorded.
    cells = [_cell("arq==0.10.*", **v) for v in new] + [_cell("arq==0.9.0", **v) for v in old]
    cells += [_cell("reference", lateness_p99=0.001)] * 3
    env = {"backends": {"arq==0.10.*": {"arq": "0.10.2", "redis": "5.3.1"}, "arq==0.9.0": {"arq": "0.9.0"},
                        "reference": {}}}
    return {"cells": cells, "environment": env}


def test_between_versions_lists_only_changes_beyond_noise_with_direction_size_and_versions() -> None:
    section = between_versions(_results())
    assert section is not None and section["alpha"] == 0.05
    (group,) = section["groups"]  # the control is no release of arq
    assert group["library"] == "arq" and [r["version"] for r in group["releases"]] == ["0.9.0", "0.10.2"]
    (pair,) = group["pairs"]
    assert (pair["old_version"], pair["new_version"], pair["old"], pair["new"]) == \
        ("0.9.0", "0.10.2", "arq==0.9.0", "arq==0.10.*")
    changes = {c["metric"]: c for c in pair["changes"]}
    # latency_p50 moved within its noise, jobs not at all: neither is listed.
    assert set(changes) == {"lateness_p99", "throughput_jobs_s", "attempts"}
    assert pair["tested"] == 4 and pair["identical"] == 1  # jobs: 6 in every run, nothing to test
    late = changes["lateness_p99"]
    assert late["direction"] == "worse" and late["delta"] == pytest.approx(0.499)
    assert late["change_pct"] == pytest.approx(4536.36, rel=1e-4) and late["p"] < 0.05
    assert changes["throughput_jobs_s"]["direction"] == "better"
    assert changes["attempts"]["direction"] == "changed" and changes["attempts"]["p"] == 0.0  # no sense of better
    assert pair["changes"][0]["metric"] == "lateness_p99"  # regressions first
    assert section["tests"] == 4 and late["p"] < late["p_holm"] < 0.05
    (line,) = regressions(section)
    assert line.startswith("arq 0.9.0 → 0.10.2 · seed-lesson · lateness_p99: 11.0 ms → 510.0 ms (+499.0 ms, +4536.4%")


def test_a_change_for_the_worse_that_does_not_hold_after_holm_is_listed_but_is_no_regression() -> None:
    results = _results()
    for cell, p95 in zip(results["cells"][:6], [1.25, 1.35, 1.45, 1.0, 1.1, 1.2], strict=True):
        cell["summary"]["latency_p95"] = p95  # new releases first: 0.25 s slower, p = 0.038 on its own
    section = between_versions(results)
    assert section is not None and section["tests"] == 5
    (pair,) = section["groups"][0]["pairs"]
    slower = next(c for c in pair["changes"] if c["metric"] == "latency_p95")
    assert slower["direction"] == "worse" and slower["p"] == pytest.approx(0.0376, abs=5e-4)
    assert slower["p_holm"] == pytest.approx(2 * slower["p"]) and slower["p_holm"] > 0.05
    assert pair["regressions"] == 1 and len(regressions(section)) == 1  # lateness_p99 only
    (group,) = between_context(section)
    rows = {r["metric"]: r for r in group["pairs"][0]["rows"]}
    assert rows["latency_p95"]["direction"] == "worse" and not rows["latency_p95"]["bad"]
    assert rows["lateness_p99"]["bad"]
    assert "2 for the worse; 1 regression(s) after Holm's correction over the section's 5 tests" in \
        group["pairs"][0]["note"]


@pytest.mark.parametrize(("new_fails", "gated"), [(["timing", "delivery"], True), (["timing"], False)])
def test_a_contract_the_newer_release_breaks_is_shown_and_gates_unless_it_is_timing(new_fails: list[str],
                                                                                  gated: bool) -> None:
    results = _results()
    results["verdicts"] = {"seed-lesson": {"rows": {"arq==0.9.0": {"status": "pass", "failed": []},
                                                    "arq==0.10.*": {"status": "fail", "failed": new_fails}}}}
    section = between_versions(results)
    (pair,) = section["groups"][0]["pairs"]  # type: ignore[index]
    assert pair["broken"] == sorted(new_fails) and pair["regressions"] == 1 + gated
    (group,) = between_context(section)
    assert f"; verdict: pass → fails {', '.join(new_fails)} ⚠ (newly broken: " in group["pairs"][0]["note"]
    lines = regressions(section)
    assert len(lines) == 1 + gated
    if gated:
        assert lines[1] == ("arq 0.9.0 → 0.10.2 · seed-lesson: breaks the delivery contract "
                            "(pass → fails timing, delivery)")


def test_with_one_repetition_the_section_says_the_test_cannot_be_made() -> None:
    section = between_versions(_results(reps_new=1))
    assert section is not None
    (pair,) = section["groups"][0]["pairs"]
    assert pair["changes"] == [] and pair["tested"] == 0
    assert "arq==0.10.* has 1 repetition" in pair["untestable"]
    assert regressions(section) == []
    (group,) = between_context(section)
    assert group["pairs"][0]["note"].startswith("the test cannot be made")


def test_a_run_without_two_releases_of_one_library_has_no_section() -> None:
    results = _results()
    results["cells"] = [c for c in results["cells"] if c["backend"] != "arq==0.9.0"]
    assert between_versions(results) is None
    assert between_versions({"cells": [_cell("rq"), _cell("arq"), _cell("celery")]}) is None


def test_the_report_templates_render_the_section() -> None:
    ctx = {"run_id": "r1", "partial": False, "repeat": 3, "environment": {}, "sections": [], "verdicts": [],
           "overall": [], "problems": [], "incomplete": [], "reliability": None, "sweeps": [], "startup": None,
           "metrics": [], "clocks": [], "between": between_context(between_versions(_results()))}
    md = _jinja().get_template("report.md.j2").render(**ctx)
    assert "## Between versions" in md and "**arq · seed-lesson** (releases: 0.9.0 (3 runs), 0.10.2 (3 runs))" in md
    assert "| `lateness_p99` | 11.0 ms | 510.0 ms | +499.0 ms, +4536.4% | ⚠ **worse** |" in md
    assert ("3 of 4 metric(s) changed beyond noise, 1 for the worse; 1 regression(s) after Holm's correction over the "
            "section's 4 tests; 1 more had one value in every run of both") in md
    env = _jinja()
    env.autoescape = True
    html = env.get_template("report.html.j2").render(**ctx, data_uri={})
    assert 'id="between-versions"' in html and "0.9.0 → 0.10.2" in html
    without = _jinja().get_template("report.md.j2").render(**{**ctx, "between": []})
    assert "Between versions" not in without

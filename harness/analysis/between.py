"""The report's "Between versions" section: what changed from one release of a library to the next.

Whenever a run holds two or more releases of one library (``retrybench matrix``, or ``run -b arq==0.25.0
-b arq==0.26.1``), every metric of the registry that has per-repetition values is tested, release by
consecutive release, with Welch's t-test over the repetitions (two-sided, p < 0.05: the 95 % level
``compare`` judges noise at). Only changes beyond noise are listed, with their direction from the
metric's own sense in the registry. Tested at 5 % each, forty metrics would show two changes by chance
alone: each change also carries its Holm-adjusted p over every test of the section, and only a change
for the worse that holds after it is a *regression* (what ``matrix --fail-on-regression`` fails on), as is
a delivery or failure-log contract the newer release breaks. Pure over ``results.json``: ``retrybench
report`` recomputes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from harness.analysis.compare import _direction, repetitions
from harness.analysis.metrics import METRICS, format_value
from harness.analysis.stats import Welch, holm, welch
from harness.analysis.verdicts import FAIL, PASS, TITLES
from implementations.backends import REGISTRY, base_name, is_control

ALPHA = 0.05
TEST = ("Welch's t-test (two-sided, unequal variances) over each release's repetitions, p < 0.05; a regression "
        "also holds after Holm's correction over every test of the section")
_SKIP = ("valid", "complete")  # yes/no, judged by the verdicts
# A contract the newer release breaks is a regression when it is about correctness (a lost, duplicated or
# unrecorded job is not noise); timing's verdict moves with the machine's load, so its metrics decide instead.
GATED_CONTRACTS = ("delivery", "failure_log")


@dataclass(frozen=True)
class Change:
    """One metric that moved beyond noise between two consecutive releases (means over the repetitions)."""

    metric: str
    old_mean: float
    new_mean: float
    delta: float
    change_pct: float | None  # None when the old mean is 0
    direction: str  # better / worse / changed (the registry gives the metric no direction)
    p: float
    p_holm: float  # adjusted over every test of the section: below ALPHA, the change is not chance
    n_old: int
    n_new: int

    @property
    def regression(self) -> bool:
        return self.direction == "worse" and self.p_holm < ALPHA


@dataclass
class Pair:
    """Two consecutive releases in one scenario: what was tested, what changed, or why nothing could be."""

    old: str  # backend labels, e.g. arq==0.25.0
    new: str
    old_version: str
    new_version: str
    tested: int = 0  # metrics with two or more values on both sides, not all one value
    identical: int = 0  # metrics with one value in every run of both releases: nothing to test
    untestable: str | None = None  # why the test could not be made at all
    changes: list[Change] = field(default_factory=list)
    old_verdict: str | None = None  # the rows' verdicts (pass, fails timing, ...): shown when they differ
    new_verdict: str | None = None
    broken: list[str] = field(default_factory=list)  # contracts the newer release fails and the older did not


def release_of(label: str, environment: Mapping[str, Any]) -> str:
    """The library version a backend label ran: as the environment recorded it, else the label's ``==`` pin."""
    backend = base_name(label)
    recorded = REGISTRY[backend].recorded if backend in REGISTRY else ()
    versions = (environment.get("backends") or {}).get(label) or {}
    if recorded and versions.get(recorded[0]):
        return str(versions[recorded[0]])
    return label.partition("==")[2] or label


def _order(version: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def releases(results: Mapping[str, Any]) -> dict[tuple[str, str], list[tuple[str, str, int]]]:
    """Per (scenario, library) with two releases or more: ``(label, version, cells)`` oldest first."""
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for cell in results.get("cells", []):
        cells[(cell["scenario"], cell["backend"])] += 1
    groups: dict[tuple[str, str], list[tuple[str, str, int]]] = defaultdict(list)
    environment = results.get("environment") or {}
    for (scenario, label), n in cells.items():
        if label and not is_control(label) and base_name(label) in REGISTRY:
            groups[(scenario, base_name(label))].append((label, release_of(label, environment), n))
    return {k: sorted(v, key=lambda r: _order(r[1])) for k, v in sorted(groups.items()) if len(v) > 1}


def verdict_of(results: Mapping[str, Any], scenario: str, label: str) -> tuple[str | None, set[str] | None]:
    """A row's verdict as text, and the contracts it fails (None unless judged: pass or fail)."""
    row = (((results.get("verdicts") or {}).get(scenario) or {}).get("rows") or {}).get(label)
    if not row:
        return None, None
    if row.get("status") == FAIL:
        failed = list(row.get("failed", ()))
        return "fails " + ", ".join(TITLES.get(c, c) for c in failed), set(failed)
    return str(row.get("status")), set() if row.get("status") == PASS else None


def welch_per_metric(old: Mapping[str, list[float]], new: Mapping[str, list[float]]) -> tuple[dict[str, Welch], int]:
    """Welch's test of every registry metric that both releases measured in at least two repetitions, and how
    many of those had one value in every run of both (nothing moved: no test, and no place in Holm's family)."""
    out, identical = {}, 0
    for metric in METRICS:
        xs, ys = old.get(metric, []), new.get(metric, [])
        result = welch(xs, ys) if metric not in _SKIP else None
        if result is not None and len(set(xs) | set(ys)) == 1:
            identical += 1
        elif result is not None:
            out[metric] = result
    return out, identical


def _change(metric: str, r: Welch, p_holm: float) -> Change:
    delta = r.mean_b - r.mean_a
    way = _direction(metric, r.mean_a, r.mean_b)
    return Change(metric, r.mean_a, r.mean_b, delta, delta / abs(r.mean_a) * 100 if r.mean_a else None,
                  way if way in ("better", "worse") else "changed", r.p, p_holm, r.n_a, r.n_b)


def between_versions(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The section as data for results.json; None when the run holds no two releases of one library."""
    groups = releases(results)
    if not groups:
        return None
    values = repetitions(results)
    built: list[tuple[str, str, list[tuple[str, str, int]], list[tuple[Pair, dict[str, Welch]]]]] = []
    for (scenario, library), rows in groups.items():
        pairs = []
        for (old, old_v, n_old), (new, new_v, n_new) in zip(rows, rows[1:], strict=False):
            pair, tests = Pair(old, new, old_v, new_v), dict[str, Welch]()
            (pair.old_verdict, was), (pair.new_verdict, now) = (verdict_of(results, scenario, old),
                                                                verdict_of(results, scenario, new))
            pair.broken = sorted(now - was) if was is not None and now is not None else []
            if min(n_old, n_new) < 2:
                few = old if n_old < 2 else new
                pair.untestable = (f"{few} has {min(n_old, n_new)} repetition; Welch's test needs at least 2 per "
                                   "release (--repetitions 3 or more): no change can be told from noise")
            else:
                tests, pair.identical = welch_per_metric(values.get((scenario, old), {}),
                                                         values.get((scenario, new), {}))
                pair.tested = len(tests)
            pairs.append((pair, tests))
        built.append((scenario, library, rows, pairs))
    every = [(pair, metric, r) for *_, pairs in built for pair, tests in pairs for metric, r in tests.items()]
    for (pair, metric, r), p_holm in zip(every, holm([r.p for _, _, r in every]), strict=True):
        if r.p < ALPHA:
            pair.changes.append(_change(metric, r, p_holm))
    out = []
    for scenario, library, rows, pairs in built:
        for pair, _ in pairs:
            pair.changes.sort(key=lambda c: (not c.regression, c.direction != "worse", c.p))
        out.append({"scenario": scenario, "library": library,
                    "releases": [{"label": label, "version": v, "n": n} for label, v, n in rows],
                    "pairs": [asdict(pair) | {"regressions": sum(c.regression for c in pair.changes)
                                              + sum(c in GATED_CONTRACTS for c in pair.broken)} for pair, _ in pairs]})
    return {"test": TEST, "alpha": ALPHA, "tests": len(every), "groups": out}


def regressions(section: Mapping[str, Any] | None) -> list[str]:
    """One line per change for the worse that holds after Holm's correction, and per delivery or failure-log
    contract a newer release breaks: what ``matrix --fail-on-regression`` fails on."""
    lines = []
    for group in (section or {}).get("groups", []):
        for pair in group["pairs"]:
            for c in pair["changes"]:
                if _regression(c):
                    lines.append(f"{group['library']} {pair['old_version']} → {pair['new_version']} · "
                                 f"{group['scenario']} · {c['metric']}: {_fmt(c['metric'], c['old_mean'])} → "
                                 f"{_fmt(c['metric'], c['new_mean'])} ({_size(c)}, p = {c['p']:.2g}, "
                                 f"Holm {c['p_holm']:.2g})")
            if hard := [c for c in pair.get("broken", ()) if c in GATED_CONTRACTS]:
                lines.append(f"{group['library']} {pair['old_version']} → {pair['new_version']} · {group['scenario']}: "
                             f"breaks the {', '.join(TITLES.get(c, c) for c in hard)} contract "
                             f"({pair['old_verdict']} → {pair['new_verdict']})")
    return lines


def _regression(c: Mapping[str, Any]) -> bool:
    return bool(c["direction"] == "worse" and c["p_holm"] < ALPHA)


def _fmt(metric: str, value: float) -> str:
    return format_value(metric, value, with_unit=True)


def _size(c: Mapping[str, Any]) -> str:
    sign = "+" if c["delta"] > 0 else "-" if c["delta"] < 0 else "±"
    absolute = sign + _fmt(c["metric"], abs(c["delta"]))
    return absolute + ("" if c["change_pct"] is None else f", {c['change_pct']:+.1f}%")


def between_context(section: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """What the report templates show: per scenario and library, per pair, its rows as text."""
    out = []
    tests = (section or {}).get("tests", 0)
    for group in (section or {}).get("groups", []):
        pairs = []
        for pair in group["pairs"]:
            rows = [{"metric": c["metric"], "old": _fmt(c["metric"], c["old_mean"]),
                     "new": _fmt(c["metric"], c["new_mean"]), "size": _size(c), "direction": c["direction"],
                     "bad": _regression(c), "p": f"{c['p']:.2g}", "p_holm": f"{c['p_holm']:.2g}",
                     "n": f"{c['n_old']} / {c['n_new']}"} for c in pair["changes"]]
            same = f"; {pair['identical']} more had one value in every run of both" if pair.get("identical") else ""
            if pair["untestable"]:
                note = f"the test cannot be made: {pair['untestable']}"
            elif not rows:
                note = f"no change beyond noise in {pair['tested']} metric(s) tested"
            else:
                worse = sum(r["direction"] == "worse" for r in rows)
                bad = sum(r["bad"] for r in rows)
                note = (f"{len(rows)} of {pair['tested']} metric(s) changed beyond noise, {worse} for the worse; "
                        f"{bad} regression(s) after Holm's correction over the section's {tests} tests")
            note += "" if pair["untestable"] else same
            if pair.get("old_verdict") != pair.get("new_verdict"):
                note += f"; verdict: {pair.get('old_verdict')} → {pair.get('new_verdict')}"
                if pair.get("broken"):
                    note += " ⚠ (newly broken: " + ", ".join(TITLES.get(c, c) for c in pair["broken"]) + ")"
            pairs.append({"title": f"{pair['old_version']} → {pair['new_version']}", "old": pair["old"],
                          "new": pair["new"], "note": note, "rows": rows})
        text = ", ".join(f"{r['version']} ({r['n']} run{'s' if r['n'] != 1 else ''})" for r in group["releases"])
        out.append({"scenario": group["scenario"], "library": group["library"], "releases": text,
                    "pairs": pairs})
    return out


def between_lines(section: Mapping[str, Any] | None) -> list[str]:
    """The section as plain lines for the terminal."""
    lines = []
    for g in between_context(section):
        for p in g["pairs"]:
            lines.append(f"{g['library']} {p['title']} · {g['scenario']}: {p['note']}")
            lines.extend(f"  {r['metric']}: {r['old']} → {r['new']} ({r['size']}) {r['direction']}, p = {r['p']} "
                         f"(Holm {r['p_holm']}){' REGRESSION' if r['bad'] else ''}" for r in p["rows"])
    return lines

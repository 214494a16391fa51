"""``retrybench compare BASE NEW``: what changed per backend × scenario × metric, and whether it is noise.

Like pyperf, a change is *significant* only when a two-sample t-test over the repetitions says so
(95 %); with a single run on either side significance is unknown and says so. Thresholds
(``--fail-on lateness_p95:+10%``) turn a comparison into a CI gate.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.metrics import METRICS, format_value
from harness.analysis.stats import t95

ALIASES = {"retry_lateness_" + k.removeprefix("lateness_"): k for k in METRICS if k.startswith("lateness_")}
_ENV_KEYS = ("python", "cpu_model", "cpu_count", "os")


class CompareError(ValueError):
    """Two results that cannot be compared."""


@dataclass(frozen=True)
class Threshold:
    metric: str
    sign: str  # "+" or "-": the direction of change that fails
    amount: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> Threshold:
        m = re.fullmatch(r"\s*([a-z0-9_]+)\s*:\s*([+-])\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", text)
        if not m:
            raise CompareError(f"--fail-on {text!r}: expected METRIC:+N% or METRIC:-N (e.g. lateness_p95:+10%)")
        name = ALIASES.get(m.group(1), m.group(1))
        if name not in METRICS or name in ("valid", "complete"):
            raise CompareError(f"--fail-on {text!r}: unknown metric {m.group(1)!r} "
                               f"(known: {', '.join(n for n in METRICS if n not in ('valid', 'complete'))})")
        return cls(name, m.group(2), float(m.group(3)), bool(m.group(4)))

    def crossed(self, base: float | None, new: float | None) -> bool:
        if base is None or new is None:
            return False
        delta = new - base
        if self.relative:
            if base == 0:
                return delta != 0 and (delta > 0) == (self.sign == "+")
            change = delta / abs(base) * 100
        else:
            change = delta * METRICS[self.metric].scale  # absolute amounts are in the unit tables show
        return change > self.amount if self.sign == "+" else change < -self.amount

    def __str__(self) -> str:
        unit = "%" if self.relative else f" {METRICS[self.metric].unit}".rstrip()
        return f"{self.metric}:{self.sign}{self.amount:g}{unit}"


@dataclass
class Row:
    scenario: str
    backend: str
    metric: str
    base: float | None
    new: float | None
    change_pct: float | None
    direction: str  # better / worse / same / -
    significant: bool | None  # None: fewer than two repetitions on a side
    failed: list[str] = field(default_factory=list)


def repetitions(results: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Per (scenario, backend): every numeric summary value, one per repetition."""
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for cell in results.get("cells", []):
        per = out.setdefault((cell["scenario"], cell["backend"]), {})
        for name, value in (cell.get("summary") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                per.setdefault(name, []).append(float(value))
    return out


def significant(a: list[float], b: list[float]) -> bool | None:
    """Welch's t-test at 95 %; None when either side has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a), statistics.variance(b)
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    se = math.sqrt(va / len(a) + vb / len(b))
    if se == 0:
        return ma != mb
    df_num = (va / len(a) + vb / len(b)) ** 2
    df_den = sum((v / n) ** 2 / (n - 1) for v, n in ((va, len(a)), (vb, len(b))) if v)
    df = max(1, int(df_num / df_den)) if df_den else len(a) + len(b) - 2
    return abs(ma - mb) / se > t95(df)


def _direction(metric: str, base: float | None, new: float | None) -> str:
    better = METRICS[metric].better
    if base is None or new is None:
        return "-"
    if new == base:
        return "same"
    if better is None:
        return "-"
    if metric.startswith("lateness"):
        return "better" if abs(new) < abs(base) else "worse"
    return "better" if (new < base) == (better == "lower") else "worse"


def environment_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    eb, en = base.get("environment", {}), new.get("environment", {})
    diffs = [f"{k}: {eb.get(k)} → {en.get(k)}" for k in _ENV_KEYS if eb.get(k) != en.get(k)]
    rb, rn = (eb.get("redis") or {}).get("version"), (en.get("redis") or {}).get("version")
    if rb != rn:
        diffs.append(f"redis: {rb} → {rn}")
    for backend in sorted(set(eb.get("backends", {})) | set(en.get("backends", {}))):
        vb, vn = eb.get("backends", {}).get(backend), en.get("backends", {}).get(backend)
        if vb != vn and vb is not None and vn is not None:
            diffs.append(f"{backend}: {vb} → {vn}")
    return diffs


def compare(base: dict[str, Any], new: dict[str, Any], *, thresholds: list[Threshold] = (),  # type: ignore[assignment]
            fail_on_invalid: bool = False, metrics: list[str] | None = None) -> tuple[list[Row], list[str]]:
    """Rows for every (scenario, backend, metric) in both results, and the reasons to fail (empty: pass)."""
    sb, sn = base.get("scenarios", {}), new.get("scenarios", {})
    common = sorted(set(sb) & set(sn))
    if not common:
        raise CompareError(f"no scenario in common: base has {', '.join(sorted(sb)) or 'none'}, "
                           f"new has {', '.join(sorted(sn)) or 'none'}")
    for name in common:
        strip = ("description", "jobs", "workers", "concurrency", "repeat")
        a = {k: v for k, v in sb[name].items() if k not in strip}
        b = {k: v for k, v in sn[name].items() if k not in strip}
        if a != b:
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise CompareError(f"scenario {name!r} differs between the runs ({', '.join(keys)}): not comparable")
    vb, vn = repetitions(base), repetitions(new)
    names = metrics or [n for n in METRICS if METRICS[n].better is not None and n not in ("valid", "complete")]
    rows: list[Row] = []
    failures = missing(base, new, vb, vn, names)
    for key in sorted(set(vb) & set(vn)):
        if key[0] not in common:
            continue
        for metric in names:
            xs, ys = vb[key].get(metric, []), vn[key].get(metric, [])
            ma = statistics.median(xs) if xs else None
            mb = statistics.median(ys) if ys else None
            change = ((mb - ma) / abs(ma) * 100) if ma is not None and ma != 0 and mb is not None else None
            row = Row(key[0], key[1], metric, ma, mb, change, _direction(metric, ma, mb), significant(xs, ys))
            for t in thresholds:
                # A crossing that the repetitions show to be noise does not fail the gate.
                if t.metric == metric and t.crossed(ma, mb) and row.significant is not False:
                    row.failed.append(str(t))
                    failures.append(f"{key[1]} · {key[0]} · {metric}: {format_value(metric, ma, with_unit=True)} → "
                                    f"{format_value(metric, mb, with_unit=True)} crosses {t}")
            rows.append(row)
        if fail_on_invalid:
            was = all(c["summary"].get("valid") for c in base["cells"] if (c["scenario"], c["backend"]) == key)
            now = all(c["summary"].get("valid") for c in new["cells"] if (c["scenario"], c["backend"]) == key)
            if was and not now:
                failures.append(f"{key[1]} · {key[0]}: valid in BASE, invalid in NEW")
    return rows, failures


def missing(base: Mapping[str, Any], new: Mapping[str, Any], vb: Mapping[tuple[str, str], Any],
            vn: Mapping[tuple[str, str], Any], names: list[str]) -> list[str]:
    """What BASE measured and NEW does not: a scenario, a backend in a scenario, or a metric of a row. A gate
    that compared only what both have would pass a NEW run that dropped a failing backend."""
    out = [f"NEW lacks scenario {s!r}" for s in sorted(set(base.get("scenarios", {})) - set(new.get("scenarios", {})))]
    for key in sorted(set(vb) - set(vn)):
        if key[0] in new.get("scenarios", {}):
            out.append(f"NEW lacks backend {key[1]!r} in scenario {key[0]!r}")
    for key in sorted(set(vb) & set(vn)):
        gone = [m for m in names if vb[key].get(m) and not vn[key].get(m)]
        if gone:
            out.append(f"NEW lacks metric(s) {', '.join(gone)} for {key[1]} · {key[0]}")
    return out


def markdown(rows: list[Row], *, only_changed: bool = True) -> str:
    lines = ["| scenario | backend | metric | base | new | change | direction | significant |",
             "| --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        if only_changed and r.direction in ("same", "-") and not r.failed:
            continue
        sig = {True: "yes", False: "no (noise)", None: "n/a (1 run)"}[r.significant]
        change = "-" if r.change_pct is None else f"{r.change_pct:+.1f}%"
        flag = " ⚠ " + ", ".join(r.failed) if r.failed else ""
        lines.append(f"| {r.scenario} | {r.backend} | `{r.metric}` | {format_value(r.metric, r.base, with_unit=True)} "
                     f"| {format_value(r.metric, r.new, with_unit=True)} | {change} | {r.direction}{flag} | {sig} |")
    return "\n".join(lines)

"""Small statistics for repeated runs: Student's t, Welch's test with its p-value, the paired ratio of two settings.

Pure functions of lists of numbers; ``compare`` and the overhead verdict use them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 95 % critical values of Student's t by degrees of freedom. A df between two entries takes the
# smaller df's value, which is the larger t: an interval that is, if anything, a little too wide.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 22: 2.074, 25: 2.060, 30: 2.042, 40: 2.021, 50: 2.009, 60: 2.000, 80: 1.990, 100: 1.984,
        120: 1.980}


def t95(df: int) -> float:
    """The two-sided 95 % critical value of Student's t with ``df`` degrees of freedom (df ≥ 1)."""
    return next(t for d, t in sorted(_T95.items(), reverse=True) if max(df, 1) >= d)


@dataclass(frozen=True)
class PairedRatio:
    """``a / b`` over paired runs: the geometric mean of the per-pair ratios and its 95 % interval."""

    pairs: int
    ratio: float
    low: float | None  # None with fewer than two pairs: no interval
    high: float | None


def paired_ratio(pairs: Sequence[tuple[float, float]]) -> PairedRatio | None:
    """The ratio of ``a`` to ``b`` where each pair ran side by side (one repetition of each).

    Each pair is one log-ratio, so what drifts from repetition to repetition (the machine's load, a noisy
    neighbour) cancels within the pair; the interval is the t-interval of the mean log-ratio. None when no
    pair has two positive values.
    """
    logs = [math.log(a / b) for a, b in pairs if a > 0 and b > 0]
    if not logs:
        return None
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return PairedRatio(1, math.exp(mean), None, None)
    half = t95(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return PairedRatio(len(logs), math.exp(mean), math.exp(mean - half), math.exp(mean + half))


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of two samples: ``b`` against ``a``."""

    mean_a: float
    mean_b: float
    t: float  # (mean_b - mean_a) / standard error; ±inf when both samples are constant and differ
    df: float  # Welch–Satterthwaite degrees of freedom
    p: float  # two-sided
    n_a: int
    n_b: int


def welch(a: Sequence[float], b: Sequence[float]) -> Welch | None:
    """Welch's t-test, two-sided, with its exact p-value (Student's t with fractional df, as
    ``scipy.stats.ttest_ind(a, b, equal_var=False)``). None when either side has fewer than two values:
    the test cannot be made. Two constant samples differ for certain when their means do (p = 0)."""
    if len(a) < 2 or len(b) < 2:
        return None
    na, nb = len(a), len(b)
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    qa, qb = statistics.variance(a) / na, statistics.variance(b) / nb
    se2 = qa + qb
    if se2 == 0:
        same = ma == mb
        t = 0.0 if same else math.copysign(math.inf, mb - ma)
        return Welch(ma, mb, t, na + nb - 2, 1.0 if same else 0.0, na, nb)
    t = (mb - ma) / math.sqrt(se2)
    df = se2**2 / sum(q**2 / (n - 1) for q, n in ((qa, na), (qb, nb)) if q)
    return Welch(ma, mb, t, df, t_two_sided_p(t, df), na, nb)


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` (> 0, fractional allowed) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return min(1.0, max(0.0, _betai(df / 2, 0.5, df / (df + t * t))))


def _betai(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes, 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, by the modified Lentz method."""
    tiny = 1e-300

    def clamp(v: float) -> float:
        return v if abs(v) >= tiny else tiny

    c, d = 1.0, 1 / clamp(1 - (a + b) * x / (a + 1))
    h = d
    for m in range(1, 301):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((a - 1 + m2) * (a + m2)), -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1 + m2))):
            d = 1 / clamp(1 + aa * d)
            c = clamp(1 + aa / c)
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def holm(ps: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: rejecting those below α keeps the chance of any
    false rejection among all of them at α (family-wise), whatever their dependence."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out = [1.0] * len(ps)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out

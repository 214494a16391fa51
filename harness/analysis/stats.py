"""Small statistics for repeated runs: Student's t and the paired ratio of two settings.

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

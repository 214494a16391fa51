"""What recording the history costs: a sweep over ``record_history`` read as a paired experiment.

Repetition r of such a sweep runs the history on and off back to back (in alternating order, see
``runner.counterbalanced``), so each backend's cost is estimated from the per-repetition ratios, which
cancels what drifts between repetitions on a shared machine, and judged against a target by its 95 %
interval rather than by its point estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.analysis.compare import significant
from harness.analysis.stats import paired_ratio
from harness.plan.sweep import label

OVERHEAD_TARGET_PCT = 5.0  # issue #7: recording may cost at most this share of throughput on any backend
# CPU per job: inside the measured window (driver, workers and the Redis server) where the history has it,
# else the totals of the whole cell (start-up and shutdown included), as older results recorded them.
_CPU_WINDOW = ("window_driver_cpu_ms_per_job", "window_worker_cpu_ms_per_job", "window_redis_cpu_ms_per_job")
_CPU_CELL = ("driver_cpu_ms_per_job", "worker_cpu_ms_per_job")
_PARTS = ("driver", "worker", "redis")


def overhead(rows: Sequence[Mapping[str, Any]], *, target_pct: float = OVERHEAD_TARGET_PCT) -> list[dict[str, Any]]:
    """Per backend of a sweep over ``record_history`` (rows as ``sweep.sweeps`` gives them), and per
    combination of whatever else the sweep varies (``settings``, e.g. ``{"concurrency": 2}``; ``label``
    names the row, the backend alone when nothing else varies): driver-seen jobs/s with the history on and
    off (medians) and the share of throughput recording costs.

    ``overhead_pct`` is ``1 - on/off`` from the paired repetitions (``stats.paired_ratio``), with its 95 %
    interval ``low_pct``..``high_pct``; ``verdict`` against ``target_pct``: ``within`` (the whole interval
    is at or below it), ``over`` (the whole interval above), ``unresolved`` (the repetitions cannot tell),
    None (a single pair). ``significant``: the interval excludes zero (Welch's t-test when no repetition
    can be paired). ``cpu_pct``: the same for CPU per job, more is a cost: inside the measured window, of the
    driver, the workers and the Redis server together (``cpu_window``), or, for results recorded before the
    window was, of the driver and workers over the whole cell.
    """
    # (backend, the other settings' label) -> (those settings, {history on?: row}); a label, not the
    # settings, is the key: a swept value may be a list
    pairs: dict[tuple[str, str], tuple[dict[str, Any], dict[bool, Mapping[str, Any]]]] = {}
    for r in rows:
        if "record_history" in r["settings"] and isinstance(r["metrics"].get("wall_throughput_jobs_s"),
                                                            (int, float)):
            others = {k: x for k, x in r["settings"].items() if k != "record_history"}
            _, sides = pairs.setdefault((r["backend"], label(others)), (others, {}))
            sides[bool(r["settings"]["record_history"])] = r
    out = []
    for (b, others_label), (others, v) in pairs.items():
        if True not in v or False not in v or not v[False]["metrics"]["wall_throughput_jobs_s"] > 0:
            continue
        on, off = (float(v[mode]["metrics"]["wall_throughput_jobs_s"]) for mode in (True, False))
        on_reps, off_reps = ([float(x) for x in (v[mode].get("values") or {}).get("wall_throughput_jobs_s", [])
                              if isinstance(x, (int, float))] for mode in (True, False))
        entry: dict[str, Any] = {"backend": b, "settings": others, "label": f"{b} · {others_label}" if others else b,
                                 "on": on, "off": off, "target_pct": target_pct,
                                 "runs": min(len(on_reps), len(off_reps))}
        cost = _paired_cost(v, ("wall_throughput_jobs_s",), higher_is_cost=False)
        if cost["pairs"]:
            entry.update(overhead_pct=cost["pct"], pairs=cost["pairs"], low_pct=cost["low"], high_pct=cost["high"])
        else:
            entry.update(overhead_pct=(1 - on / off) * 100, pairs=0, low_pct=None, high_pct=None)
        low, high = entry["low_pct"], entry["high_pct"]
        if low is None or high is None:
            entry["verdict"] = None
            entry["significant"] = None if cost["pairs"] else significant(on_reps, off_reps)
        else:
            entry["verdict"] = "within" if high <= target_pct else "over" if low > target_pct else "unresolved"
            entry["significant"] = low > 0 or high < 0
        window = all(isinstance(v[mode]["metrics"].get(_CPU_WINDOW[0]), (int, float)) for mode in (True, False))
        cpu = _paired_cost(v, _CPU_WINDOW if window else _CPU_CELL, higher_is_cost=True)
        entry.update(cpu_pct=cpu["pct"] if cpu["pairs"] else None, cpu_low_pct=cpu["low"], cpu_high_pct=cpu["high"],
                     cpu_window=window)
        prefix = "window_" if window else ""
        entry.update({f"{who}_cpu_ms{suffix}": v[mode]["metrics"].get(f"{prefix}{who}_cpu_ms_per_job")
                      for who in _PARTS for mode, suffix in ((True, ""), (False, "_off"))})
        out.append(entry)
    return out


def _per_repeat(row: Mapping[str, Any], metrics: Sequence[str]) -> dict[int, float]:
    """Repetition → the sum of ``metrics`` in that repetition (the first one must be there)."""
    out = {}
    for k, summary in (row.get("repeats") or {}).items():
        values = [summary.get(m) for m in metrics]
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            out[int(k)] = float(sum(x for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)))
    return out


def _paired_cost(v: Mapping[bool, Mapping[str, Any]], metrics: Sequence[str], *,
                 higher_is_cost: bool) -> dict[str, Any]:
    """The cost of the history, in per cent of the history-off value, from the paired repetitions."""
    on, off = _per_repeat(v[True], metrics), _per_repeat(v[False], metrics)
    r = paired_ratio([(on[k], off[k]) for k in sorted(on.keys() & off.keys())])
    if r is None:
        return {"pairs": 0, "pct": None, "low": None, "high": None}

    def pct(ratio: float) -> float:
        return (ratio - 1) * 100 if higher_is_cost else (1 - ratio) * 100

    bounds = (None, None) if r.low is None or r.high is None else sorted((pct(r.low), pct(r.high)))
    return {"pairs": r.pairs, "pct": pct(r.ratio), "low": bounds[0], "high": bounds[1]}


_VERDICTS = {"within": "within the {t:g}% target", "over": "over the {t:g}% target",
             "unresolved": "cannot tell whether within the {t:g}% target"}


def overhead_note(o: Mapping[str, Any], *, cpu: bool = True) -> str:
    """One ``overhead`` entry in words, e.g.
    "2.4% (95% interval 0.4% to 4.3% over 20 paired runs: within the 5% target)"."""
    if o.get("verdict"):
        verdict = (f"95% interval {o['low_pct']:.1f}% to {o['high_pct']:.1f}% over {o['pairs']} paired runs: "
                   + _VERDICTS[o["verdict"]].format(t=o["target_pct"]))
    elif o["significant"] is None:
        verdict = "one run a side: no interval, no verdict"
    else:
        verdict = ("significant" if o["significant"] else "within run-to-run noise") + f", {o['runs']} runs a side"
    return f"{o['overhead_pct']:.1f}% ({verdict}){_cpu_note(o) if cpu else ''}"


def _cpu_note(o: Mapping[str, Any]) -> str:
    parts = []
    for who in _PARTS:
        on, off = o.get(f"{who}_cpu_ms"), o.get(f"{who}_cpu_ms_off")
        if isinstance(on, (int, float)) and isinstance(off, (int, float)):
            parts.append(f"{'workers' if who == 'worker' else who} {on:.2f} vs {off:.2f}")
    where = " inside the measured window" if o.get("cpu_window") else ""
    text = f"; CPU ms per job{where}, on vs off: {', '.join(parts)}" if parts else ""
    if o.get("cpu_low_pct") is not None:
        text += f" ({o['cpu_pct']:+.1f}%, 95% interval {o['cpu_low_pct']:+.1f}% to {o['cpu_high_pct']:+.1f}%)"
    return text

"""What a dependency outage did: calls that reached the dependency while it was down, circuit-breaker
deferrals, and how long after the outage the first call succeeded. Informational, never a violation:
these are the numbers that compare a run with a breaker to one without."""

from __future__ import annotations

from typing import Any

from harness.analysis.runindex import RunIndex


def outage_windows(idx: RunIndex) -> list[tuple[int, int]]:
    """Absolute [start, end) of every outage rule, in ns, measured from the run's first enqueue."""
    t0 = idx.first_enqueue_ns
    faults = (idx.header or {}).get("faults") or []
    if t0 is None:
        return []
    return [(t0 + int(float(f["start"]) * 1e9), t0 + int((float(f["start"]) + float(f["duration"])) * 1e9))
            for f in faults if f.get("kind") == "outage"]


def check_outage(idx: RunIndex) -> dict[str, Any]:
    windows = outage_windows(idx)
    if not windows:  # most scenarios: nothing to measure, so no list of every attempt either
        return {"deferrals": idx.deferrals, "outage_calls": None, "recovery_s": None, "valid": True}
    starts = [(e.started_ns, e.outcome) for jv in idx.jobs.values() for ends in jv.ends.values() for e in ends]
    calls = sum(1 for ts, _ in starts if ts is not None and any(a <= ts < b for a, b in windows))
    end = max(b for _, b in windows)
    first_ok = min((ts for ts, outcome in starts if ts is not None and ts >= end and outcome == "success"),
                   default=None)
    return {"deferrals": idx.deferrals, "outage_calls": calls,
            "recovery_s": (first_ok - end) / 1e9 if first_ok is not None else None, "valid": True}

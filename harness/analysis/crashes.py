"""What crashes, time limits, poison payloads and a broker restart did to a run: which jobs were hit, which
came back, which were lost, how long recovery took and what the failure record said. Pure over one run's
``RunIndex``; informational (the verdicts on loss and duplicates stay with ``check_delivery``).

An attempt that started and never finished is an *interrupted* attempt: its worker died under it (a
``crash`` fault, a hard time limit, a broker restart). Whether the job then ran again, and how soon, is the
backend's recovery; whether some attempt of it ran to completion twice is a duplicate.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from harness.analysis.history import RunIndex

MAX_EXAMPLES = 5


def _interrupted(starts: list[int], ended: int) -> list[int]:
    # When an attempt ran more than once, the copy that was killed started first: a backend delivers an
    # attempt again only after losing it. So the unfinished starts are the earliest ones.
    return sorted(starts)[: max(0, len(starts) - ended)]


def check_reliability(idx: RunIndex) -> dict[str, Any]:
    """Interrupted attempts and the jobs they hit, time-outs, poison jobs and the broker restart."""
    c = Counter[str]()
    recovery: list[float] = []
    said: Counter[str] = Counter()
    examples: list[str] = []
    refused = idx.refused
    native = idx.native or set()
    for jid, jv in idx.jobs.items():
        for ends in jv.ends.values():
            for a in ends:
                if a.get("fault") == "timeout":
                    c["timed_out_attempts"] += 1
                    c["timeouts_retried"] += a.get("outcome") == "retry"
        if (jv.expected or {}).get("state") == "poison":
            c["poison_jobs"] += 1
            c["poison_recorded"] += bool(jv.records)
            c["poison_failed_natively"] += jid in native
            c["poison_refused"] += jid in refused
            c["poison_unaccounted"] += not (jv.records or jid in native or jid in refused or idx.partial)
            continue
        killed = [k for n, starts in jv.starts.items() for k in _interrupted(starts, len(jv.ends.get(n, ())))]
        if not killed:
            continue
        c["interrupted_attempts"] += len(killed)
        c["crash_hit_jobs"] += 1
        every_start = sorted(s for starts in jv.starts.values() for s in starts)
        for k in killed:
            nxt = next((s for s in every_start if s > k), None)
            if nxt is not None:
                recovery.append((nxt - k) / 1e9)
        wins = [n for n, ends in jv.ends.items() if any(a.get("outcome") == "success" for a in ends)]
        c["duplicated_after_crash"] += (any(len(ends) > 1 for ends in jv.ends.values()) or len(jv.terminals) > 1
                                        or bool(wins) and any(n > min(wins) for n in jv.attempts_seen()))
        if jv.state is not None:
            c["recovered_jobs"] += 1
            if jv.state == "failure":
                c["on_failure_after_crash"] += jv.on_failure > 0
                for r in jv.records[:1]:
                    said[f"{r.get('exc_type') or '?'}: {str(r.get('exc_message') or '')[:80]}"] += 1
        elif jid in native:
            c["failed_natively_after_crash"] += 1  # the library marked it failed; on_failure never ran
        elif not idx.partial:
            # Lost only when the library's stores were searched and hold it nowhere (checks.check_delivery).
            where = idx.whereabouts.get(jid, []) if idx.whereabouts is not None else None
            c["unrecovered_after_crash" if where or where is None else "lost_after_crash"] += 1
            if len(examples) < MAX_EXAMPLES:
                examples.append(f"{jid}: its worker died under it and it never ran again"
                                + (f" (still in {', '.join(where)})" if where else
                                   " (stores not searched)" if where is None else " (in no store)"))
    refused_only = refused - idx.jobs.keys()  # refused at enqueue, so the index holds no job for it
    c["poison_jobs"] += len(refused_only)
    c["poison_refused"] += len(refused_only)
    return {**{k: c[k] for k in _COUNTS}, "recovery_median_s": statistics.median(recovery) if recovery else None,
            "recovery_max_s": max(recovery) if recovery else None,
            "crash_failure_says": said.most_common(1)[0][0] if said else None,
            **_broker(idx), "driver_peak_rss_mb": (idx.end or {}).get("driver_peak_rss_mb"),
            "examples": examples, "valid": True}


_COUNTS = ("interrupted_attempts", "crash_hit_jobs", "recovered_jobs", "lost_after_crash", "unrecovered_after_crash",
           "failed_natively_after_crash", "duplicated_after_crash", "on_failure_after_crash", "timed_out_attempts",
           "timeouts_retried", "poison_jobs", "poison_refused", "poison_failed_natively", "poison_recorded",
           "poison_unaccounted")


def _broker(idx: RunIndex) -> dict[str, Any]:
    """Downtime of a broker restart and the time from its return to the first attempt that finished."""
    restarts = [e for e in idx.broker if e.get("event") == "restart"]
    if not restarts:
        return {"broker_down_s": None, "broker_recovery_s": None}
    down, up = restarts[0].get("down_ns") or 0, restarts[0].get("up_ns") or 0
    finished = (a.get("finished_ns") for jv in idx.jobs.values() for ends in jv.ends.values() for a in ends)
    first = min((f for f in finished if f is not None and f >= up), default=None)
    return {"broker_down_s": (up - down) / 1e9, "broker_recovery_s": (first - up) / 1e9 if first else None}

"""The catalogue of known behaviours a verdict may name as the cause of a failed contract.

Each cause is a library behaviour read from that library's source or documentation, the evidence in a cell's
checks that triggers it, and the sentence it contributes. A verdict never explains a failure in free text:
when no cause of the catalogue matches, it falls back to the generic sentence of the contract, which states
the measured fact without a cause (docs/verdicts.md lists every entry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Checks = Mapping[str, Mapping[str, Any]]


def ms(seconds: float | None) -> str:
    """A duration as people read it: 285 ms, 2.4 s."""
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.0f} ms" if abs(seconds) < 1 else f"{seconds:.1f} s"


def _timing(c: Checks) -> Mapping[str, Any]:
    return c.get("timing") or {}


def _delivery(c: Checks) -> Mapping[str, Any]:
    return c.get("delivery") or {}


def _early(c: Checks) -> str:
    t = _timing(c)
    return f"{t.get('early_retries')} of {t.get('retries_measured')} retries ran up to {ms(t.get('max_early_s'))} early"


def _late(c: Checks) -> str:
    t = _timing(c)
    budget = t.get("late_budget_s")
    allowed = f"budget {ms(budget)}" if budget is not None else "budget 100 ms + 10 % of the delay"
    turn = " past their turn in the queue" if t.get("late_from") == "turn" else ""
    return (f"{t.get('late_retries')} of {t.get('retries_measured')} retries ran up to {ms(t.get('max_late_s'))} "
            f"late{turn} ({allowed})")


def _late_with_delay(c: Checks) -> bool:
    t = _timing(c)
    return int(t.get("late_retries") or 0) - int(t.get("late_no_delay") or 0) > 0


def _off(c: Checks) -> str:
    t = _timing(c)
    return (f"{t.get('off_schedule')} of {t.get('scheduled_delays')} delays it scheduled were off the documented "
            f"formula, by up to {ms(abs(t.get('schedule_deviation_max') or 0))}")


def _held(c: Checks, store: str) -> int:
    return int((_delivery(c).get("unrecovered_in") or {}).get(store, 0))


def _hint(c: Checks, store: str) -> str:
    hint = (_delivery(c).get("recovery_hints") or {}).get(store)
    return f"; back {hint}" if hint else ""


TASKIQ_PENDING = "taskiq stream, pending (delivered, unacked)"


@dataclass(frozen=True)
class Cause:
    """One known behaviour: ``applies`` reads a cell's checks (and its backend and schedule mode)."""

    key: str
    backend: str | None  # the library it belongs to (None: any)
    contract: str  # timing, delivery or failure_log
    evidence: str  # what in the checks triggers it (documentation)
    applies: Callable[[Checks], bool]
    sentence: Callable[[Checks], str]
    native_only: bool = False  # a behaviour of the library's own schedule (--schedule native)


CAUSES: tuple[Cause, ...] = (
    Cause("rq-whole-seconds", "rq", "timing", "early_retries > 0, or (native) delays off the formula, on RQ",
          lambda c: bool(_timing(c).get("early_retries") or _timing(c).get("off_schedule")),
          lambda c: "RQ schedules retries in whole seconds (ScheduledJobRegistry scores are integer Unix times): "
                    + "; ".join(p for p in (_early(c) if _timing(c).get("early_retries") else "",
                                            _off(c) if _timing(c).get("off_schedule") else "") if p)),
    Cause("rq-scheduler-tick", "rq", "timing", "late_retries > 0 on RQ, not all of them asked for with no delay "
          "(a retry with no delay skips RQ's scheduler)",
          _late_with_delay,
          lambda c: f"RQ's scheduler moves due jobs to the queue on a once-a-second tick: {_late(c)}"),
    Cause("rq-retry-at-back", "rq", "timing", "late retries asked for with no delay on RQ, lateness counted from "
          "the delay (late_no_delay > 0)",
          lambda c: bool(_timing(c).get("late_no_delay")) and _timing(c).get("late_from") != "turn",
          lambda c: f"RQ puts a retry with no delay at the back of the queue (Job.retry enqueues it; "
                    f"enqueue_at_front_on_retry is off by default), behind every job queued before it: "
                    f"{_late(c)}"),
    Cause("arq-poll-delay", "arq", "timing", "late_retries > 0 on ARQ",
          lambda c: bool(_timing(c).get("late_retries")),
          lambda c: f"ARQ workers look for due jobs only every poll_delay (0.5 s by default): {_late(c)}"),
    Cause("dramatiq-delay-poll", "dramatiq", "timing", "late_retries > 0 on Dramatiq",
          lambda c: bool(_timing(c).get("late_retries")),
          lambda c: f"Dramatiq's delay-queue consumer checks etas only between polls, which back off to worker_timeout "
                    f"(1 s by default) when idle: {_late(c)}"),
    Cause("taskiq-scheduler-loop", "taskiq", "timing", "late_retries > 0 on taskiq",
          lambda c: bool(_timing(c).get("late_retries")),
          lambda c: f"taskiq's scheduler loop re-reads its schedule source every update_interval and sends due "
                    f"retries on whole-second ticks: {_late(c)}"),
    Cause("saq-schedule-timer", "saq", "timing", "late_retries > 0 on SAQ",
          lambda c: bool(_timing(c).get("late_retries")),
          lambda c: f"SAQ workers move due retries to the queue only on their schedule timer (every 1 s by "
                    f"default, one worker per tick): {_late(c)}"),
    Cause("huey-scheduler-tick", "huey", "timing", "late_retries > 0 on Huey",
          lambda c: bool(_timing(c).get("late_retries")),
          lambda c: f"Huey's consumer moves due retries from its schedule to the queue only on its scheduler's tick "
                    f"(scheduler_interval, 1 s by default and at least 1 s): {_late(c)}"),
    Cause("celery-native-backoff", "celery", "timing", "native schedule on Celery with 0 s or off-formula delays",
          lambda c: bool(_timing(c).get("zero_delays") or _timing(c).get("off_schedule")),
          lambda c: f"Celery computes its own backoff in whole seconds with unseeded full jitter: "
                    f"{_timing(c).get('zero_delays')} of {_timing(c).get('scheduled_delays')} delays were 0 s, "
                    f"{_timing(c).get('off_schedule')} off the documented formula",
          native_only=True),
    Cause("arq-in-progress", "arq", "delivery", "unrecovered jobs in ARQ's in-progress key",
          lambda c: _held(c, "arq in-progress key") > 0,
          lambda c: f"ARQ runs a crashed job again only when its in-progress key expires: "
                    f"{_held(c, 'arq in-progress key')} job(s) still held there at the end"
                    f"{_hint(c, 'arq in-progress key')}"),
    Cause("rq-abandoned", "rq", "delivery", "unrecovered jobs in RQ's StartedJobRegistry",
          lambda c: _held(c, "rq StartedJobRegistry") > 0,
          lambda c: f"RQ moves a dead worker's job out of StartedJobRegistry only when its heartbeat entry "
                    f"expires and a live worker runs maintenance: {_held(c, 'rq StartedJobRegistry')} job(s) "
                    f"still there at the end{_hint(c, 'rq StartedJobRegistry')}"),
    Cause("dramatiq-unacked", "dramatiq", "delivery", "unrecovered jobs unacked by a dead Dramatiq worker",
          lambda c: _held(c, "dramatiq unacked (fetched by a worker)") > 0,
          lambda c: f"Dramatiq's Redis broker puts a worker's unacked messages back only once that worker's heartbeat "
                    f"is heartbeat_timeout (60 s) old and a maintenance of the queue runs (0.1 % of broker commands); "
                    f"a consumer that lost its connection forgets what it had fetched, unacked under its live worker: "
                    f"{_held(c, 'dramatiq unacked (fetched by a worker)')} job(s) still unacked at the end"
                    f"{_hint(c, 'dramatiq unacked (fetched by a worker)')}"),
    Cause("taskiq-pending", "taskiq", "delivery", "unrecovered jobs pending in taskiq's Redis stream",
          lambda c: _held(c, TASKIQ_PENDING) > 0,
          lambda c: f"taskiq's RedisStreamBroker reclaims a dead worker's unacknowledged messages (XAUTOCLAIM) only "
                    f"after idle_timeout (10 min by default) and only after a read that returned new messages: "
                    f"{_held(c, TASKIQ_PENDING)} job(s) still pending at the end{_hint(c, TASKIQ_PENDING)}"),
    Cause("celery-unacked", "celery", "delivery", "unrecovered jobs in kombu's unacked hash",
          lambda c: _held(c, "kombu unacked") > 0,
          lambda c: f"Celery's Redis transport restores a dead worker's messages only after visibility_timeout: "
                    f"{_held(c, 'kombu unacked')} job(s) still unacked at the end{_hint(c, 'kombu unacked')}"),
    Cause("saq-active", "saq", "delivery", "unrecovered jobs in SAQ's active list",
          lambda c: _held(c, "saq active list") > 0,
          lambda c: f"SAQ runs a dead worker's job again only when a worker's sweep (every 60 s by default) finds it "
                    f"stuck, past its timeout or heartbeat: {_held(c, 'saq active list')} job(s) still in the active "
                    f"list at the end{_hint(c, 'saq active list')}"),
    Cause("saq-swept-aborted", "saq", "failure_log", "failed_natively > 0 on SAQ",
          lambda c: bool(_delivery(c).get("failed_natively")),
          lambda c: f"SAQ's sweep ends a stuck job with no attempts left as aborted (error 'swept') without "
                    f"running on_failure: {_delivery(c).get('failed_natively')} job(s) failed natively, outside "
                    f"the failure log"),
    Cause("celery-worker-lost", "celery", "failure_log", "failed_natively > 0 on Celery",
          lambda c: bool(_delivery(c).get("failed_natively")),
          lambda c: f"Celery marks a task whose worker process died FAILURE (WorkerLostError) without running "
                    f"on_failure: {_delivery(c).get('failed_natively')} job(s) failed natively, outside the "
                    f"failure log"),
    Cause("arq-native-final", "arq", "failure_log", "native schedule on ARQ with failures outside the failure log",
          lambda c: bool(_delivery(c).get("failed_natively") or (c.get("failure_log") or {}).get("missing_records")),
          lambda c: "ARQ's last try fails natively: its result keeps JobExecutionFailed instead of the task's error "
                    "and no on_failure runs", native_only=True),
)


def causes_for(backend: str, checks: Checks, contract: str) -> list[str]:
    """The catalogue's sentences for one failed contract of one cell (empty: no known cause applies)."""
    native = _timing(checks).get("schedule") == "native"
    lib = backend.split("==")[0].split("[")[0]
    return [c.sentence(checks) for c in CAUSES
            if c.contract == contract and c.backend in (None, lib) and (native or not c.native_only)
            and c.applies(checks)]


def catalogue() -> list[dict[str, Any]]:
    """The catalogue as data (docs and tests read it)."""
    return [{"key": c.key, "backend": c.backend, "contract": c.contract, "evidence": c.evidence,
             "native_only": c.native_only} for c in CAUSES]

"""The driver's parts that need no running cell: its tally, the history file, deadlines, the baseline's
poll interval, and how it tells a broker that went away from a payload the library refused."""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import redis

from harness.plan.scenarios import Scenario
from implementations.backends import is_in_process
from implementations.recording.jsonline import dumps_lines


@dataclass
class Tally:
    """What the driver has seen of a run so far: it ends when ``terminal`` reaches ``jobs``."""

    jobs: int
    terminal: int = 0
    attempts: int = 0
    terminal_ids: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)
    poison_ids: set[str] = field(default_factory=set)  # never in ``jobs``: no task body ever ends them

    def count(self, events: Sequence[dict[str, Any]]) -> None:
        """Count a drained batch of events."""
        for event in events:
            kind = event.get("type")
            if kind == "attempt":
                self.attempts += 1
            elif kind == "terminal":
                job_id = str(event.get("job_id"))
                # A job that ran twice (at-least-once delivery after a crash) is terminal twice: count jobs, not
                # events, or the run would stop while another job is still to recover.
                if job_id in self.terminal_ids:
                    continue
                self.terminal_ids.add(job_id)
                if job_id in self.poison_ids:
                    continue  # not in ``jobs``: counting it would end the run one job early
                self.terminal += 1
                if event.get("state") == "failure":
                    self.failed_ids.add(job_id)

    @property
    def failed(self) -> int:
        return len(self.failed_ids)


class HistoryWriter:
    """Append-only ``history.jsonl``: every batch written and flushed as it comes, so that what was recorded is
    on disk whatever happens to the driver next."""

    def __init__(self, path: str) -> None:
        self._fh: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed in close()

    def write(self, events: Sequence[dict[str, Any]]) -> None:
        if events:
            self._fh.write(dumps_lines(list(events)))
            self._fh.flush()

    def close(self) -> None:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        finally:
            self._fh.close()


def retry_schedule_s(s: Scenario) -> float:
    """Every retry delay of one job that uses all its retries, in seconds (jitter at its maximum).

    In the native schedule, the longest any of the libraries may take (docs/schedules.md): Celery waits
    ``default_retry_delay`` where the policy has intervals or no backoff, and rounds a backoff up to whole
    seconds (at least 1); RQ reads its interval list from the end; ARQ waits one more delay after the last try
    before it fails the job itself."""
    policy = s.retry_policy()
    scale = policy.time_scale
    if s.schedule != "native":
        return sum(policy.base_delay(n) * scale for n in range(policy.max_retries))
    backoff = policy.retry_backoff
    factor = 0.0 if backoff is False or policy.intervals is not None else (1.0 if backoff is True else float(backoff))

    def longest(n: int) -> float:
        options = [policy.base_delay(n) * scale, max(policy.intervals or (0.0,)) * scale]
        if factor:
            options.append(min(float(int(policy.retry_backoff_max * scale)), max(1, int(factor * scale)) * 2.0 ** n))
        else:
            options.append(policy.default_retry_delay * scale)
        return max(options)

    return sum(longest(n) for n in range(policy.max_retries + 1))


def deadline_s(s: Scenario) -> float:
    """Time after the first enqueue by which every job must be terminal, or it counts as lost."""
    policy = s.retry_policy()
    schedule = retry_schedule_s(s)
    span = s.jobs / s.enqueue_rate if s.enqueue_rate else 0.0
    # Slack covers polling granularity (RQ rounds to whole seconds, ARQ polls every 0.5 s) and work time.
    # ARQ starts at most max_jobs jobs per 0.5 s poll, so a slot may need ~0.125 s per short attempt.
    per_job = (s.work_ms / 1000 + 0.15) * (policy.max_retries + 1) * s.jobs / (s.workers * s.concurrency)
    return span + schedule + policy.max_retries * 1.5 + per_job + 30.0


def settle(app: Any, failed: set[str], timeout: float = 5.0) -> None:
    """Wait (bounded) until the backend's own store lists every failure before stopping its workers.

    Terminal events come from the task wrapper, *before* the library's bookkeeping: RQ moves a job to
    FailedJobRegistry after its on_failure callback, ARQ stores the result after the coroutine raises.
    Stopping workers at once cuts that short (ARQ cancels running jobs on SIGTERM), and the native
    cross-check would then blame the backend for the harness's haste.
    """
    deadline = time.monotonic() + timeout
    while failed:
        native = app.backend.native_failures()
        if not native or failed <= set(native.get("job_ids", ())) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def cpu_snapshot(backend: Any, client: Any) -> dict[str, float | None]:
    """CPU seconds used so far by the driver (and its threads), the worker process groups and the Redis
    server: two snapshots bound what each spent inside the measured window, which the totals at the end
    of a cell (start-up and shutdown included) cannot. ``None`` where a part cannot be read."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    redis_s: float | None = None
    if client is not None:
        try:
            info = client.info("cpu")
            redis_s = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        except Exception:  # noqa: BLE001 - a broker restart, an INFO a managed Redis refuses: no figure
            pass
    return {"driver": usage.ru_utime + usage.ru_stime, "workers": backend.worker_cpu_s(), "redis": redis_s}


def cpu_spent(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
    return {k: round(a - b, 4) if (a := after.get(k)) is not None and (b := before.get(k)) is not None else None
            for k in before}


# Raised by the client libraries while a broker restarts, under names the redis-py / OS classes do not cover:
# kombu (Celery) wraps the connection error in its OperationalError; py-amqp has its own connection errors.
_LIBRARY_DISCONNECTS = {"kombu": {"OperationalError"}, "celery": {"OperationalError"},
                        "amqp": {"RecoverableConnectionError", "ConnectionForced", "ConnectionError"}}


def is_disconnect(exc: BaseException) -> bool:
    """Redis (or the broker) cannot be reached right now: redis-py's or the OS's connection errors, a
    ``WatchError`` (a transaction whose connection was reset by the restart: ARQ's enqueue), kombu's
    ``OperationalError``, or any exception caused by one of those."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                                redis.exceptions.WatchError, ConnectionError, TimeoutError)):
            return True
        for cls in type(current).__mro__:
            if cls.__name__ in _LIBRARY_DISCONNECTS.get(cls.__module__.split(".")[0], ()):
                return True
        current = current.__cause__ or current.__context__
    return False


def is_refusal(exc: BaseException) -> bool:
    """The client library refused a payload (it cannot serialise the arguments): the run goes on.

    Anything else (Redis gone, a bug) still stops the cell."""
    if isinstance(exc, (TypeError, ValueError, OverflowError, RecursionError)):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"EncodeError", "PicklingError", "SerializationError"})


def copy_records(events: list[dict[str, Any]], path: str | None) -> None:
    if not path:
        return  # workers on this host wrote the log themselves: no need to look at every event
    records = [{k: v for k, v in e.items() if k != "type"} for e in events if e.get("type") == "failure_record"]
    if records:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, default=str) + "\n" for r in records))


# How often the driver looks at the run, the same whether it reads events (history on) or counts finished
# jobs (history off): the two sides of the overhead measurement then differ in what they do when they
# look, not in how often they wake up on the 2 cores the workers are measured on.
POLL_S = 0.02
IN_PROCESS_POLL_S = 0.002  # reference: broker and workers are in the driver, and so is everything it reads
SLOWEST_POLL_S = 0.25
# Never sleep longer than this share of the time the run has taken: the end is then seen within it of the
# truth whatever the rate estimate says. Early on that estimate can be far too low (the first jobs are still
# starting): one capped sleep of 0.25 s at 10 ms outlasted whole 0.2 s reference runs, and the driver-seen
# wall of either side of the overhead measurement was then that sleep, not the run.
LAG_SHARE = 0.05


def poll_interval(backend: str, tally: Tally, elapsed_s: float) -> float:
    """How long the driver waits before it reads the run's events (or counts its finished jobs) again.

    A quarter of the time the run still needs at its rate so far, and at most a twentieth of the time it has
    taken, between the floor and 0.25 s: slow while much is left, at the floor once the end is near, so the
    end is seen within a floor of the truth (20 ms; 2 ms in-process, where the broker and the workers are
    the driver's own threads), and never later than 5% of the run's wall time.
    """
    floor = IN_PROCESS_POLL_S if is_in_process(backend) else POLL_S
    rate = tally.terminal / elapsed_s if elapsed_s > 0 else 0.0
    if rate <= 0:
        return floor
    left = (tally.jobs - tally.terminal) / rate / 4
    return min(SLOWEST_POLL_S, max(floor, min(left, elapsed_s * LAG_SHARE)))

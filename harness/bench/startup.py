"""Driver side of comparable start-up (the definition and the worker side: ``implementations/runtime/startup.py``).

Runs inside the backend's environment, before the measured window: imports only the standard library and
``implementations``. ``StartupProbe.seed`` puts probes on the queue *before* the workers are spawned, as many
as the workers can take before each has run one (``Backend.probes_per_worker``), so each worker finds one the moment
it first asks for work; ``run`` then waits for every worker index to report a completed probe, topping the
queue up in rounds, releases the probes that were held, and waits until every probe has ended, so that none
is left to run inside the measured window.

No library here lets a client hand a job to one chosen worker; each hands a job to whichever worker asks
first, which is why probes go out in rounds and a worker that has its figure holds the next probe it takes:

- **RQ**: every worker blocks on ``BLPOP`` over the queue list; Redis serves blocked clients in the order they
  blocked, so an idle worker that has waited longest gets the next probe. A work horse is forked per job.
- **ARQ**: each worker polls the queue's sorted set every ``poll_delay`` (0.5 s) and claims due jobs one at a
  time under its ``max_jobs`` semaphore (an in-progress key each): the first worker to poll takes what it can.
- **Celery**: each worker's consumer takes messages (``BRPOP``) until it holds ``prefetch_multiplier ×
  concurrency`` unacknowledged ones (early acks: those its pool is running no longer count), then hands
  them to its pool: a worker up early reserves several probes, which the others then never see. So a
  Celery worker is given room for ``(prefetch_multiplier + 1) × concurrency`` probes.
- **reference**: threads of the driver's process take the earliest item of one timer heap.

Should a worker still find the queue empty, a fallback round (``ROUND_S`` without news) puts one more probe
per missing worker: its figure can then include up to one round's wait (the record keeps how many probes and
rounds it took).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from implementations.runtime.startup import DEFINITION, PROBE_TASK, board_for, probe_id

if TYPE_CHECKING:
    from implementations.api.app import RetryApp

PROBE_TIMEOUT_S = 60.0  # every worker has run a probe by then, or its start-up is null with a reason
ROUND_S = 0.25  # no worker reported a first probe for this long: put one more probe per missing worker
SETTLE_S = 15.0  # after the release, how long the probes still queued or held may take to end

Drain = Callable[[int], list[dict[str, Any]]]


class StartupProbe:
    """One cell's probe phase: ``seed()`` before the workers are spawned, ``run()`` once they are."""

    def __init__(self, app: RetryApp, workers: int, concurrency: int, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.app = app
        backend = app.backend
        self.greed = backend.probes_per_worker(concurrency)
        self.workers = max(1, workers) * (max(1, concurrency) if backend.concurrency_as_workers else 1)
        self.timeout_s = timeout_s
        self.enqueued: list[str] = []
        self.rounds = 0

    def _enqueue(self, n: int) -> None:
        task = self.app.tasks[PROBE_TASK]
        cell_id = self.app.config.cell_id
        for _ in range(max(0, n)):
            job_id = probe_id(cell_id, len(self.enqueued))
            # Straight to the library's client: no enqueue event, no enqueue mark (those are the run's jobs').
            self.app.backend.enqueue(task, (), {}, job_id=job_id, countdown=None)
            self.enqueued.append(job_id)
        self.rounds += 1

    def seed(self) -> None:
        """Probes for the workers about to be spawned: as many as they can take before each has run one."""
        self._enqueue(self.workers * self.greed)

    def run(self, drain: Drain, library_ready_s: float | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Wait for a first probe from every worker spawned so far; returns the fields of the ``workers_ready``
        event and every event drained meanwhile (probes and worker lifecycle), for the history."""
        spawned = self.app.backend.spawned_ns()
        if not spawned:
            return {}, []  # no worker this harness spawned: nothing it can time
        kept: list[dict[str, Any]] = []
        first: dict[int, dict[str, Any]] = {}
        seen: set[str] = set()  # probes some worker has taken (first or held)
        ended: set[str] = set()
        start = last_news = time.monotonic()

        def take(events: list[dict[str, Any]]) -> bool:
            news = False
            for e in events:
                kept.append(e)
                if e.get("type") != "probe":
                    continue
                pid, state, index = e.get("probe_id"), e.get("state"), e.get("index")
                seen.add(str(pid))
                if state in ("first", "done"):
                    ended.add(str(pid))
                if state == "first" and isinstance(index, int) and index in spawned and index not in first:
                    first[index] = e
                    news = True
            return news

        while len(first) < len(spawned) and time.monotonic() - start < self.timeout_s:
            if take(drain(100)):
                last_news = time.monotonic()
            missing = len(spawned) - len(first)
            free = len(self.enqueued) - len(seen)  # probes no worker has taken yet (as far as we can see)
            want = missing * self.greed
            if missing and (free < want or time.monotonic() - last_news > ROUND_S):
                self._enqueue(missing if free >= want else want - free)
                last_news = time.monotonic()
        board_for(self.app.runtime).release()
        settle_until = time.monotonic() + SETTLE_S
        while len(ended) < len(self.enqueued) and time.monotonic() < settle_until:
            take(drain(100))
        waited = time.monotonic() - start
        fields = startup_fields(spawned, first, timeout_s=self.timeout_s)
        fields.update({"library_ready_s": library_ready_s, "probes": len(self.enqueued), "probe_rounds": self.rounds,
                       "probes_unfinished": len(self.enqueued) - len(ended), "probe_phase_s": round(waited, 3)})
        return fields, kept


def startup_fields(spawned: dict[int, int], first: dict[int, dict[str, Any]], *,
                   timeout_s: float) -> dict[str, Any]:
    """What ``workers_ready`` says about start-up: one value per worker index (null, with a reason, for a
    worker that completed no probe), and ``startup_s``, the slowest (null unless every worker has one)."""
    per_worker: list[float | None] = []
    missing = []
    pids = []
    for index in sorted(spawned):
        probe = first.get(index)
        pids.append(probe.get("pid") if probe else None)
        if probe is None or not isinstance(probe.get("ts_ns"), int):
            per_worker.append(None)
            missing.append({"index": index, "reason": f"no probe job completed within {timeout_s:g} s"})
            continue
        per_worker.append(max(0, probe["ts_ns"] - spawned[index]) / 1e9)
    measured = [v for v in per_worker if v is not None]
    return {"startup_s": max(measured) if measured and not missing else None,
            "startup_per_worker_s": per_worker, "startup_pids": pids, "startup_missing": missing,
            "startup_definition": DEFINITION}


def startup_summary(ready: dict[str, Any] | None) -> dict[str, Any] | None:
    """A cell's start-up stats for results.json: median and max over its workers, workers counted."""
    if not ready or "startup_per_worker_s" not in ready:
        return None
    values = ready.get("startup_per_worker_s") or []
    measured = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {"definition": ready.get("startup_definition", DEFINITION), "per_worker_s": values,
            "median_s": statistics.median(measured) if measured else None,
            "max_s": max(measured) if measured else None, "workers": len(values), "measured": len(measured),
            "missing": ready.get("startup_missing") or []}

"""Reading SAQ's own Redis stores (saq 0.26, ``saq/queue/redis.py``): its failed jobs, and where a job still is.

``RedisQueue`` keeps, per queue: ``queued`` (list of job ids due now), ``active`` (list: dequeued with BLMOVE,
running), ``incomplete`` (sorted set of every job not finished: score 0 once queued, else the epoch seconds it
is due), and one string per job (``saq:job:<queue>:<key>``, the serialised ``Job``), which ``_finish`` keeps
``ttl`` seconds after the job ends (``Job.ttl``, 600 s by default).
"""

from __future__ import annotations

import json
from typing import Any

from saq.job import Status
from saq.queue.redis import RedisQueue

BATCH = 1000

QUEUED = "saq queued list"
ACTIVE = "saq active list"
SCHEDULED = "saq incomplete set (scheduled)"
INCOMPLETE = "saq incomplete set (score 0, in no list)"


async def failed_keys(queue: RedisQueue) -> list[str]:
    """Keys of this queue's jobs SAQ holds as failed for good: status ``failed`` (the worker's
    ``finish(Status.FAILED)`` once not retryable) or ``aborted`` (the sweep's end for a stuck job with no attempts
    left, error "swept"; ``UNSUCCESSFUL_TERMINAL_STATUSES``). A SCAN of the queue's job strings, a thousand at a
    time."""
    statuses = [Status.FAILED, Status.ABORTED]
    return [job.key async for job in queue.iter_jobs(statuses, batch_size=BATCH)]


def _status(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return str(json.loads(raw).get("status") or "new")
    except (ValueError, AttributeError):
        return "undecodable"


async def whereabouts(queue: RedisQueue, keys: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """Where each job key still is in SAQ's stores, and when SAQ itself would bring it back."""
    redis = queue.redis
    names = {k: queue.job_id(k) for k in keys}
    queued = set(await redis.lrange(queue.namespace("queued"), 0, -1))
    active = set(await redis.lrange(queue.namespace("active"), 0, -1))
    pipe = redis.pipeline(transaction=False)
    for job_id in names.values():
        pipe.zscore(queue.namespace("incomplete"), job_id)
        pipe.get(job_id)
    raw = await pipe.execute()
    jobs: dict[str, list[str]] = {}
    for n, (key, job_id) in enumerate(names.items()):
        score, stored = raw[2 * n], raw[2 * n + 1]
        wanted = job_id.encode()
        where = []
        if wanted in queued:
            where.append(QUEUED)
        if wanted in active:
            where.append(ACTIVE)
        if score is not None and score > 0:
            where.append(SCHEDULED)
        elif score is not None and not where:
            where.append(INCOMPLETE)
        if not where and stored is not None:
            where.append(f"saq job string (status {_status(stored)}, in no list or set)")
        jobs[key] = where
    timeout = options.get("saq_job_timeout", 10)
    sweep = options.get("saq_sweep", 60)
    beat = f"past its heartbeat ({options['saq_heartbeat']} s untouched)" if options.get("saq_heartbeat") else \
        "(no heartbeat: SAQ's default)"
    recovery = {
        QUEUED: "when a worker's process loop is free (BLMOVE)",
        ACTIVE: f"when a worker's sweep (every {sweep} s, one worker at a time) finds it stuck: running longer "
                f"than its timeout (Job.timeout, {timeout} s unless the task's time limit) or {beat}, "
                "then waits 5 s for an abort no dead worker answers, and retries it if attempts remain "
                "(else status aborted)",
        SCHEDULED: "when its score comes due and a worker's schedule timer (every 1 s) moves it to the queued list",
        INCOMPLETE: "never by itself: a job in neither list is not swept (only one in the active list is)",
    }
    for where in jobs.values():
        for store in where:
            if store.startswith("saq job string"):
                recovery[store] = "never by itself: only a manual requeue"
    return {"jobs": jobs, "recovery": recovery}

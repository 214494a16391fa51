"""The built-in scenarios (``retrybench scenarios`` lists them; docs/scenarios.md documents them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.plan.scenarios import DEFAULT_POLICY, Scenario, ScenarioError, load_file
from implementations.api.tasks import LESSON_POLICY

_BACKOFF = DEFAULT_POLICY
_CONN = "ConnectionError"
# Celery's retry on worker loss waits default_retry_delay (180 s by default), not the backoff.
_CRASH_POLICY = {**_BACKOFF, "max_retries": 3, "retry_backoff": 1, "default_retry_delay": 1}
# Each library's documented recovery from a lost worker, sized for a run that lasts seconds, not hours.
_RECOVERY = {
    "celery_acks_late": True, "celery_reject_on_worker_lost": True, "celery_retry_on_worker_lost": True,
    "celery_visibility_timeout": 10, "celery_unacked_restore_interval": 1, "celery_unacked_restore_throttle": 1,
    # RQ finds a dead worker's job once its entry in the started registry expires (min(job_timeout, 30 s) + 60 s) and
    # a live worker runs maintenance, which it does only between blocking waits of worker_ttl - 15 s.
    "rq_maintenance_interval": 5, "rq_worker_ttl": 20, "rq_job_timeout": 5,
    "arq_job_timeout": 3,  # a dead worker's job runs again when its in-progress key expires: timeout + 10 s
    "arq_conn_retries": 20,  # reconnect across a broker restart instead of exiting
    # Dramatiq's RedisBroker puts a dead worker's unacked messages back once its heartbeat is heartbeat_timeout ms
    # old, at a maintenance of that queue, which runs on maintenance_chance in 10^6 broker commands (default 1000).
    "dramatiq_heartbeat_timeout": 5000, "dramatiq_maintenance_chance": 100_000,
    # taskiq's stream broker reclaims a dead consumer's unacked entries (XAUTOCLAIM) once idle this long, and only
    # after a read that returned new entries (a tick task every second gives one); one entry per read, so a dead
    # worker holds only what it was running.
    "taskiq_idle_timeout": 5, "taskiq_reclaim_tick": 1, "taskiq_xread_count": 1,
    # SAQ's sweep (one worker every saq_sweep s) retries an active job untouched for Job.heartbeat s, after 5 s
    # waiting for an abort no dead worker answers; the live job beats by job.update(). The sweep's lock lasts
    # saq_sweep s: a sweep that outlasts it (5 s per stuck job) overlaps the next worker's, from a stale list, and
    # both retry the same job (measured: 2 s gave duplicate executions), so it stays well above 5 s. The sweep also
    # judges each job from the list it read before its 5 s waits: a live job behind a stuck one looks untouched for
    # longer than a short heartbeat and is retried while it runs (measured with 2 s): 10 s keeps that rare.
    "saq_heartbeat": 10, "saq_sweep": 10,
}

# Arrivals of the timing presets, in jobs per second: not a divisor of one second, so the failures (and the
# retries they schedule) fall at every phase of a scheduler that polls once a second; a burst enqueued at once
# would fail in one phase, and early or late retries could hide behind it.
STAGGER = 7.0
# Throughput presets retry at once (interval 0) behind a backlog of hundreds to thousands of jobs: a retry waits
# its turn in the queue by design, so their timing contract only catches gross lateness, counted from that turn
# (harness.analysis.turns): the wait behind the jobs due before it is the queue's; what comes after is the library's.
BACKLOG_BUDGET_S = 5.0
BACKLOG: dict[str, Any] = {"late_budget_s": BACKLOG_BUDGET_S, "late_from": "turn"}

PRESETS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("seed-lesson", "The lesson: empty → ValueError (never retried); 'retry' → ConnectionError, "
             "retried 3× at 10, 30, 60 s; anything else works.", task="process_message",
             policy=LESSON_POLICY, jobs=6, workers=2, time_scale=0.1,
             messages=("hello world", "", "please retry this", "order 42", "ship it", "retry me too")),
    Scenario("transient-1", "Every job fails once with a transient error, then succeeds (backoff 1 s, 2 s…).",
             policy={**_BACKOFF, "max_retries": 3, "retry_backoff": 1}, faults=({"kind": "fail_first", "k": 1},),
             jobs=40, enqueue_rate=STAGGER),
    Scenario("transient-3", "Every job fails three times, then succeeds on its last allowed try.",
             policy={**_BACKOFF, "max_retries": 3, "retry_backoff": 1}, faults=({"kind": "fail_first", "k": 3},),
             jobs=20, enqueue_rate=STAGGER),
    Scenario("flaky-20", "Each attempt fails with probability 0.2; fixed 1 s retry interval, 5 retries.",
             policy={**_BACKOFF, "max_retries": 5, "intervals": [1]}, faults=({"kind": "probability", "p": 0.2},),
             jobs=100, enqueue_rate=3 * STAGGER),
    Scenario("permanent", "Every attempt fails: retries run out and each job gets one failure record.",
             policy={**_BACKOFF, "max_retries": 3, "intervals": [1, 2, 3]}, faults=({"kind": "permanent"},),
             jobs=20, enqueue_rate=STAGGER),
    Scenario("non-retryable", "A ValueError on the first try: never retried, one failure record each.",
             policy={**_BACKOFF, "max_retries": 3, "intervals": [1]}, faults=({"kind": "non_retryable"},),
             jobs=20),
    Scenario("outage", "A 3 s dependency outage while jobs arrive at 10/s: every attempt inside it fails.",
             policy={**_BACKOFF, "max_retries": 5, "retry_backoff": 1}, jobs=60, enqueue_rate=10,
             faults=({"kind": "outage", "start": 1.5, "duration": 3},)),
    Scenario("outage-breaker", "The same outage with a circuit breaker shared by all workers (opens after 5 "
             "failures, half-opens after 2 s): fewer calls reach the dependency while it is down.",
             policy={**_BACKOFF, "max_retries": 5, "retry_backoff": 1, "breaker_fail_max": 5,
                     "breaker_reset_timeout": 2}, jobs=60, enqueue_rate=10,
             faults=({"kind": "outage", "start": 1.5, "duration": 3},)),
    Scenario("backoff-jitter", "Celery's exponential backoff with full jitter (factor 2, cap 8 s), 3 failures.",
             policy={**_BACKOFF, "max_retries": 4, "retry_backoff": 2, "retry_backoff_max": 8,
                     "retry_jitter": True}, faults=({"kind": "fail_first", "k": 3},), jobs=30,
             enqueue_rate=STAGGER),
    Scenario("worker-crash", "A fifth of the jobs SIGKILL the process running them (RQ's work horse, Celery's "
             "pool child, the ARQ worker) on their first attempt; every library on its defaults.",
             policy=_CRASH_POLICY, faults=({"kind": "crash", "fraction": 0.2},), jobs=20, workers=2,
             concurrency=2, options={"deadline_s": 30}),
    Scenario("worker-crash-recovery", "The same crashes with each library's documented recovery: Celery acks_late, "
             "reject and retry on worker lost, a 10 s visibility timeout swept every second; ARQ job_timeout 3 s; "
             "RQ maintenance every 5 s; taskiq reclaims entries idle 5 s, one entry per read, a tick every second.",
             policy=_CRASH_POLICY, faults=({"kind": "crash", "fraction": 0.2},),
             jobs=20, workers=2, concurrency=2, options={**_RECOVERY, "deadline_s": 30}),
    Scenario("host-crash-recovery", "The whole worker (its main process and every child) is SIGKILLed, as when its "
             "machine goes away; documented recovery settings as in worker-crash-recovery.", policy=_CRASH_POLICY,
             faults=({"kind": "crash", "fraction": 0.2, "target": "worker"},), jobs=20, workers=2, concurrency=2,
             options={**_RECOVERY, "deadline_s": 100}),
    Scenario("time-limit", "A fifth of the jobs hang past their 2 s time limit on the first attempt: each library's "
             "own limit stops them, and the time-out is retried under the policy.",
             policy={**_BACKOFF, "autoretry_for": ["ConnectionError", "TimeoutError"], "max_retries": 3,
                     "retry_backoff": 1}, task_options={"time_limit": 2},
             faults=({"kind": "timeout", "fraction": 0.2},), jobs=20),
    Scenario("poison", "A tenth of the jobs carry an argument that pickles but cannot be unpickled (and that JSON "
             "cannot encode at all); every other job fails once and then succeeds.", poison=0.1,
             policy={**_BACKOFF, "max_retries": 3, "retry_backoff": 1}, faults=({"kind": "fail_first", "k": 1},),
             jobs=40, options={"deadline_s": 30}),
    Scenario("broker-restart", "Redis is killed (SIGKILL) 2 s into the run and started again from its append-only "
             "file (fsync every second) 1 s later, while jobs arrive at 10/s and a fifth of them fail once: workers "
             "must reconnect.", policy={**_BACKOFF, "max_retries": 3, "retry_backoff": 1},
             faults=({"kind": "fail_first", "k": 1, "fraction": 0.2},), jobs=60, enqueue_rate=10,
             options={"broker_restart_at": 2, "broker_down_s": 1, "deadline_s": 60}),
    Scenario("broker-restart-recovery", "The same broker restart with the documented settings of "
             "worker-crash-recovery (ARQ reconnects with backoff, RQ's maintenance restarts its scheduler within "
             "seconds, Celery's unacked messages come back after 10 s) and Redis fsyncing every write.",
             policy={**_BACKOFF, "max_retries": 3, "retry_backoff": 1},
             faults=({"kind": "fail_first", "k": 1, "fraction": 0.2},), jobs=60, enqueue_rate=10,
             options={**_RECOVERY, "broker_restart_at": 2, "broker_down_s": 1, "deadline_s": 60,
                      "redis_appendfsync": "always"}),
    # Simulated hosts (docs/multi-host.md): run with --hosts N (Linux, root); worker host 1 is the one faulted.
    Scenario("partition-worker", "Worker host 1 is cut off from the broker (its link down) 2 s into the run for "
             "15 s while it runs half-second jobs, then healed; documented recovery settings, so Celery's "
             "visibility timeout (10 s) and ARQ's in-progress keys (13 s) run out while it is away.",
             policy={**_BACKOFF, "max_retries": 3, "retry_backoff": 1},
             faults=({"kind": "fail_first", "k": 1, "fraction": 0.3},), jobs=30, work_ms=500, enqueue_rate=STAGGER,
             options={**_RECOVERY, "deadline_s": 90},
             network=({"kind": "partition", "host": 1, "at": 2, "duration": 15},)),
    Scenario("broker-latency", "Every byte between worker host 1 and the broker is delayed 150 ms each way (a proxy "
             "on the path) from 0.5 s for 3 s; at 4 s, while jobs still arrive, its connections are reset and new "
             "ones refused for 1 s; documented recovery settings.",
             policy={**_BACKOFF, "max_retries": 3, "retry_backoff": 1},
             faults=({"kind": "fail_first", "k": 1, "fraction": 0.3},), jobs=50, work_ms=100, enqueue_rate=STAGGER,
             options={**_RECOVERY, "deadline_s": 90},
             network=({"kind": "latency", "host": 1, "at": 0.5, "duration": 3, "ms": 150},
                      {"kind": "drop", "host": 1, "at": 4, "duration": 1})),
    Scenario("load-10k", "10,000 jobs, a fifth of the attempts fail transiently and are retried at once, 4 workers: "
             "the harness streams the history, so its memory stays flat (ARQ polls every 50 ms, or 10,000 jobs "
             "would take it ten minutes).",
             policy={**_BACKOFF, "max_retries": 5, "intervals": [0]}, faults=({"kind": "probability", "p": 0.2},),
             jobs=10_000, workers=4, options={"arq_poll_delay": 0.05},
             **BACKLOG),
    Scenario("sweep", "The settings that trade CPU for timing precision and throughput, on a flaky workload "
             "(a fifth of the attempts fail, retried after 1 s): RQ's worker class, ARQ's poll delay, Celery's pool "
             "and prefetch, and concurrency everywhere; the report recommends one variant per backend.",
             policy={**_BACKOFF, "max_retries": 5, "intervals": [1]}, faults=({"kind": "probability", "p": 0.2},),
             jobs=200, work_ms=1, sweep={"concurrency": [2, 8], "rq_worker_class": ["Worker", "SimpleWorker"],
                                         "arq_poll_delay": [0.5, 0.1, 0.02], "celery_pool": ["prefork", "threads"],
                                         "celery_prefetch": [1, 4]}),
    Scenario("scaling", "Throughput and the harness's memory at 1, 2, 4 and 8 workers: 1,000 jobs, a fifth of the "
             "attempts fail and are retried at once (ARQ polls every 50 ms).",
             policy={**_BACKOFF, "max_retries": 5, "intervals": [0]}, faults=({"kind": "probability", "p": 0.2},),
             jobs=1000, work_ms=1, sweep={"workers": [1, 2, 4, 8]}, options={"arq_poll_delay": 0.05},
             **BACKLOG),
    Scenario("resolution", "100 retries due at once (within ~20 ms): every job fails once and is retried 1 s later "
             "on 100 worker threads, so the lateness left is the harness's own (run it on reference).",
             policy={**_BACKOFF, "max_retries": 1, "intervals": [1]}, faults=({"kind": "fail_first", "k": 1},),
             jobs=100, workers=1, concurrency=100),
    Scenario("overhead", "What recording the history costs: 1,000 jobs, a fifth of the attempts fail and are "
             "retried at once, with the history on and off (off: no events at all, the library's own count of "
             "finished jobs ends the run), as jobs/s seen by the driver. ARQ polls every 50 ms (on its default "
             "0.5 s the run would time its poll), which at 1 ms of work puts its throughput on a knife edge.",
             policy={**_BACKOFF, "max_retries": 5, "intervals": [0]}, faults=({"kind": "probability", "p": 0.2},),
             jobs=1000, work_ms=1, sweep={"record_history": [True, False]}, options={"arq_poll_delay": 0.05},
             **BACKLOG),
    Scenario("throughput-0", "Throughput with no failures (1 ms of work per job).",
             policy={**_BACKOFF, "max_retries": 3, "intervals": [0]}, jobs=500, work_ms=1,
             **BACKLOG),
    Scenario("throughput-20", "Throughput with 20% transient failures, retried at once (interval 0).",
             policy={**_BACKOFF, "max_retries": 5, "intervals": [0]}, faults=({"kind": "probability", "p": 0.2},),
             jobs=500, work_ms=1, **BACKLOG),
]}


def resolve(name_or_path: str, *, user_path: str | None = None) -> Scenario:
    """A preset by name, or a scenario file by path (anything ending in .toml or that exists)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    if name_or_path.endswith(".toml") or Path(name_or_path).exists():
        return load_file(name_or_path, user_path=user_path)
    raise ScenarioError(f"unknown scenario {name_or_path!r}: not a preset ({', '.join(PRESETS)}) "
                        "and not a .toml file")

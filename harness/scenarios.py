"""Scenarios: built-in presets and user TOML files with the same keys, validated with clear errors."""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from implementations.config import SCHEDULES
from implementations.faults import FaultPlan, FaultPlanError
from implementations.poison import Poison
from implementations.policy import PolicyError, RetryPolicy, resolve_exception
from implementations.scenarios import LESSON_POLICY, TASKS
from implementations.usercode import (
    UserCodeError,
    find,
    is_ref,
    load_function,
    normalize_args,
    split_ref,
)


class ScenarioError(ValueError):
    """A scenario (preset name or file) that cannot be used."""


@dataclass(frozen=True)
class Scenario:
    """One failing-task workload: task, retry policy, fault plan, size and pacing."""

    name: str
    description: str = ""
    task: str = "work"
    policy: Mapping[str, Any] = field(default_factory=dict)
    faults: tuple[Mapping[str, Any], ...] = ()
    jobs: int = 20
    workers: int = 2
    concurrency: int = 4  # slots per worker: RQ work processes, ARQ max_jobs, Celery pool size
    seed: int = 42
    time_scale: float = 1.0
    enqueue_rate: float = 0.0  # jobs per second; 0 = all at once
    tolerance_s: float = 0.002  # a retry earlier than this before its delay is a violation
    late_budget_s: float | None = None  # a retry later than this after its delay fails (None: 0.1 s + 10 % of it)
    messages: tuple[str, ...] = ()  # process_message: cycled through as the jobs' arguments
    work_ms: float = 0.0
    task_options: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    poison: float = 0.0  # share of jobs whose argument cannot be serialised or deserialised
    # Who decides each retry's delay: "planned" (retrybench's seeded plan, the same on every backend) or
    # "native" (each library from the policy as its own users write it; docs/schedules.md).
    schedule: str = "planned"
    sweep: Mapping[str, Any] = field(default_factory=dict)  # setting -> values to try (see harness.sweep)
    sweep_of: str = ""  # set on the variants a sweep expands into: the swept scenario's name …
    sweep_values: Mapping[str, Any] = field(default_factory=dict)  # … and this variant's settings
    # A user task ("module:function", docs/own-tasks.md): each job's arguments (a list, one entry per job, cycled;
    # or "module:function" called with the job index and the seed), a requirements file installed into every
    # backend's environment, and the one directory its modules are imported from (the scenario file's, or --path).
    args: Any = None
    requirements: str = ""
    path: str = ""

    @property
    def user_task(self) -> bool:
        return is_ref(self.task)

    def is_poison(self, index: int) -> bool:
        return bool(self.poison) and random.Random(f"{self.seed}:poison:{index}").random() < self.poison

    def job_args(self, index: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.is_poison(index):
            return (Poison(index),), {}
        if self.user_task:
            return self.user_args(index)
        if self.task == "process_message":
            return (self.messages[index % len(self.messages)] if self.messages else f"message {index}",), {}
        return (index,), ({"work_ms": self.work_ms} if self.work_ms else {})

    def user_args(self, index: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Job ``index``'s arguments for a user task: from the list (cycled), from the generator function called
        with the index and the seed (imported from the allowed path: run where the task runs), else ``(index,)``."""
        if isinstance(self.args, list) and self.args:
            return normalize_args(self.args[index % len(self.args)], f"args[{index % len(self.args)}]")
        if is_ref(self.args):
            make = load_function(self.args, self.path, "args")
            return normalize_args(make(index, self.seed), f"args {self.args!r} for job {index}")
        return (index,), {}

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy.from_dict(self.policy).scaled(self.time_scale)

    def fault_plan(self) -> FaultPlan:
        return FaultPlan.from_list(list(self.faults), seed=self.seed).scaled(self.time_scale)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["faults"] = [dict(f) for f in self.faults]
        data["messages"] = list(self.messages)
        if not self.user_task:  # results of built-in scenarios keep their shape
            for key in ("args", "requirements", "path"):
                data.pop(key)
        return data


_BACKOFF = {"autoretry_for": ["ConnectionError"], "dont_autoretry_for": ["ValueError"]}
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
}

# Arrivals of the timing presets, in jobs per second: not a divisor of one second, so the failures (and the
# retries they schedule) fall at every phase of a scheduler that polls once a second; a burst enqueued at once
# would fail in one phase, and early or late retries could hide behind it.
STAGGER = 7.0
# Throughput presets retry at once (interval 0) behind a backlog of hundreds of jobs: a retry waits its turn in
# the queue by design, so their timing contract only catches gross lateness.
BACKLOG_BUDGET_S = 5.0

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
             "RQ maintenance every 5 s.", policy=_CRASH_POLICY, faults=({"kind": "crash", "fraction": 0.2},),
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
    Scenario("load-10k", "10,000 jobs, a fifth of the attempts fail transiently and are retried at once, 4 workers: "
             "the harness streams the history, so its memory stays flat (ARQ polls every 50 ms, or 10,000 jobs "
             "would take it ten minutes).",
             policy={**_BACKOFF, "max_retries": 5, "intervals": [0]}, faults=({"kind": "probability", "p": 0.2},),
             jobs=10_000, workers=4, options={"arq_poll_delay": 0.05},
             late_budget_s=BACKLOG_BUDGET_S),
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
             late_budget_s=BACKLOG_BUDGET_S),
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
             late_budget_s=BACKLOG_BUDGET_S),
    Scenario("throughput-0", "Throughput with no failures (1 ms of work per job).",
             policy={**_BACKOFF, "max_retries": 3, "intervals": [0]}, jobs=500, work_ms=1,
             late_budget_s=BACKLOG_BUDGET_S),
    Scenario("throughput-20", "Throughput with 20% transient failures, retried at once (interval 0).",
             policy={**_BACKOFF, "max_retries": 5, "intervals": [0]}, faults=({"kind": "probability", "p": 0.2},),
             jobs=500, work_ms=1, late_budget_s=BACKLOG_BUDGET_S),
]}

_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "description": (str,), "task": (str,), "jobs": (int,), "workers": (int,),
    "concurrency": (int,), "seed": (int,), "time_scale": (int, float), "enqueue_rate": (int, float),
    "tolerance_s": (int, float), "late_budget_s": (int, float), "messages": (list,), "work_ms": (int, float),
    "policy": (dict,),
    "faults": (list,), "task_options": (dict,), "options": (dict,), "poison": (int, float), "sweep": (dict,),
    "schedule": (str,), "args": (list, str), "requirements": (str,),
}


# Every option a backend or the driver reads (docs/scenarios.md documents them): a misspelt one
# would otherwise be ignored without a word, and a run would measure the defaults it meant to change.
KNOWN_OPTIONS = frozenset({
    "rq_worker_class", "rq_with_scheduler", "rq_maintenance_interval", "rq_worker_ttl", "rq_job_timeout",
    "arq_poll_delay", "arq_job_timeout", "arq_conn_retries",
    "celery_pool", "celery_prefetch", "celery_acks_late", "celery_reject_on_worker_lost",
    "celery_retry_on_worker_lost", "celery_visibility_timeout", "celery_unacked_restore_interval",
    "celery_unacked_restore_throttle",
    "restart_workers", "record_history", "deadline_s", "broker_restart_at", "broker_down_s", "broker_wait_s",
    "redis_appendfsync", "alert_webhook", "alert_window_s", "log_json", "log_dir", "late_budget_s",
    "probe_timeout_s",
})
# The options that are a number of seconds (or a count): anything else would reach a worker or the driver
# and stop it with a traceback, or (a deadline of -5) end every cell at once.
POSITIVE_OPTIONS = frozenset({
    "rq_maintenance_interval", "rq_worker_ttl", "rq_job_timeout", "arq_poll_delay", "arq_job_timeout",
    "celery_visibility_timeout", "deadline_s", "broker_wait_s", "alert_window_s", "late_budget_s",
    "probe_timeout_s",
})
NON_NEGATIVE_OPTIONS = frozenset({
    "arq_conn_retries", "celery_prefetch", "celery_unacked_restore_interval", "celery_unacked_restore_throttle",
    "broker_restart_at", "broker_down_s",
})


# Options with a fixed set of values: anything else reached a worker that then ran nothing (exit 0, zeros).
CHOICE_OPTIONS: dict[str, tuple[Any, ...]] = {
    "celery_pool": ("prefork", "processes", "threads", "solo"),
    "rq_worker_class": ("Worker", "SimpleWorker"),
    "redis_appendfsync": ("always", "everysec", "no"),
}
BOOLEAN_OPTIONS = frozenset({"rq_with_scheduler", "celery_acks_late", "celery_reject_on_worker_lost",
                             "celery_retry_on_worker_lost", "restart_workers", "record_history"})


def check_options(options: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ScenarioError(f"{where}: unknown option(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(KNOWN_OPTIONS))})")
    for key, choices in CHOICE_OPTIONS.items():
        if key in options and options[key] not in choices:
            raise ScenarioError(f"{where}: {key} must be one of {', '.join(map(str, choices))}, got {options[key]!r}")
    for key in BOOLEAN_OPTIONS & set(options):
        if not isinstance(options[key], bool):
            raise ScenarioError(f"{where}: {key} must be true or false, got {options[key]!r}")
    log_json = options.get("log_json")
    if log_json is not None and log_json != "-":
        if not isinstance(log_json, str) or not log_json:
            raise ScenarioError(f"{where}: log_json must be '-' or a file name, got {log_json!r}")
        confined(log_json, "/run-dir")  # where it lands is decided by the driver, inside the run directory
    for key in (POSITIVE_OPTIONS | NON_NEGATIVE_OPTIONS) & set(options):
        value, positive = options[key], key in POSITIVE_OPTIONS
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
            raise ScenarioError(f"{where}: {key} must be a number {'> 0' if positive else '>= 0'}, got {value!r}")


# Scenario names become file names (plots) and titles (matplotlib): no path, no control character, no
# mathtext. Sweep variants add "[key=value]" to a checked name.
_UNSAFE_NAME = re.compile(r"[/\\$\x00-\x1f\x7f]")


def check_name(name: str, where: str) -> None:
    if not name or len(name) > 100 or _UNSAFE_NAME.search(name) or ".." in name or name.startswith("."):
        raise ScenarioError(f"{where}: name {name!r}: a scenario name becomes a file name: use up to 100 "
                            "characters without '/', '\\', '..', '$', a leading '.' or control characters")


def confined(path: str, root: str) -> str:
    """``path`` (relative) inside ``root``, or ScenarioError: an option may not write elsewhere."""
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, path))
    if os.path.isabs(path) or os.path.commonpath([base, full]) != base or full == base:
        raise ScenarioError(f"log_json {path!r}: must be '-' (stderr) or a file name inside the run directory")
    return full


def validate(s: Scenario, where: str) -> Scenario:
    """Check every value a run depends on; errors name the place and what was expected."""
    if not s.sweep_of:
        check_name(s.name, where)
    check_options(s.options, where)
    if s.sweep:
        from .sweep import check_sweep  # the sweep module builds on this one

        check_sweep(s.sweep, where)
    for key in ("jobs", "workers", "concurrency"):
        if getattr(s, key) < 1:
            raise ScenarioError(f"{where}: {key}: expected a whole number >= 1, got {getattr(s, key)}")
    if not 0 <= s.poison <= 1:
        raise ScenarioError(f"{where}: poison: expected a share of jobs between 0 and 1, got {s.poison}")
    if s.enqueue_rate < 0 or s.tolerance_s < 0 or s.work_ms < 0:
        raise ScenarioError(f"{where}: enqueue_rate, tolerance_s and work_ms must be >= 0")
    if s.late_budget_s is not None and s.late_budget_s <= 0:
        raise ScenarioError(f"{where}: late_budget_s must be a number > 0, got {s.late_budget_s!r}")
    if s.schedule not in SCHEDULES:
        raise ScenarioError(f"{where}: schedule: expected {' or '.join(repr(m) for m in SCHEDULES)}, "
                            f"got {s.schedule!r}")
    if s.user_task:
        check_user_task(s, where)
    elif s.task not in TASKS:
        raise ScenarioError(f"{where}: task: expected one of {', '.join(TASKS)} or a function of your own as "
                            f"'module:function', got {s.task!r}")
    elif s.args is not None or s.requirements:
        raise ScenarioError(f"{where}: args and requirements are for a task of your own ('module:function')")
    try:
        _policy_to_check(s)
    except PolicyError as exc:
        raise ScenarioError(f"{where}: policy: {exc}") from None
    try:
        plan = s.fault_plan()
    except FaultPlanError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    for i, rule in enumerate(plan.rules):
        # A user task's dotted names are its modules' or its requirements': resolved where its code is imported
        # (harness.usercheck, in each backend's environment), never imported here.
        if rule.kind not in ("slow", "crash") and not (s.user_task and "." in rule.exc):
            try:
                resolve_exception(rule.exc)
            except PolicyError as exc:
                raise ScenarioError(f"{where}: faults[{i}].exc: {exc}") from None
    return s


def check_user_task(s: Scenario, where: str) -> None:
    """What the main environment can check of a user task without running its code: the names' form, the
    module files in the allowed path, the argument list, the requirements file. Importing it (does the function
    exist, does it import in each backend's environment) is ``harness.usercheck``'s, before any worker starts."""
    if not s.path:
        raise ScenarioError(f"{where}: task {s.task!r}: no allowed path to import it from (use a scenario file, or "
                            "--path DIR)")
    try:
        for ref, what in ((s.task, "task"), (s.args, "args")):
            if is_ref(ref):
                module, _ = split_ref(str(ref), what)
                find(module, s.path)
            elif what == "args" and isinstance(ref, str):
                raise UserCodeError(f"args {ref!r}: expected a list or 'module:function'")
    except UserCodeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if isinstance(s.args, list) and not s.args:
        raise ScenarioError(f"{where}: args: an empty list gives the jobs no arguments (leave it out for (index,))")
    if s.requirements and not Path(s.requirements).is_file():
        raise ScenarioError(f"{where}: requirements: no such file {s.requirements}")


def _policy_to_check(s: Scenario) -> None:
    """Check the policy in the main environment. A user task's dotted exception names are checked where its code
    is imported (harness.usercheck, in each backend's environment), not here."""
    policy = dict(s.policy)
    if s.user_task:
        # Dotted names (charges.CardDeclined, httpx.TransportError) live in the task's modules or its
        # requirements, which the main environment neither has nor imports.
        for key in ("autoretry_for", "dont_autoretry_for"):
            value = policy.get(key)
            items = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else None
            if items is not None:
                policy[key] = [n for n in items if not (isinstance(n, str) and "." in n)]
    RetryPolicy.from_dict(policy).scaled(s.time_scale)


def from_mapping(data: Mapping[str, Any], where: str, *, base: Path | None = None,
                 path: str | None = None) -> Scenario:
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TYPES))})")
    values: dict[str, Any] = {}
    for key, value in data.items():
        types = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join("number" if t is float else t.__name__.replace("dict", "table") for t in types)
            raise ScenarioError(f"{where}: {key}: expected {names}, got {value!r}")
        values[key] = value
    values.setdefault("name", Path(where).stem)
    values["faults"] = tuple(values.get("faults", ()))
    values["messages"] = tuple(values.get("messages", ()))
    values.setdefault("policy", dict(_BACKOFF))
    if base is not None:  # a scenario file: user code and its requirements live beside it (or in --path)
        values["path"] = str(Path(path or base).resolve())
        if values.get("requirements"):
            values["requirements"] = str((base / values["requirements"]).resolve())
    return validate(Scenario(**values), where)


def load_file(path: str | Path, *, user_path: str | None = None) -> Scenario:
    # Imported here: worker-side drivers import this module in backend envs that lack tomli on 3.10.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return from_mapping(data, str(path), base=path.resolve().parent, path=user_path)


def resolve(name_or_path: str, *, user_path: str | None = None) -> Scenario:
    """A preset by name, or a scenario file by path (anything ending in .toml or that exists)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    if name_or_path.endswith(".toml") or Path(name_or_path).exists():
        return load_file(name_or_path, user_path=user_path)
    raise ScenarioError(f"unknown scenario {name_or_path!r}: not a preset ({', '.join(PRESETS)}) "
                        "and not a .toml file")


def with_overrides(s: Scenario, **overrides: Any) -> Scenario:
    given = {k: v for k, v in overrides.items() if v is not None}
    return validate(replace(s, **given), f"scenario {s.name}") if given else s

"""Native and planned schedules on real workers and a real Redis: the delay each library really scheduled,
read back from its own data ("schedule" events), follows that library's own formula (docs/schedules.md).

The assertions are on the library's recorded values — its ETA, registry score or queue score against the end of
the failed attempt — within bounds that only allow for the library's own rounding and a generous publishing
overhead; never on how fast anything ran.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from harness.analysis.history import read_history
from harness.orchestrate.envs import parse_backend_spec
from harness.orchestrate.runner import RunPlan, execute
from harness.plan.scenarios import Scenario
from implementations.backends import QUEUES

pytestmark = pytest.mark.integration

EPS_S = 0.002  # the libraries' own rounding (ARQ: ms) and clock reads, nothing about speed
SCHEMA = {"type", "cell_id", "backend", "scenario", "job_id", "attempt", "due_ns", "delay_s", "source", "observed_ns",
          "schedule", "pid"}
_CONN = {"autoretry_for": ["ConnectionError"], "dont_autoretry_for": ["ValueError"]}

# Celery's exponential backoff with full jitter: countdowns randrange(2**retries + 1), whole seconds; RQ gets the
# unjittered delays as its interval list [1, 2]; ARQ's defer is the policy's jittered delay, in ms.
BACKOFF = Scenario("native-backoff", task="work", jobs=3, workers=1, concurrency=3, schedule="native",
                   policy={**_CONN, "max_retries": 2, "retry_backoff": 1, "retry_jitter": True},
                   faults=({"kind": "fail_first", "k": 2},))
# One interval: RQ's Retry(interval=1) as a scalar, ARQ's Retry(defer=1), Celery's default_retry_delay (Celery has
# no interval list).
INTERVAL = Scenario("native-interval", task="work", jobs=2, workers=1, concurrency=2, schedule="native",
                    policy={**_CONN, "max_retries": 2, "intervals": [1], "default_retry_delay": 1},
                    faults=({"kind": "fail_first", "k": 2},))
# Retries run out: ARQ, with nothing rescuing the last error, stores JobExecutionFailed in its place.
EXHAUSTED = Scenario("native-exhausted", task="work", jobs=2, workers=1, concurrency=2, schedule="native",
                     policy={**_CONN, "max_retries": 1, "intervals": [1], "default_retry_delay": 1},
                     faults=({"kind": "permanent"},))
# The plan's seeded, jittered sub-second delays, given to every library.
PLANNED = Scenario("planned-jitter", task="work", jobs=3, workers=1, concurrency=3,
                   policy={**_CONN, "max_retries": 2, "retry_backoff": 1, "retry_jitter": True},
                   faults=({"kind": "fail_first", "k": 2},))
# Where each library's scheduled retry is read back from (rq's registry scores are checked on their own).
SOURCE = {"celery": "celery:eta", "arq": "arq:queue_score", "dramatiq": "dramatiq:eta",
          "taskiq": "taskiq:schedule_source", "saq": "saq:incomplete_score"}


@pytest.fixture(scope="module", params=list(QUEUES))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str,
        backend_envs: Any) -> dict[str, Any]:
    backend = request.param
    out = tmp_path_factory.mktemp(f"schedules-{backend}")
    plan = RunPlan(backends=[parse_backend_spec(backend)], scenarios=[BACKOFF, INTERVAL, EXHAUSTED, PLANNED],
                   redis_url=redis_url, out=out, command=["pytest"])
    run_dir = execute(plan, log=lambda _m: None, progress_factory=lambda _c: (lambda _line: None))
    events = read_history(run_dir / "history.jsonl").events
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_scenario[e.get("scenario", "")].append(e)
    return {"backend": backend, "events": events, "scenarios": by_scenario}


def of(events: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]


def retries(run: dict[str, Any], scenario: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(failed attempt that got a retry, its schedule event) for every retry of the scenario; every retried
    attempt must have exactly one schedule event, and nothing else may."""
    events = run["scenarios"][scenario]
    failed = {(a["job_id"], a["attempt"]): a for a in of(events, "attempt", outcome="retry")}
    schedules = of(events, "schedule")
    keys = [(s["job_id"], s["attempt"]) for s in schedules]
    assert len(keys) == len(set(keys)), "one schedule event per retry"
    assert set(keys) == set(failed), (sorted(keys), sorted(failed))
    for s in schedules:
        assert set(s) == SCHEMA, sorted(set(s) ^ SCHEMA)
        assert isinstance(s["observed_ns"], int) and isinstance(s["pid"], int) and s["pid"] > 0
    return [(failed[(s["job_id"], s["attempt"])], s) for s in schedules]


def window(attempt: dict[str, Any], schedule: dict[str, Any]) -> tuple[float, float]:
    """The delay the library added to its own clock, bounded from its recorded due time alone: it read its clock
    after the failed attempt ended (``finished_ns``) and before the wrapper read the due time back
    (``observed_ns``), so that delay lies in [due - observed, due - finished]."""
    due = schedule["due_ns"]
    assert due is not None, schedule
    assert attempt["finished_ns"] <= schedule["observed_ns"]
    lo, hi = (due - schedule["observed_ns"]) / 1e9, (due - attempt["finished_ns"]) / 1e9
    # delay_s counts from when the wrapper handed the failure to the library: in between, too.
    assert lo - 1e-6 <= schedule["delay_s"] <= hi + 1e-6, (lo, schedule["delay_s"], hi)
    return lo - EPS_S, hi + EPS_S


# Where each library's due time is read from; any other library's source must at least be its own.
SOURCES = SOURCE


def assert_own_source(run: dict[str, Any], schedule: dict[str, Any]) -> None:
    backend = run["backend"]
    if backend in SOURCES:
        assert schedule["source"] == SOURCES[backend]
    else:
        assert schedule["source"].startswith(f"{backend}:"), schedule["source"]


def test_every_cell_completed_and_says_its_schedule(run: dict[str, Any]) -> None:
    for name, mode in (("native-backoff", "native"), ("native-interval", "native"), ("native-exhausted", "native"),
                       ("planned-jitter", "planned")):
        events = run["scenarios"][name]
        assert of(events, "run")[0]["schedule"] == mode
        assert of(events, "end")[0]["complete"], of(events, "end")
        assert all(s["schedule"] == mode for s in of(events, "schedule"))


def test_native_backoff_follows_each_librarys_own_formula(run: dict[str, Any]) -> None:
    pairs = retries(run, "native-backoff")
    assert len(pairs) == BACKOFF.jobs * 2
    for attempt, schedule in pairs:
        n = attempt["attempt"]
        base = 2 ** (n - 1)  # factor 1: 1 s, then 2 s
        assert attempt["expected_delay"] is None  # retrybench planned nothing: the library decided
        if run["backend"] == "celery" and schedule["source"] == "celery:no_eta":
            # Full jitter drew 0: Celery sends the retry with no ETA at all (its "if countdown:"), to run at once.
            assert schedule["due_ns"] is None and schedule["delay_s"] == 0.0
        elif run["backend"] == "celery":
            assert schedule["source"] == "celery:eta"
            lo, hi = window(attempt, schedule)
            # randrange(countdown + 1): a whole number of seconds in [0, countdown].
            whole = [k for k in range(base + 1) if lo <= k <= hi]
            assert whole, f"no whole-second countdown 0..{base} fits the ETA: delay in [{lo:.4f}, {hi:.4f}]"
        elif run["backend"] == "rq":
            assert schedule["source"] == "rq:scheduled_registry"
            assert schedule["due_ns"] % 1_000_000_000 == 0  # the registry scores whole seconds
            lo, hi = window(attempt, schedule)
            # interval=[1, 2] (RQ has no jitter); the score is now + interval truncated to the second.
            assert lo <= base < hi + 1, (lo, base, hi)
        elif run["backend"] == "dramatiq":
            assert schedule["source"] == "dramatiq:eta"
            assert schedule["due_ns"] % 1_000_000 == 0  # the eta is in milliseconds
            lo, hi = window(attempt, schedule)
            # compute_backoff: min_backoff (1 s) * 2**retries * uniform(1, 2), well under max_backoff (600 s).
            assert hi >= base and lo <= 2 * base, (lo, base, hi)
        elif run["backend"] == "taskiq":
            # SmartRetryMiddleware: use_delay_exponent gives default_delay * retries (linear, not 2**n), capped at
            # max_delay_exponent; use_jitter adds random() seconds. The due time is the schedule it filed.
            assert schedule["source"] == "taskiq:schedule_source"
            lo, hi = window(attempt, schedule)
            assert lo <= n + 1 and hi >= n, (lo, hi, n)
        elif run["backend"] == "saq":
            # Job.next_retry_delay: min(cap, retry_delay * 2 ** (attempts - 1)) * random(), scored in float seconds.
            assert schedule["source"] == "saq:incomplete_score"
            lo, hi = window(attempt, schedule)
            assert hi >= 0 and lo <= base, (lo, hi)
        else:
            if run["backend"] == "arq":
                assert schedule["source"] == "arq:queue_score"
                assert schedule["due_ns"] % 1_000_000 == 0  # the queue scores milliseconds
            else:
                assert_own_source(run, schedule)
            lo, hi = window(attempt, schedule)
            # ARQ: the task's own uniform(0, 2**(n-1)), in ms; a library with a backoff of its own and no
            # jitter (retry_delay * retry_backoff**(n-1)): exactly 2**(n-1)
            assert hi >= 0 and lo <= base, (lo, hi)


def test_native_single_interval(run: dict[str, Any]) -> None:
    pairs = retries(run, "native-interval")
    assert len(pairs) == INTERVAL.jobs * 2
    for attempt, schedule in pairs:
        lo, hi = window(attempt, schedule)
        if run["backend"] == "rq":
            assert schedule["source"] == "rq:scheduled_registry"
            assert lo <= 1 < hi + 1, (lo, hi)  # Retry(interval=1), truncated to the second
        elif run["backend"] == "dramatiq":
            # min_backoff = max_backoff = 1 s: 1 s * uniform(1, 2) always exceeds max_backoff, so Dramatiq draws
            # max_backoff * uniform(0.5, 1) instead (common.compute_backoff).
            assert schedule["source"] == "dramatiq:eta"
            assert lo <= 1 and hi >= 0.5, (lo, hi)
        else:
            # ARQ: Retry(defer=1); Celery: no backoff, so default_retry_delay (1 s) is the countdown; taskiq: the
            # first interval as SmartRetryMiddleware's default_delay. SAQ: retry_delay=1.
            assert_own_source(run, schedule)
            assert lo <= 1 <= hi, (lo, hi)
    if run["backend"] == "rq":
        starts = of(run["scenarios"]["native-interval"], "attempt_start")
        assert all(s["native"]["retry_intervals"] == [1] for s in starts)  # RQ stores a scalar as [interval]
def test_native_exhausted_retries(run: dict[str, Any]) -> None:
    events = run["scenarios"]["native-exhausted"]
    jobs = {e["job_id"] for e in of(events, "enqueue")}
    assert len(jobs) == EXHAUSTED.jobs
    for job_id in jobs:
        mine = [e for e in events if e.get("job_id") == job_id]
        assert [a["attempt"] for a in of(mine, "attempt")] == [1, 2]
        terminals = of(mine, "terminal")
        assert len(terminals) == 1 and terminals[0]["state"] == "failure"
        if run["backend"] == "arq":
            # ARQ ran the job once more, found job_try > max_tries and stored JobExecutionFailed: the real
            # ConnectionError is gone and no Celery-style failure handler ever ran.
            term = terminals[0]
            assert term["source"] == "arq:job_result"
            assert term["exc_type"].endswith("JobExecutionFailed"), term
            assert "max 2 retries exceeded" in term["exc_message"]
            assert term["attempts"] == 2
            assert not of(mine, "failure_record") and not of(mine, "callback", name="on_failure")
            # The last attempt's Retry was scheduled too (ARQ's data), though the policy had no retry left.
            assert [s["attempt"] for s in of(mine, "schedule")] == [1, 2]
        else:
            # RQ, Celery, taskiq and SAQ end it themselves, with the real error and their own on_failure.
            assert "source" not in terminals[0]
            assert terminals[0]["exc_type"] == "ConnectionError"
            assert len(of(mine, "failure_record")) == 1
            assert len(of(mine, "callback", name="on_failure")) == 1
            assert [s["attempt"] for s in of(mine, "schedule")] == [1]
    if run["backend"] == "arq":
        native = of(events, "native")[0]
        assert set(native["job_ids"]) == jobs  # ARQ's own store holds both failures


def test_planned_schedule_matches_the_plan(run: dict[str, Any]) -> None:
    pairs = retries(run, "planned-jitter")
    assert len(pairs) == PLANNED.jobs * 2
    for attempt, schedule in pairs:
        planned = attempt["expected_delay"]
        assert isinstance(planned, float) and 0 <= planned <= 2 ** (attempt["attempt"] - 1)
        lo, hi = window(attempt, schedule)
        if run["backend"] == "rq":
            assert schedule["source"] == "rq:scheduled_registry"
            assert lo <= planned < hi + 1, (lo, planned, hi)  # the planned float, then whole-second scores
        else:
            assert_own_source(run, schedule)
            assert lo <= planned <= hi, (lo, planned, hi)


_MAPPINGS = """
import json
from implementations.api.app import RetryApp
app = RetryApp("reference")
out = {}
for name, policy in json.loads(POLICIES).items():
    task = app.task(name=name, autoretry_for=["ConnectionError"], **policy)(lambda: None)
    if BACKEND == "rq":
        from implementations.backends.rq_backend.backend import native_interval, native_retry
        retry = native_retry(task)
        out[name] = [retry.max, retry.intervals, native_interval(task)]
    else:
        from implementations.backends.celery_backend.app import native_retry_options
        out[name] = native_retry_options(task)
print(json.dumps(out))
"""
_POLICIES = {"scalar": {"max_retries": 3, "intervals": [2]}, "list": {"max_retries": 3, "intervals": [1, 2]},
             "backoff": {"max_retries": 3, "retry_backoff": 2, "retry_backoff_max": 5, "retry_jitter": True},
             "fixed": {"max_retries": 2, "default_retry_delay": 7}}


@pytest.mark.parametrize("backend", ["rq", "celery"])
def test_native_policies_are_written_as_the_librarys_users_write_them(backend: str, backend_envs: Any) -> None:
    import json
    import subprocess

    env = backend_envs[backend]
    code = f"BACKEND = {backend!r}\nPOLICIES = {json.dumps(json.dumps(_POLICIES))}\n{_MAPPINGS}"
    done = subprocess.run([str(env.python), "-c", code], env=env.environ(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    if backend == "rq":
        # One interval is RQ's scalar Retry(interval=2); a list goes as given, even shorter than max (RQ then
        # repeats its first entry); a backoff becomes its unjittered delays (RQ has no backoff or jitter).
        assert got["scalar"] == [3, [2], 2]  # Retry(max=3, interval=2): the scalar, which RQ keeps as [2]
        assert got["list"][:2] == [3, [1, 2]]
        assert got["backoff"][:2] == [3, [2, 4, 5]]
        assert got["fixed"] == [2, [7], 7]
    else:
        # Celery computes the countdown itself: backoff, cap and jitter as given; without a backoff (or with
        # intervals, which Celery cannot express) its default_retry_delay.
        assert got["backoff"] == {"retry_backoff": 2.0, "retry_backoff_max": 5.0, "retry_jitter": True,
                                  "default_retry_delay": 180.0}
        assert got["scalar"]["retry_backoff"] is False and got["scalar"]["default_retry_delay"] == 180.0
        assert got["fixed"]["retry_backoff"] is False and got["fixed"]["default_retry_delay"] == 7.0

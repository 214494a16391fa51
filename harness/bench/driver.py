"""One cell of a run (backend × scenario × repetition), inside that backend's own virtualenv.

``python -m harness.bench.driver SPEC.json``: starts real workers, enqueues the scenario's jobs with the plan's
expectations, drains every event into ``history.jsonl`` as it arrives (Ctrl-C, SIGTERM and errors still
write everything recorded), and prints one JSON progress line per tick on stdout for the CLI's progress bars.
Imports only the standard library, redis-py and ``implementations`` (no rich, no backend in the CLI).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import time
from typing import IO, Any

from harness.bench.cell import (
    HistoryWriter,
    Tally,
    copy_records,
    cpu_snapshot,
    cpu_spent,
    deadline_s,
    is_disconnect,
    is_refusal,
    poll_interval,
    retry_schedule_s,
    settle,
)
from harness.bench.hostclock import DriverClock
from harness.bench.startup import PROBE_TIMEOUT_S, StartupProbe
from harness.plan.expect import expectations, job_id_for
from harness.plan.options import confined
from harness.plan.scenarios import Scenario
from implementations.api.tasks import build_app, prepare_user_code
from implementations.api.usercode import UserCodeError, task_name
from implementations.backends.base import BackendError
from implementations.core.config import AppConfig
from implementations.processes.external import ExternalWorkers
from implementations.recording import schema
from implementations.recording.events import harness_redis, now_ns
from implementations.recording.filesink import FileSink

EXIT_INTERRUPTED = 130
WHEREABOUTS_MAX = 10_000  # jobs looked for in the stores at the end (an interrupted 1e6-job run: the first)
BROKER_WAIT_S = 30.0  # how long the driver waits for a restarting broker before the cell fails (broker_wait_s)
EXIT_SETUP = 2


def drive_cell(spec: dict[str, Any], out: IO[str]) -> int:
    scenario = Scenario(**{**spec["scenario"], "faults": tuple(spec["scenario"]["faults"]),
                           "network": tuple(spec["scenario"].get("network") or ()),
                           "messages": tuple(spec["scenario"]["messages"])})
    config = AppConfig(
        # The URLs (with any password) come through the environment; the spec file holds redacted copies.
        backend=spec["backend"], label=spec.get("label", ""),
        redis_url=os.environ.get("RETRYBENCH_REDIS_URL") or spec.get("redis_url"),
        broker_url=os.environ.get("RETRYBENCH_BROKER_URL") or spec.get("broker_url"),
        cell_id=spec["cell_id"], seed=scenario.seed, faults=[dict(f) for f in scenario.faults],
        time_scale=scenario.time_scale, failure_log=spec.get("failure_log"), scenario=scenario.name,
        # Workers on this host write their events to a file the driver tails; elsewhere, to Redis.
        events_file=None if spec.get("external_workers") else spec.get("events_file"),
        task=scenario.task, policy=dict(scenario.policy), task_options=dict(scenario.task_options),
        options={**scenario.options, **spec.get("options", {}), "log_dir": spec.get("log_dir")},
        schedule=scenario.schedule, user_path=scenario.path, user_site=spec.get("user_site") or "",
    )
    try:
        # A user task: its module, and those its exception names live in, from the allowed path only (checked
        # before any worker started, harness.bench.usercheck; this is the driver's own import).
        prepare_user_code(config)
    except UserCodeError as exc:
        print(json.dumps({"error": str(exc)}), file=out, flush=True)
        return EXIT_SETUP
    log_json = config.options.get("log_json")
    if log_json and log_json != "-":
        # A scenario's path is a name inside the run directory, whatever it says (docs/security.md).
        config.options["log_json"] = confined(str(log_json), os.path.dirname(os.path.abspath(spec["history_path"])))
    stop = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    history = HistoryWriter(spec["history_path"])
    base = {"cell_id": config.cell_id, "backend": config.label, "scenario": scenario.name}
    policy, plan = scenario.retry_policy(), scenario.fault_plan()
    # From config.options: the scenario's own, with --option winning, as the backends read theirs.
    limit = spec.get("deadline_s") or float(config.options.get("deadline_s") or 0) or deadline_s(scenario)
    broker_wait_s = float(config.options.get("broker_wait_s") or BROKER_WAIT_S)
    history.write([schema.run(base, ts_ns=now_ns(), repeat=spec.get("repeat", 0), policy=policy.to_dict(),
                              faults=plan.to_list(), seed=scenario.seed, time_scale=scenario.time_scale,
                              jobs=scenario.jobs, workers=scenario.workers, concurrency=scenario.concurrency,
                              tolerance_s=scenario.tolerance_s,
                              late_budget_s=config.options.get("late_budget_s", scenario.late_budget_s),
                              **({"late_from": "turn"} if scenario.late_from == "turn" else {}),
                              poison=scenario.poison, deadline_s=limit, options=config.options,
                              external_workers=spec.get("external_workers", 0), schedule=config.schedule,
                              # A user task has no seeded plan of its outcome: "expected" is "not planned".
                              **({"task": scenario.task, "planned": False} if scenario.user_task else {}))])
    # Workers on other hosts: this host's clock against the broker's, at start and end (implementations/clock.py).
    clock = DriverClock(config.redis_url, base) if spec.get("external_workers") and config.redis_url else None
    if clock is not None:
        history.write(clock.events("start"))
    app = build_app(config)
    external = (ExternalWorkers(config, minimum=spec["external_workers"], concurrency=scenario.concurrency)
                if spec.get("external_workers") else None)
    # Workers elsewhere cannot append to this host's failed_jobs.log: copy their records from the stream.
    failure_log = spec.get("failure_log") if external else None
    tally = Tally(jobs=scenario.jobs)
    drain = app.runtime.sink.drain

    def keep(events: list[dict[str, Any]]) -> None:
        """What every drained batch goes to: the history, the failure log, and (for jobs that failed for
        good) the run's Redis stream."""
        history.write(events)
        copy_records(events, failure_log)
        if isinstance(app.runtime.sink, FileSink):
            app.runtime.sink.mirror(events)

    enqueue_s: float | None = None
    first_enqueue: float | None = None
    wall_s: float | None = None
    window_cpu: dict[str, float | None] | None = None
    cpu_client: Any = None
    reason, code = "complete", 0
    enqueued = 0
    try:
        # Worked out before the workers start and the clock runs (Jepsen's model comes first); it only goes
        # into the history, so the history-off baseline does not work it out at all.
        expected_of = expectations(scenario, config.cell_id) if app.runtime.record else None
        # Start-up, one definition on every backend (harness/bench/startup.py): probes wait on the queue before the
        # workers are spawned, and all of them have ended before the measured window opens.
        probe = None if external else StartupProbe(app, scenario.workers, scenario.concurrency,
                                                   float(config.options.get("probe_timeout_s") or PROBE_TIMEOUT_S))
        try:
            if probe is not None:
                probe.seed()
            startup = external.start() if external else app.start_workers(scenario.workers, scenario.concurrency)
        except BackendError as exc:
            history.write([schema.end(base, ts_ns=now_ns(), complete=False, reason=str(exc))])
            print(json.dumps({"error": str(exc)}), file=out, flush=True)
            return EXIT_SETUP
        ready: dict[str, Any] = {"startup_s": startup}
        early: list[dict[str, Any]] = []  # drained while probing: written after workers_ready, as before
        if probe is not None:
            fields, early = probe.run(lambda ms: app.runtime.sink.drain(block_ms=ms), library_ready_s=startup)
            ready.update(fields)
        history.write([schema.workers_ready(base, ts_ns=now_ns(), **ready), *early])
        task = app.tasks[task_name(scenario.task) if scenario.user_task else scenario.task]
        sink = app.runtime.sink
        t0 = now_ns()
        sink.set_t0(t0)
        restart_workers = bool(config.options.get("restart_workers", True))
        record = app.runtime.record
        down_since: float | None = None
        started = time.monotonic()
        last_tick = last_ping = 0.0
        # The Redis the queues run on: its CPU inside the window is part of what a job costs the 2 cores.
        cpu_client = harness_redis(config.redis_url, socket_timeout=5) if config.redis_url and not external else None
        cpu_at_start = cpu_snapshot(app.backend, cpu_client)

        def look_again_later() -> None:
            time.sleep(poll_interval(config.backend, tally, time.perf_counter() - (first_enqueue or 0.0)))

        while tally.terminal < tally.jobs:
            if stop["flag"]:
                reason, code = "interrupted", EXIT_INTERRUPTED
                break
            now = time.monotonic()
            due = tally.jobs if not scenario.enqueue_rate else min(
                tally.jobs, int((now - started) * scenario.enqueue_rate) + 1)
            if first_enqueue is None:
                first_enqueue = time.perf_counter()
            batch_start = time.perf_counter() if enqueued == 0 and not scenario.enqueue_rate else None
            # One burst: the enqueue marks go 64 to a command and the rest when it ends
            # (implementations/recording/marks.py).
            with sink.burst():
                while enqueued < due and not stop["flag"]:  # 100,000 jobs take RQ minutes: Ctrl-C must not wait
                    job_id = job_id_for(config.cell_id, enqueued)
                    args, kwargs = scenario.job_args(enqueued)
                    expected = expected_of[enqueued] if expected_of is not None else None
                    enqueued += 1
                    poison = scenario.is_poison(enqueued - 1)
                    if poison:
                        # No task body ever sees a poison job, so nothing may ever make it terminal here: the
                        # run waits for the others, then (settle) for the backend's own store to list it.
                        tally.jobs -= 1
                    try:
                        task.apply_async(args, kwargs, task_id=job_id, meta={"expected": expected})
                        if poison:
                            tally.poison_ids.add(job_id)
                    except Exception as exc:  # noqa: BLE001 - a payload the library refuses is a result, not a crash
                        if is_disconnect(exc):
                            enqueued -= 1  # the broker is restarting: this job goes in on a later tick
                            tally.jobs += poison
                            break
                        if not is_refusal(exc):
                            raise
                        if not poison:
                            tally.jobs -= 1  # never queued (the history has its enqueue_error): nothing will end it
            if batch_start is not None and enqueued == due:
                enqueue_s = time.perf_counter() - batch_start  # every job at once: the client's enqueue rate
            if restart_workers and not external:
                history.write([schema.worker(base, event="restarted", ts_ns=now_ns(), **w)
                               for w in app.backend.revive_workers()])
            if now - started > limit:
                reason = f"deadline: {tally.jobs - tally.terminal} job(s) not terminal after {limit:.0f}s"
                break
            if not record:
                # No history to read: the library's own count says when every job is done (the harness-
                # overhead baseline), as often as the other side reads its events.
                count = app.backend.native_terminal_count()
                if count is None:
                    raise BackendError(f"{config.backend} cannot count finished jobs: record_history=false "
                                       "needs a backend that can")
                tally.terminal = count
                if tally.terminal < tally.jobs:  # done: the run ends now, not a poll later
                    look_again_later()
                continue
            try:
                events = drain(block_ms=100)
                if now - last_ping >= 0.5:
                    # Events may come through a local file: ask Redis itself whether it is still there.
                    sink.t0()
                    last_ping = now
                down_since = None
            except Exception as exc:
                # A broker restart (the broker-restart scenario): wait for it, as workers must, but not forever.
                if not is_disconnect(exc):
                    raise
                down_since = down_since or now
                if now - down_since > broker_wait_s:
                    raise ConnectionError(f"Redis unreachable for {broker_wait_s:g}s (broker_wait_s): {exc}") from exc
                time.sleep(0.1)
                continue
            keep(events)
            tally.count(events)
            if events and tally.terminal < tally.jobs and not sink.behind():
                # Read in batches, as often as the history-off baseline counts (cell.poll_interval): a read
                # per handful of events would spend the CPU, and the moments, the workers are measured on.
                # But never sleep on a full chunk: at 30,000 events/s a chunk per look fell behind, the
                # backlog grew in memory and the driver saw 100,000 jobs end 23 s after they had.
                look_again_later()
            if now - last_tick >= 0.25:
                last_tick = now
                print(json.dumps({"done": tally.terminal, "jobs": tally.jobs, "attempts": tally.attempts,
                                  "failed": tally.failed, "elapsed": now - started}), file=out, flush=True)
        if first_enqueue is not None and reason == "complete":
            # As the driver saw it, the same way in both modes (with the history off, the backend may know better).
            done_at = None if record else app.backend.native_done_at
            wall_s = (done_at or time.perf_counter()) - first_enqueue
            window_cpu = cpu_spent(cpu_at_start, cpu_snapshot(app.backend, cpu_client))
        if reason == "complete":
            # RQ retries a job it cannot decode like any failure, so a poison job reaches the failed store only
            # after the whole retry schedule: wait that long for it (never past the deadline).
            waiting = tally.poison_ids - tally.terminal_ids
            grace = min(max(0.0, limit - (time.monotonic() - started)), retry_schedule_s(scenario) + 5.0)
            settle(app, tally.failed_ids | waiting, timeout=grace if waiting else 5.0)
    except BaseException as exc:
        reason, code = f"error: {type(exc).__name__}: {exc}", 1
        raise
    finally:
        try:
            cpu_s = None
            if external:
                external.stop()
                external.close()
            else:
                cpu_s = app.backend.worker_cpu_s()  # before the stop: a stopped worker's times are gone with it
                app.stop_workers(timeout=5.0)
            copied = False
            try:
                while events := drain():  # a drain returns a chunk: read to the end
                    keep(events)
                copied = True
                native = app.backend.native_failures()
                if native:
                    history.write([schema.native(base, **native)])
                # Where each job that never became terminal still is, in the library's own stores: only
                # that tells "unrecovered at the end" from "lost" (in none).
                missing = [job_id_for(config.cell_id, k) for k in range(enqueued)]
                missing = [j for j in missing if j not in tally.terminal_ids][:WHEREABOUTS_MAX]
                where = app.backend.whereabouts(missing) if missing else {}
                if where:
                    history.write([schema.whereabouts(base, ts_ns=now_ns(), **where)])
            except Exception as exc:  # noqa: BLE001 - Redis may be gone; what was recorded stays recorded
                reason = f"{reason}; could not read the final events: {exc}"
            # The harness's own footprint (the history is streamed, never held).
            if clock is not None:
                history.write(clock.events("end"))
            usage = resource.getrusage(resource.RUSAGE_SELF)
            peak_mb = usage.ru_maxrss / 1024
            history.write([schema.end(base, ts_ns=now_ns(), complete=reason == "complete", reason=reason,
                                      driver_peak_rss_mb=round(peak_mb, 1), worker_cpu_s=cpu_s,
                                      driver_cpu_s=round(usage.ru_utime + usage.ru_stime, 3), enqueue_s=enqueue_s,
                                      wall_s=wall_s, window_cpu_s=window_cpu, jobs_done=tally.terminal,
                                      record_history=app.runtime.record,
                                      native_stale_states=app.backend.stale_states)])
        finally:
            history.close()  # whatever failed above: what the history holds is written here
        if cpu_client is not None:
            cpu_client.close()
        app.close()
        if copied and config.events_file:
            # Every event it held is in history.jsonl now; until then it stayed, whatever ended the run.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.events_file)
        print(json.dumps({"done": tally.terminal, "jobs": tally.jobs, "attempts": tally.attempts,
                          "failed": tally.failed, "finished": True, "reason": reason}), file=out, flush=True)
    return code


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m harness.bench.driver SPEC.json", file=sys.stderr)
        sys.exit(EXIT_SETUP)
    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    sys.exit(drive_cell(spec, sys.stdout))


if __name__ == "__main__":
    main()

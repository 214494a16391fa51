"""The ``retrybench`` argument parser, and the checks that turn ``run``'s arguments into a ``RunPlan``: bad input
raises ``UsageError`` (one line, exit 2) before anything starts."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from harness.ops.commands import Command, add_commands
from harness.orchestrate.envs import EnvError, parse_backend_spec
from harness.orchestrate.hosts import HostsError, add_host_arguments, plan_hosts
from harness.orchestrate.matrix import add_matrix_options
from harness.orchestrate.runner import RunPlan, restart_spec
from harness.plan.options import check_options
from harness.plan.presets import PRESETS, resolve
from harness.plan.scenarios import ScenarioError, with_overrides
from implementations.backends import QUEUES, REGISTRY, is_in_process
from implementations.core.config import SCHEDULES
from implementations.core.policy import PolicyError

DEFAULT_BACKENDS = list(REGISTRY)
# What one machine is expected to run (docs/security.md): beyond it, --allow-large. --workers 100000 once
# spawned about 5,700 processes before anyone could stop it.
LIMITS = {"jobs": 1_000_000, "workers": 64, "concurrency": 256}
OPS_COMMANDS: dict[str, Command] = {}


class UsageError(Exception):
    """Bad input: the message is the one line the user sees (exit 2)."""


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    value: Any = raw
    for cast in (int, float):
        try:
            value = cast(raw)
            break
        except ValueError:
            continue
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrybench", description=(
        "How do job queues (Celery, RQ, ARQ, Dramatiq, Taskiq, SAQ, Huey) really behave when background jobs fail? "
        "Real Redis, real workers, honest numbers."))
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run scenarios on backends and write results/<run-id>/")
    run.add_argument("--backend", "-b", action="append", metavar="NAME[==VERSION]",
                     help=f"{', '.join(REGISTRY)} (repeatable; pin e.g. celery==5.6.*). Default: all of them")
    run.add_argument("--repeat", type=int, default=1, help="run every cell N times; tables show medians")
    _run_options(run)
    matrix = sub.add_parser("matrix", help="run scenarios on several releases of one library, each in its own "
                            "environment, and report what changed beyond noise between consecutive releases")
    add_matrix_options(matrix)
    _run_options(matrix)

    report = sub.add_parser("report", help="recompute every metric of a results directory from its history and "
                            "write report.md and report.html")
    report.add_argument("dir", type=Path, nargs="?", default=Path("results/latest"))
    report.add_argument("--junit", type=Path, metavar="FILE", help="also write every check as JUnit XML")

    cmp = sub.add_parser("compare", help="compare two results (BASE, NEW): change, direction, significance; "
                         "exit 1 when a --fail-on threshold is crossed")
    cmp.add_argument("base", type=Path, help="results directory or results.json")
    cmp.add_argument("new", type=Path, help="results directory or results.json")
    cmp.add_argument("--fail-on", action="append", default=[], metavar="METRIC:+N%",
                     help="fail when METRIC changes by more than N%% (or N in the unit tables show) in that "
                     "direction, e.g. lateness_p95:+10%%, throughput_jobs_s:-20%%, lateness_p99:+50")
    cmp.add_argument("--fail-on-invalid", action="store_true",
                     help="fail when a backend × scenario valid in BASE is invalid in NEW")
    cmp.add_argument("--format", choices=["table", "markdown"], default="table")
    cmp.add_argument("--all", action="store_true", help="also list metrics that did not change")

    sub.add_parser("scenarios", help="list the built-in scenarios")

    for name, text in (("shell", "an interactive Python in a backend's environment, the project importable"),
                       ("exec", "run a command in a backend's environment, the project importable, e.g. "
                                "retrybench exec -b celery -- python script.py")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--backend", "-b", required=True, metavar="NAME[==VERSION]",
                         help=f"{', '.join(REGISTRY)} (optionally pinned, e.g. celery==5.6.*)")
        if name == "exec":
            cmd.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    OPS_COMMANDS.update(add_commands(sub))
    return parser


def _run_options(run: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``matrix`` share: scenarios, sizes, servers, output."""
    run.add_argument("--scenario", "-s", action="append", metavar="PRESET|FILE.toml",
                     help=f"a preset ({', '.join(PRESETS)}) or a scenario file; repeatable. Default: seed-lesson")
    run.add_argument("--jobs", type=int, help="override the scenario's number of jobs")
    run.add_argument("--workers", type=int, help="worker processes per backend")
    run.add_argument("--concurrency", type=int, help="concurrency per worker (RQ: processes, ARQ: max_jobs, "
                     "Celery: pool size)")
    run.add_argument("--seed", type=int, help="seed of the fault plan and jitter")
    run.add_argument("--time-scale", type=float, help="multiply every delay (0.1 = ten times faster)")
    run.add_argument("--schedule", choices=SCHEDULES, default=None,
                     help="who decides each retry's delay: planned (retrybench's seeded plan, the default) or "
                          "native (each library's own formula; see docs/schedules.md); overrides the scenario's")
    run.add_argument("--redis-url", default=os.environ.get("RETRYBENCH_REDIS_URL") or None,
                     help="use this Redis (keys under retrybench:<run>) instead of a private one (default "
                     "$RETRYBENCH_REDIS_URL: keeps a password off the command line)")
    run.add_argument("--broker-url", default=os.environ.get("RETRYBENCH_BROKER_URL") or None,
                     help="Celery broker (default: $RETRYBENCH_BROKER_URL, else the Redis URL), "
                     "e.g. amqp://127.0.0.1//")
    run.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results/)")
    run.add_argument("--option", "-o", action="append", type=_option, default=[], metavar="KEY=VALUE",
                     help="backend tuning, e.g. rq_worker_class=SimpleWorker, arq_poll_delay=0.1, celery_pool=threads")

    run.add_argument("--external-workers", type=int, nargs="?", const=1, default=0, metavar="N",
                     help="start no workers: measure N (default 1) started elsewhere, e.g. by docker compose "
                     "(needs --redis-url; docs/deploy.md)")
    add_host_arguments(run)
    run.add_argument("--junit", type=Path, metavar="FILE", help="also write every check of every cell as JUnit XML")
    run.add_argument("--path", metavar="DIR", help="the directory a scenario's own task, argument and exception "
                     "modules are imported from (default: the scenario file's directory; docs/own-tasks.md)")
    run.add_argument("--allow-large", action="store_true",
                     help=f"allow more than {LIMITS['jobs']:,} jobs, {LIMITS['workers']} workers or "
                     f"{LIMITS['concurrency']} concurrency (a big machine)")


def plan_run(args: argparse.Namespace) -> RunPlan:
    """``run``'s (and ``matrix``'s) arguments as a ``RunPlan``; ``UsageError`` for anything that cannot run."""
    try:
        backends = [parse_backend_spec(b) for b in (args.backend or DEFAULT_BACKENDS)]
        if args.path is not None and not Path(args.path).is_dir():
            raise UsageError(f"--path {args.path}: not a directory")
        user_path = str(Path(args.path).resolve()) if args.path is not None else None
        scenarios = [with_overrides(resolve(s, user_path=user_path), jobs=args.jobs, workers=args.workers,
                                    concurrency=args.concurrency, seed=args.seed, time_scale=args.time_scale,
                                    schedule=args.schedule)
                     for s in (args.scenario or ["seed-lesson"])]
        check_options(dict(args.option), "--option")
    except (EnvError, ScenarioError, PolicyError) as exc:
        raise UsageError(str(exc)) from None
    given = {k for k in ("jobs", "workers", "concurrency") if getattr(args, k) is not None} | dict(args.option).keys()
    for s in scenarios:
        # A swept setting overridden on the command line would run every variant alike, under the sweep's labels.
        if clash := sorted(given & set(s.sweep)):
            raise UsageError(f"scenario {s.name!r} sweeps {', '.join(clash)}: the command line cannot also set it "
                             "(drop the option, or use a scenario file without that sweep)")
    if args.repeat < 1:
        raise UsageError(f"--repeat must be >= 1, got {args.repeat}")
    if not args.allow_large:
        _check_limits(scenarios)
    _check_out(args.out)
    restarting = [s.name for s in scenarios if restart_spec(s)]
    if restarting and args.redis_url:
        raise UsageError(f"{', '.join(restarting)} restart(s) the broker mid-run: that needs the private Redis "
                         "retrybench starts itself (drop --redis-url)")
    if args.external_workers:
        if args.external_workers < 0:
            raise UsageError(f"--external-workers must be >= 1, got {args.external_workers}")
        if not args.redis_url:
            raise UsageError("--external-workers needs --redis-url: the Redis that the external workers use")
        if in_process := [b.backend for b in backends if is_in_process(b.backend)]:
            raise UsageError(f"--external-workers: {', '.join(in_process)} runs in-process; choose "
                             f"{', '.join(QUEUES)} with --backend")
    try:
        hosts, skews = plan_hosts(args, [b.backend for b in backends], scenarios)
    except HostsError as exc:
        raise UsageError(str(exc)) from None
    return RunPlan(backends=backends, scenarios=scenarios, repeat=args.repeat, redis_url=args.redis_url,
                   broker_url=args.broker_url, out=args.out, options=dict(args.option), command=sys.argv,
                   external_workers=args.external_workers, hosts=hosts, clock_skew=skews)


def _check_limits(scenarios: list[Any]) -> None:
    for s in scenarios:
        for key, limit in LIMITS.items():
            values = [getattr(s, key)] + [v for v in s.sweep.get(key, []) if isinstance(v, int)]
            if max(values) > limit:
                raise UsageError(f"scenario {s.name!r}: {key} {max(values):,} is over the limit of {limit:,} "
                                 "(give --allow-large on a machine that can take it)")


def _check_out(out: Path) -> None:
    """--out must be a directory we can write: found now, in one line, not as a traceback after the run."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None

"""``retrybench run``: Redis, environments, one driver process per cell, and the results directory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.storage import HISTORY, environment, new_run_id, point_latest
from harness.orchestrate.envs import EnvSpec, ensure_envs
from harness.orchestrate.hosts import chained, hosts_for, redis_on_hosts
from harness.orchestrate.redis_server import RedisServer, RedisUnavailable, check_redis_url
from harness.orchestrate.usertasks import prepare_user_tasks
from harness.plan.scenarios import Scenario
from harness.plan.sweep import variants
from implementations.backends import is_in_process
from implementations.backends.base import SOURCE_ROOT
from implementations.core.procs import spawn, terminate
from implementations.core.redact import redact_argv, redact_url
from implementations.recording import schema

Progress = Callable[[dict[str, Any]], None]


class Interrupted(Exception):
    """The user pressed Ctrl-C (or sent SIGTERM); what was recorded is kept."""


class RunAborted(Exception):
    """The run cannot go on (Redis went away, a driver died); what was recorded is kept. Args: run_dir, message."""


class CellSetupFailed(Exception):
    """A cell could not start (a worker refused its options, ...): a setup error, exit 2. Args: run_dir, message."""


# The environment variables that carry the run's servers to its drivers, workers and requeues: a URL with a
# password never goes on a command line (``ps`` shows every argv) or into a file under results/.
REDIS_URL_ENV = "RETRYBENCH_REDIS_URL"
BROKER_URL_ENV = "RETRYBENCH_BROKER_URL"


@dataclass
class RunPlan:
    """What ``retrybench run`` was asked to do, validated."""

    backends: list[EnvSpec]
    scenarios: list[Scenario]
    repeat: int = 1
    redis_url: str | None = None
    broker_url: str | None = None
    out: Path = Path("results")
    options: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    env_root: Path | None = None
    external_workers: int = 0  # > 0: start no workers, wait for this many started elsewhere
    hosts: int = 0  # > 0: simulated hosts (harness/hosts.py): Redis on one, a worker on each of this many others
    clock_skew: dict[str, float] = field(default_factory=dict)  # worker host -> seconds its clock is off (tests)


@dataclass
class Cell:
    backend: EnvSpec
    scenario: Scenario
    repeat: int
    cell_id: str

    @property
    def label(self) -> str:
        return f"{self.backend} · {self.scenario.name}" + (f" · #{self.repeat + 1}" if self.repeat else "")


def counterbalanced(cells: list[Scenario], repeat: int) -> list[Scenario]:
    """A sweep's variants in run order for repetition ``repeat``: as listed, then reversed, and so on.

    The variants of one repetition run back to back, and the overhead verdict pairs them. A variant that
    always ran first would carry every order effect (the previous cell's workers still exiting, a colder
    cache) into its difference from the next; alternating the order (ABBA) cancels it, and a steady drift.
    """
    return cells[::-1] if repeat % 2 else cells


def restart_spec(s: Scenario) -> tuple[float, float] | None:
    """``(at_s, down_s)`` when the scenario restarts the broker mid-run (options ``broker_restart_at``,
    ``broker_down_s``), measured from the cell's first progress line."""
    at = s.options.get("broker_restart_at")
    return (float(at), float(s.options.get("broker_down_s", 1.0))) if at is not None else None


def restart_broker(server: RedisServer, *, down_s: float, history: Path, base: dict[str, Any]) -> None:
    """SIGKILL the private redis-server (a crash, not a clean shutdown), keep it down, start it again on the
    same port from its append-only file; both moments go into the history for the checkers."""
    down = time.time_ns()
    server.restart(hard=True, down_s=down_s)
    up = time.time_ns()
    line = json.dumps(schema.broker(base, event="restart", ts_ns=up, down_ns=down, up_ns=up,
                                    appendonly=server.appendonly)) + "\n"
    # O_APPEND: the driver appends to the same file; one short write stays one whole line.
    fd = os.open(history, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@contextlib.contextmanager
def redis_for(plan: RunPlan, log: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """The user's Redis (checked) or a private one on a free port (on a simulated host of its own with
    ``--hosts``), stopped however we leave."""
    if plan.hosts:
        with redis_on_hosts(plan.hosts, plan.clock_skew, log,
                            appendonly=any(restart_spec(s) for s in plan.scenarios)) as info:
            yield info
        return
    if plan.redis_url:
        info = check_redis_url(plan.redis_url)
        log(f"using Redis at {redact_url(plan.redis_url)}")
        yield {"url": plan.redis_url, "embedded": False, **info}
        return
    # A scenario that restarts the broker needs it to keep its data: append-only file, fsync every second
    # (Redis's recommended setting, which can lose the last second of writes — that is part of the finding).
    server = RedisServer(appendonly=any(restart_spec(s) for s in plan.scenarios))
    server.start()
    log(f"started a private {server.version.get('server', 'redis')}-server "
        f"{server.version.get('version', '')} on {server.safe_url} (password required)"
        + (" (AOF on)" if server.appendonly else ""))
    try:
        yield {"url": server.url, "embedded": True, "pid": server.pid, "appendonly": server.appendonly,
               **server.version, "server_obj": server}
    finally:
        server.stop()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def launch_cell(cell: Cell, *, python: str, run_dir: Path, redis_url: str, plan: RunPlan,
             progress: Progress, server: RedisServer | None = None, site: str = "") -> dict[str, Any]:
    """Run one driver to the end; returns its last progress line (``reason`` says how it ended)."""
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    spec = {
        "scenario": cell.scenario.to_dict(), "backend": cell.backend.backend, "label": str(cell.backend),
        "cell_id": cell.cell_id,
        # Redacted: the driver takes the real URLs from its environment.
        "repeat": cell.repeat, "redis_url": redact_url(redis_url), "broker_url": redact_url(plan.broker_url),
        "history_path": str(run_dir / HISTORY), "failure_log": str(run_dir / "failed_jobs.log"),
        "events_file": str(logs / f"{cell.cell_id}-events.jsonl"),
        "log_dir": str(logs), "options": plan.options, "external_workers": plan.hosts or plan.external_workers,
        "user_site": site,
    }
    spec_path = logs / f"{cell.cell_id}.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    env = dict(os.environ)
    # A user task's requirements (``site``): the driver's, and through it every worker's.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, site, env.get("PYTHONPATH", "")]))
    env[REDIS_URL_ENV] = redis_url
    env.pop(BROKER_URL_ENV, None)
    if plan.broker_url:
        env[BROKER_URL_ENV] = plan.broker_url
    proc = spawn([python, "-m", "harness.bench.driver", str(spec_path)], env=env, pipe_stdout=True,
                 log_path=str(logs / f"{cell.cell_id}-driver.log"))
    last: dict[str, Any] = {}
    restart = restart_spec(cell.scenario) if server is not None else None
    if restart and server is not None:
        # everysec (Redis's default) can lose the last second of acknowledged writes when the server is
        # killed; "always" fsyncs every write. A restart cell says which it measures; the rest of the run
        # keeps the default.
        server.config_set("appendfsync", str(cell.scenario.options.get("redis_appendfsync", "everysec")))
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                last = json.loads(raw)
            except ValueError:
                continue
            progress(last)
            if restart and server and float(last.get("elapsed") or 0) >= restart[0] and not last.get("finished"):
                base = {"cell_id": cell.cell_id, "backend": str(cell.backend), "scenario": cell.scenario.name}
                restart_broker(server, down_s=restart[1], history=run_dir / HISTORY, base=base)
                restart = None
        proc.wait()
    except KeyboardInterrupt:
        # The driver stops its workers and writes its final events on SIGTERM; give it time to.
        terminate(proc, timeout=20, sig=signal.SIGTERM)
        raise
    finally:
        if proc.poll() is None:
            terminate(proc, timeout=5)
    if proc.returncode not in (0, 130) and "error" not in last:
        tail = (logs / f"{cell.cell_id}-driver.log").read_text(errors="replace").strip().splitlines()[-3:]
        last = {**last, "error": f"driver exited with {proc.returncode}: " + " | ".join(tail)}
    return {**last, "exit_code": proc.returncode}


def execute(plan: RunPlan, *, log: Callable[[str], None], progress_factory: Callable[[Cell], Progress],
            on_cell_done: Callable[[Cell, dict[str, Any]], None] | None = None) -> Path:
    """Run every cell; returns the results directory. Raises ``Interrupted`` after a clean stop."""
    root = plan.env_root or Path(SOURCE_ROOT) / ".venvs"
    needed = [b for b in plan.backends if not is_in_process(b.backend)]
    if needed:
        log("preparing backend environments (created once, reused while their pins are unchanged): "
            + ", ".join(str(b) for b in needed))
    envs = {str(e.spec): e for e in ensure_envs(needed, root=root, log=log)}
    if any(s.user_task for s in plan.scenarios):
        from harness.orchestrate.envs import ensure_env

        envs.update({str(b): ensure_env(b, root=root) for b in plan.backends if is_in_process(b.backend)})
    # A task of the user's own: requirements installed and imports checked in every environment, before the
    # run directory, Redis or any worker exists (bad input: one line, exit 2, nothing left behind).
    sites, user_code = prepare_user_tasks(plan, envs, root=root, log=log)
    run_id = new_run_id()
    run_dir = plan.out / run_id
    pythons = {str(b): str(envs[str(b)].python) if str(b) in envs else sys.executable for b in plan.backends}
    versions = {str(b): envs[str(b)].versions if str(b) in envs else {} for b in plan.backends}
    interrupted = False
    with sigterm_as_interrupt(), redis_for(plan, log) as redis_info:
        # Only now that Redis answers: a run that cannot start leaves no empty directory and keeps `latest`.
        plan.out.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()
        point_latest(plan.out, run_dir)
        meta = schema.meta(
            run_id, environment=environment(root=Path(SOURCE_ROOT), command=redact_argv(plan.command),
                                            redis={k: v for k, v in redis_info.items()
                                                   if k not in ("url", "server_obj", "hosts_obj")},
                                            backends=versions) | ({"user_code": user_code} if user_code else {}),
            scenarios={v.name: v.to_dict() for s in plan.scenarios for b in plan.backends
                       for v in variants(s, b.backend)}, repeat=plan.repeat,
            cells=plan.repeat * sum(len(variants(s, b.backend)) for s in plan.scenarios for b in plan.backends))
        with open(run_dir / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(meta, default=str) + "\n")
        cells = [Cell(b, v, r, f"{run_id.replace('-', '')[-10:]}{i:03d}")
                 for r in range(plan.repeat) for s in plan.scenarios for i, b in enumerate(plan.backends)
                 for v in counterbalanced(variants(s, b.backend), r)]
        # Unique cell ids across the whole run: RQ and ARQ keep job ids (and results) per id.
        cells = [Cell(c.backend, c.scenario, c.repeat, f"{c.cell_id}x{n}") for n, c in enumerate(cells)]
        died: list[str] = []
        try:
            for cell in cells:
                site = sites.get((str(cell.backend), cell.scenario.sweep_of or cell.scenario.name), "")
                with hosts_for(redis_info.get("hosts_obj"), cell, python=pythons[str(cell.backend)],
                               run_dir=run_dir, site=site) as hook:
                    progress = progress_factory(cell)
                    last = launch_cell(cell, python=pythons[str(cell.backend)], run_dir=run_dir,
                                    redis_url=redis_info["url"], plan=plan, server=redis_info.get("server_obj"),
                                    progress=progress if hook is None else chained(progress, hook), site=site)
                if on_cell_done:
                    on_cell_done(cell, last)
                if last.get("error") or str(last.get("reason", "")).startswith("error"):
                    # One broken cell is a finding; a Redis that is gone breaks every cell after it.
                    try:
                        check_redis_url(redis_info["url"])
                    except RedisUnavailable as exc:
                        raise RunAborted(str(run_dir), f"Redis went away during {cell.label}: {exc}") from None
                code = last.get("exit_code")
                if code == 2:  # the driver's EXIT_SETUP: its workers could not start
                    raise CellSetupFailed(str(run_dir), f"{cell.label}: {last.get('error') or 'setup failed'}")
                if code not in (None, 0, 130):
                    # The other cells still run (one broken cell is a finding), but the run exits 1.
                    died.append(f"the driver of {cell.label} died (exit code {code})")
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise Interrupted(str(run_dir))
    if died:
        raise RunAborted(str(run_dir), "; ".join(died))
    return run_dir

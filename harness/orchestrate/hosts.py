"""``retrybench run --hosts N``: Redis on one simulated host, one worker on each of N others (docs/multi-host.md).

Every host is a network namespace (harness/orchestrate/netns.py). The private Redis runs in the broker's; each
worker host runs the external-worker supervisor (implementations/processes/external.py) of the cell's backend,
which starts one worker there; the CLI and the driver stay in the root namespace (the harness host). A worker host
with a latency or drop fault reaches Redis through the proxy (harness/orchestrate/netproxy.py), the others
directly. Every namespace, link, proxy and supervisor goes when the run ends, however it ends; a SIGKILLed run's
namespaces are removed by the next run (their processes died with it: parent-death signal).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.orchestrate.netns import Topology, unavailable
from harness.orchestrate.redis_server import RedisServer
from harness.plan.netfaults import Nemesis, NetFault, parse_network, scaled
from implementations.backends.base import SOURCE_ROOT
from implementations.core.procs import die_with_parent, spawn, terminate

REDIS_PORT = 6380  # inside the broker's own namespace: nothing else listens there
PROXY_PORT = 6390
MAX_HOSTS = 16


class HostsError(RuntimeError):
    """Simulated hosts cannot be used here, or as asked (one line, exit 2)."""


def check_hosts(hosts: int, scenarios: Sequence[Any], skews: dict[str, float]) -> None:
    """Before anything starts: --hosts possible here, and every network fault and skew names a host that exists."""
    if hosts:
        if not 1 <= hosts <= MAX_HOSTS:
            raise HostsError(f"--hosts must be between 1 and {MAX_HOSTS}, got {hosts}")
        if why := unavailable():
            raise HostsError(why)
    for s in scenarios:
        faults = parse_network(list(s.network)) if s.network else ()
        if faults and not hosts:
            raise HostsError(f"scenario {s.name!r} has network faults: run it with --hosts N "
                             "(simulated hosts, Linux and root; docs/multi-host.md)")
        if faults and max(f.host for f in faults) > hosts:
            raise HostsError(f"scenario {s.name!r} faults worker host {max(f.host for f in faults)}: "
                             f"give --hosts {max(f.host for f in faults)} or more")
    for name in skews:
        if not hosts or name not in [f"w{k}" for k in range(1, hosts + 1)]:
            raise HostsError(f"--clock-skew {name}: no such worker host (w1 … w{hosts} with --hosts {hosts})")


def add_host_arguments(run: Any) -> None:
    run.add_argument("--hosts", type=int, default=0, metavar="N",
                     help="simulated hosts (Linux, root): Redis on one network namespace, one worker on each of N "
                     "others; needed by scenarios with network faults (docs/multi-host.md)")
    run.add_argument("--clock-skew", action="append", default=[], metavar="HOST=SECONDS",
                     help="with --hosts: the recording clock of worker host HOST (w1, w2, …) is this many seconds "
                     "off; the analysis corrects it (docs/multi-host.md)")


def plan_hosts(args: Any, backends: Sequence[str], scenarios: Sequence[Any]) -> tuple[int, dict[str, float]]:
    """``--hosts`` and ``--clock-skew`` checked against the rest of the command line and the scenarios."""
    from implementations.backends import is_in_process

    hosts, skews = int(getattr(args, "hosts", 0) or 0), parse_skews(getattr(args, "clock_skew", None) or [])
    if hosts:
        if args.redis_url or args.external_workers:
            raise HostsError("--hosts starts its own Redis and workers: drop --redis-url and --external-workers")
        if in_process := [b for b in backends if is_in_process(b)]:
            raise HostsError(f"--hosts: {', '.join(in_process)} runs in-process; choose a real queue with --backend")
    check_hosts(hosts, scenarios, skews)
    return hosts, skews


def parse_skews(values: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in values:
        name, _, seconds = v.partition("=")
        try:
            out[name.strip()] = float(seconds)
        except ValueError:
            raise HostsError(f"--clock-skew {v!r}: expected HOST=SECONDS, e.g. w2=5") from None
    return out


class _Proxy:
    """The proxy process in the broker's namespace, driven through its stdin."""

    def __init__(self, topo: Topology, hosts: list[str], redis_port: int, log_path: str) -> None:
        env = {**os.environ, "PYTHONPATH": SOURCE_ROOT}
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [*topo.exec_prefix(topo.broker_ns), sys.executable, "-m", "harness.orchestrate.netproxy"], env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                preexec_fn=die_with_parent)
        listen = [{"name": h, "host": topo.link(h).broker_addr, "port": PROXY_PORT} for h in hosts]
        self.ask({"listen": listen, "target": ["127.0.0.1", redis_port]})

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the network proxy exited ({self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if answer.get("ok") is False:
            raise RuntimeError(str(answer.get("error")))
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        terminate(self.proc, timeout=3)  # type: ignore[arg-type]


@dataclass
class MultiHost:
    """One run's simulated hosts: the topology and the broker, for the whole run; proxy and supervisors per cell."""

    hosts: int
    skews: dict[str, float] = field(default_factory=dict)
    topo: Topology | None = None
    server: RedisServer | None = None

    def url_for(self, host: str, port: int = REDIS_PORT) -> str:
        assert self.topo is not None and self.server is not None
        return f"redis://:{self.server.password}@{self.topo.link(host).broker_addr}:{port}/0"

    @contextlib.contextmanager
    def cell(self, *, backend: str, python: str, scenario: Any, logs: Path, history: Path, base: dict[str, Any],
             site: str = "") -> Iterator[Callable[[dict[str, Any]], None]]:
        """Proxy (if the cell's faults need one) and one supervisor per worker host, for one cell; yields the
        progress hook that starts the cell's network faults."""
        assert self.topo is not None and self.server is not None
        topo = self.topo
        faults: list[NetFault] = scaled(parse_network(list(scenario.network)), scenario.time_scale)
        proxied = sorted({f.host_name for f in faults if f.proxied})
        proxy = _Proxy(topo, proxied, REDIS_PORT, str(logs / f"{base['cell_id']}-proxy.log")) if proxied else None
        supervisors: list[subprocess.Popen[bytes]] = []
        nemesis = Nemesis(faults, link=lambda h, up: topo.set_link(h, up), proxy=proxy.ask if proxy else None,
                          history=history, base=base)
        try:
            for k, name in enumerate(topo.worker_names(), start=1):
                env = {k2: v for k2, v in os.environ.items() if k2 not in ("RETRYBENCH_BROKER_URL",)}
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, site]))
                env["RETRYBENCH_REDIS_URL"] = self.url_for(name, PROXY_PORT if name in proxied else REDIS_PORT)
                env["RETRYBENCH_HOST"] = name
                # One filesystem under every namespace: the workers' logs stay with the run, per host.
                env["RETRYBENCH_WORKER_LOG_DIR"] = str(logs / name)
                env.pop("RETRYBENCH_CLOCK_SKEW_NS", None)
                if self.skews.get(name):
                    env["RETRYBENCH_CLOCK_SKEW_NS"] = str(int(self.skews[name] * 1e9))
                supervisors.append(spawn(
                    [*topo.exec_prefix(topo.worker_ns(k)), python, "-m", "implementations.processes.external",
                     "--backend", backend], env=env, log_path=str(logs / f"{base['cell_id']}-{name}-supervisor.log")))
            yield nemesis.on_progress
        finally:
            nemesis.stop()
            for proc in supervisors:
                terminate(proc, timeout=20)
            if proxy is not None:
                proxy.close()
            if nemesis.errors:
                print(f"retrybench: network faults not applied: {'; '.join(nemesis.errors)}", file=sys.stderr)


@contextlib.contextmanager
def multi_host(hosts: int, skews: dict[str, float], log: Callable[[str], None], *,
               appendonly: bool = False) -> Iterator[MultiHost]:
    """The topology and the private Redis in the broker's namespace, removed however the run ends."""
    mh = MultiHost(hosts, skews)
    mh.topo = Topology(hosts).create()
    try:
        links = mh.topo.links
        # The harness reaches it over its own link: the first bind address is the one RedisServer connects to.
        bind = " ".join([links[0].broker_addr, "127.0.0.1", *(li.broker_addr for li in links[1:])])
        mh.server = RedisServer(port=REDIS_PORT, bind=bind, wrap=tuple(mh.topo.exec_prefix(mh.topo.broker_ns)),
                                appendonly=appendonly)
        mh.server.start()
        log(f"simulated hosts: broker {links[0].broker_addr} (namespace {mh.topo.broker_ns}), workers "
            + ", ".join(f"{li.host} {li.host_addr}" for li in links[1:])
            + (f"; clock skew {', '.join(f'{h} {s:+g} s' for h, s in skews.items())}" if skews else ""))
        yield mh
    finally:
        if mh.server is not None:
            mh.server.stop()
        mh.topo.destroy()


@contextlib.contextmanager
def redis_on_hosts(hosts: int, skews: dict[str, float], log: Callable[[str], None], *,
                   appendonly: bool = False) -> Iterator[dict[str, Any]]:
    """What ``runner.redis_for`` yields, for a run on simulated hosts (``hosts_obj``: the ``MultiHost``)."""
    with multi_host(hosts, skews, log, appendonly=appendonly) as mh:
        assert mh.server is not None
        yield {"url": mh.server.url, "embedded": True, "pid": mh.server.pid, "appendonly": mh.server.appendonly,
               "hosts": hosts, **mh.server.version, "server_obj": mh.server, "hosts_obj": mh}


@contextlib.contextmanager
def hosts_for(mh: MultiHost | None, cell: Any, *, python: str, run_dir: Path,
              site: str) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """With simulated hosts: the cell's supervisors (and proxy) on them, and the hook that starts its network
    faults; else nothing."""
    if mh is None:
        yield None
        return
    (run_dir / "logs").mkdir(exist_ok=True)
    base = {"cell_id": cell.cell_id, "backend": str(cell.backend), "scenario": cell.scenario.name}
    with mh.cell(backend=cell.backend.backend, python=python, scenario=cell.scenario, logs=run_dir / "logs",
                 history=run_dir / "history.jsonl", base=base, site=site) as hook:
        yield hook


def chained(*hooks: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def call(line: dict[str, Any]) -> None:
        for hook in hooks:
            hook(line)
    return call

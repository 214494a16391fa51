"""Simulated hosts on one Linux machine (``retrybench run --hosts N``): one network namespace per host.

A star around the broker: the broker's namespace has one veth link to each worker host's namespace and one
to the harness (the root namespace, where the CLI and the drivers run). Every link is its own /30, so no
packet is ever forwarded (nothing changes ``ip_forward`` anywhere) and a worker host reaches the broker
alone, as in a deployment where workers talk only to Redis. Taking a worker's link down partitions it
from the broker; bringing it up heals it.

Names carry the creating process's pid (``rb<pid>-…``): namespaces whose process is gone (a SIGKILLed run)
are removed by the next run (``clean_stale``). Needs root and ``ip netns``; ``unavailable()`` says why not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

NS_PREFIX = "rb"
_NS_NAME = re.compile(rf"^{NS_PREFIX}(\d+)-(broker|w\d+)$")
BASE_NET = "10.213"  # 10.213.<slot>.<4k+1 broker side, 4k+2 host side>: link 0 is the harness's


class NetnsError(RuntimeError):
    """A namespace or link could not be set up."""


def unavailable() -> str | None:
    """Why simulated hosts cannot run here (one line), or None when they can."""
    if os.name != "posix" or not os.path.isdir("/proc/self/ns"):
        return "--hosts needs Linux network namespaces"
    if os.geteuid() != 0:
        return "--hosts needs root (it creates network namespaces and veth links with `ip netns`)"
    if not shutil.which("ip"):
        return "--hosts needs the `ip` command (iproute2)"
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"--hosts: `ip netns` does not work here: {(done.stderr or done.stdout).strip()[:200]}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def _namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def clean_stale() -> list[str]:
    """Delete the namespaces of runs whose process is gone; returns their names."""
    removed = []
    for name in _namespaces():
        m = _NS_NAME.match(name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue
        except ProcessLookupError:
            pass
        except OSError:
            continue
        _ip("netns", "delete", name, check=False)
        removed.append(name)
    return removed


@dataclass
class Link:
    host: str  # "harness", "w1", …
    index: int
    broker_if: str
    host_if: str
    broker_addr: str
    host_addr: str


@dataclass
class Topology:
    """The broker's namespace and ``hosts`` worker namespaces, each linked to the broker."""

    hosts: int
    tag: str = field(default_factory=lambda: f"{NS_PREFIX}{os.getpid()}")
    links: list[Link] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    @property
    def broker_ns(self) -> str:
        return f"{self.tag}-broker"

    def worker_ns(self, k: int) -> str:
        return f"{self.tag}-w{k}"

    def worker_names(self) -> list[str]:
        return [f"w{k}" for k in range(1, self.hosts + 1)]

    def link(self, host: str) -> Link:
        return next(link for link in self.links if link.host == host)

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def _slot(self) -> int:
        used = _ip("-o", "-4", "addr", check=False).stdout
        for n in range(os.getpid() % 200, os.getpid() % 200 + 250):
            slot = n % 250 + 1
            if f"{BASE_NET}.{slot}." not in used:
                return slot
        raise NetnsError(f"no free {BASE_NET}.x.0/24 subnet for the simulated hosts")

    def create(self) -> Topology:
        clean_stale()
        slot = self._slot()
        try:
            self._add_ns(self.broker_ns)
            for i, host in enumerate(["harness", *self.worker_names()]):
                ns = None if host == "harness" else self.worker_ns(i)
                if ns is not None:
                    self._add_ns(ns)
                base = 4 * i
                link = Link(host, i, f"{self.tag}b{i}"[-15:], f"{self.tag}h{i}"[-15:],
                            f"{BASE_NET}.{slot}.{base + 1}", f"{BASE_NET}.{slot}.{base + 2}")
                peer = ["netns", ns] if ns else []
                _ip("link", "add", link.broker_if, "netns", self.broker_ns, "type", "veth",
                    "peer", "name", link.host_if, *peer)
                if ns is None:
                    self.created.append(f"link:{link.host_if}")
                _ip("-n", self.broker_ns, "addr", "add", f"{link.broker_addr}/30", "dev", link.broker_if)
                _ip("-n", self.broker_ns, "link", "set", link.broker_if, "up")
                host_ns = ["-n", ns] if ns else []
                _ip(*host_ns, "addr", "add", f"{link.host_addr}/30", "dev", link.host_if)
                _ip(*host_ns, "link", "set", link.host_if, "up")
                self.links.append(link)
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.created.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def set_link(self, host: str, up: bool) -> str:
        """Take a worker host's link to the broker down (a partition) or up (healed); returns its name."""
        link = self.link(host)
        _ip("-n", self.broker_ns, "link", "set", link.broker_if, "up" if up else "down")
        return link.broker_if

    def destroy(self) -> None:
        """Delete every namespace (and so every link) this topology made; safe to call twice."""
        for name in reversed(self.created):
            if name.startswith("link:"):
                _ip("link", "delete", name[5:], check=False)
            else:
                _ip("netns", "delete", name, check=False)
        self.created.clear()
        self.links.clear()

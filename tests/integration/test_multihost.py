"""``--hosts N``: real namespaces, a partition, broker latency through the proxy, and a skewed clock.

Each test is one quick run on rq (a few jobs). They need root and ``ip netns``; elsewhere they skip, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.checks import check_retry_timing
from harness.history import read_history
from harness.netns import unavailable

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent
WHY = unavailable()
needs_netns = pytest.mark.skipif(WHY is not None, reason=f"simulated hosts unavailable here: {WHY}")

BASE = """
jobs = 8
enqueue_rate = 4
work_ms = 200
[policy]
autoretry_for = ["ConnectionError"]
max_retries = 3
intervals = [1]
[[faults]]
kind = "fail_first"
k = 1
[options]
deadline_s = 60
"""


def retrybench(*args: str, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False, **kw)


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("rb")}


def run(tmp_path: Path, scenario: str, *extra: str) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path / "net.toml"
    path.write_text(BASE + scenario)
    before = namespaces()
    done = retrybench("-b", "rq", "-s", str(path), "--out", str(tmp_path / "out"), *extra)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert namespaces() <= before, "namespaces left behind"
    run_dir = (tmp_path / "out" / "latest").resolve()
    return run_dir, list(read_history(run_dir / "history.jsonl"))


def test_a_network_preset_without_hosts_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = retrybench("-b", "rq", "-s", "partition-worker", "--out", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "--hosts" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the CLI as another user")
def test_hosts_without_root_is_one_line_and_exit_2(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    done = retrybench("--hosts", "2", "-b", "rq", "--out", str(tmp_path), user=65534, group=65534,
                      env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "retrybench: error: --hosts needs root (it creates network namespaces and veth " \
                                  "links with `ip netns`)"


@needs_netns
def test_a_partitioned_worker_host_is_cut_off_and_healed(tmp_path: Path) -> None:
    run_dir, events = run(tmp_path, '[[network]]\nkind = "partition"\nhost = 1\nat = 1\nduration = 2\n', "--hosts", "2")
    net = [e for e in events if e["type"] == "network"]
    assert [e["event"] for e in net] == ["partition", "heal"] and net[0]["host"] == "w1"
    assert 1.8 < (net[1]["ts_ns"] - net[0]["ts_ns"]) / 1e9 < 2.5
    clocks = {(e["host"], e["phase"]) for e in events if e["type"] == "clock"}
    assert {("w1", "start"), ("w2", "start"), ("w1", "end"), ("w2", "end")} <= clocks
    assert {e["host"] for e in events if e["type"] == "attempt"} <= {"w1", "w2"}
    end = next(e for e in events if e["type"] == "end")
    assert end["complete"], end["reason"]
    report = (run_dir / "report.md").read_text()
    assert "## Hosts and clocks" in report and "partition at" in report
    assert any(p.name.endswith("-timeline.png") for p in (run_dir / "plots").iterdir())


@needs_netns
def test_broker_latency_and_dropped_connections_go_through_the_proxy(tmp_path: Path) -> None:
    scenario = ('[[network]]\nkind = "latency"\nhost = 1\nat = 0.5\nduration = 2\nms = 100\n'
                '[[network]]\nkind = "drop"\nhost = 1\nat = 3\nduration = 0.5\n')
    run_dir, events = run(tmp_path, scenario, "--hosts", "2")
    net = [e for e in events if e["type"] == "network"]
    assert [(e["event"], e.get("ms")) for e in net] == [("latency", 100), ("latency", 0), ("drop", None)]
    assert net[2]["dropped"] >= 1  # w1's worker and supervisor were connected through the proxy
    w1 = [e for e in events if e["type"] == "clock" and e["host"] == "w1"]
    w2 = [e for e in events if e["type"] == "clock" and e["host"] == "w2"]
    assert w1 and w2
    assert "proxy" in " ".join(p.name for p in (run_dir / "logs").iterdir())


@needs_netns
def test_a_skewed_clock_leaves_lateness_unchanged(tmp_path: Path) -> None:
    _, events = run(tmp_path, "", "--hosts", "2", "--clock-skew", "w2=5")
    offsets = {e["host"]: e["offset_ns"] for e in events if e["type"] == "clock" and e["phase"] == "start"}
    assert abs(offsets["w2"] + 5e9) < 5e6 and abs(offsets["w1"]) < 5e6  # measured: -5 s, to within 5 ms
    hosts: dict[str, dict[int, str]] = {}
    for e in events:
        if e["type"] == "attempt":
            hosts.setdefault(e["job_id"], {})[e["attempt"]] = e["host"]
    moved = sum(1 for h in hosts.values() if len(set(h.values())) > 1)
    assert moved, "no retry changed host: the skew would not show"
    corrected = check_retry_timing(events)["lateness"]
    assert corrected and max(abs(v) for v in corrected) < 1.5  # as on one clock: RQ's whole-second scheduler
    raw = check_retry_timing([e for e in events if e["type"] != "clock"])["lateness"]
    assert sum(abs(v) > 3.5 for v in raw) >= moved  # read without the offsets, each moved retry is 5 s off

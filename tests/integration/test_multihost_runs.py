"""``--hosts N``: real namespaces, a partition, broker latency through the proxy, and a skewed clock.

Each test is one quick run on rq (a few jobs). They need root and ``ip netns``; elsewhere they skip, saying so.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.checks import check_retry_timing
from harness.analysis.history import iter_history
from harness.orchestrate.netns import unavailable

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
    return run_dir, [e for e in iter_history(run_dir / "history.jsonl") if e["type"] != "meta"]


def test_a_network_preset_without_hosts_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = retrybench("-b", "rq", "-s", "partition-worker", "--out", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "--hosts" in done.stderr


def test_hosts_without_root_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    monkeypatch.setattr("os.geteuid", lambda: 1000)  # the interpreter here is root's: pretend it is not
    with pytest.raises(SystemExit) as done:
        main(["run", "--hosts", "2", "-b", "rq", "--out", str(tmp_path)])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == ("retrybench: error: --hosts needs root (it creates network namespaces "
                                               "and veth links with `ip netns`)")


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
    hosts: dict[str, dict[int, tuple[str, str]]] = {}
    for e in events:
        if e["type"] == "attempt":
            hosts.setdefault(e["job_id"], {})[e["attempt"]] = (e["host"], e["outcome"])
    # Retries whose next attempt ran on the other host: only those cross the skewed clock
    moved = sum(1 for h in hosts.values() for n, (host, outcome) in h.items()
                if outcome == "retry" and n + 1 in h and h[n + 1][0] != host)
    assert moved, "no retry changed host: the skew would not show"
    corrected = check_retry_timing(events)["lateness"]
    raw = check_retry_timing([e for e in events if e["type"] != "clock"])["lateness"]
    # Then the correction takes out exactly the injected 5 s where a retry crossed hosts, and nothing elsewhere:
    # lateness is what one clock would have measured (the same retries, in the same order, either way)
    diffs = [r - c for r, c in zip(raw, corrected, strict=True)]
    assert all(min(abs(d), abs(abs(d) - 5)) < 0.01 for d in diffs), diffs
    assert sum(abs(d) > 2.5 for d in diffs) == moved


def _start_and_wait_for_namespaces(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    path = tmp_path / "net.toml"
    network = '[[network]]\nkind = "partition"\nat = 0.5\nduration = 30\n'
    path.write_text(BASE.replace("jobs = 8", "jobs = 200") + network)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--hosts", "2", "-b", "rq", "-s", str(path),
                             "--out", str(tmp_path / "out")], cwd=ROOT, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    tag = f"rb{proc.pid}-"
    deadline = time.monotonic() + 120
    # Running: the namespaces exist and the partition has been applied (a run in the middle of a fault).
    while time.monotonic() < deadline and not any((tmp_path / "out").glob("*/history.jsonl")):
        time.sleep(0.2)
    while time.monotonic() < deadline:
        histories = list((tmp_path / "out").glob("*/history.jsonl"))
        if histories and '"event": "partition"' in histories[0].read_text():
            break
        time.sleep(0.2)
    assert any(n.startswith(tag) for n in namespaces()), "the run never started its hosts"
    return proc, tag


def _ns_pids(tag: str) -> list[str]:
    pids = []
    for ns in [n for n in namespaces() if n.startswith(tag)]:
        pids += subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout.split()
    return pids


@needs_netns
def test_ctrl_c_in_the_middle_of_a_partition_leaves_no_namespace_and_no_process(tmp_path: Path) -> None:
    proc, tag = _start_and_wait_for_namespaces(tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(90) == 130
    assert not [n for n in namespaces() if n.startswith(tag)]


@needs_netns
def test_a_killed_run_s_hosts_die_with_it_and_the_next_run_removes_its_namespaces(tmp_path: Path) -> None:
    from harness.orchestrate.netns import clean_stale

    proc, tag = _start_and_wait_for_namespaces(tmp_path)
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 20
    while _ns_pids(tag) and time.monotonic() < deadline:  # parent-death signal: every process in them is gone
        time.sleep(0.2)
    assert not _ns_pids(tag)
    assert {n for n in clean_stale() if n.startswith(tag)} and not [n for n in namespaces() if n.startswith(tag)]

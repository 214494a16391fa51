"""Item 6: nothing outlives a SIGKILLed ``retrybench run`` — not its drivers, their workers, RQ's work
horses, Celery's pool nor the private redis-server — and the next run removes what the dead one left in
/tmp."""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from harness.orchestrate.redis_server import clean_stale_dirs
from implementations.backends import QUEUES
from security.conftest import descendants, popen_cli

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.mark.parametrize("backend", list(QUEUES))
def test_sigkill_of_the_cli_leaves_no_process_and_no_temp_dir(backend: str, tmp_path: Path,
                                                               queue_envs: None) -> None:
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "retrybench-redis-*")))
    proc = popen_cli("run", "-b", backend, "-s", "permanent", "--jobs", "20", "--out", str(tmp_path))
    tree: set[int] = set()
    deadline = time.monotonic() + 120
    # Wait until the cell is running: a driver, its workers (and what they forked) and redis-server.
    while time.monotonic() < deadline:
        tree = descendants(proc.pid)
        logs = list(tmp_path.glob("*/logs/*-worker-*.log"))
        if logs and len(tree) >= 3:
            time.sleep(1.0)
            tree = descendants(proc.pid)
            break
        time.sleep(0.2)
    assert len(tree) >= 3, tree
    mine = set(glob.glob(os.path.join(tempfile.gettempdir(), f"retrybench-redis-{proc.pid}-*")))
    assert mine
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.2)
    assert not [p for p in tree if _alive(p)]
    # The next run's start (RedisServer.start calls this) removes the dead run's directory. Tests run
    # in parallel, so another test's Redis may have removed it first: what counts is that it is gone.
    clean_stale_dirs()
    assert not (mine & set(glob.glob(os.path.join(tempfile.gettempdir(), "retrybench-redis-*")))), before


_MIDDLE = """
import os, sys, time
sys.path.insert(0, {root!r})
from implementations.core.procs import spawn, die_with_parent
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
child = spawn([sys.executable, "-c", stubborn])
os.register_at_fork(after_in_child=die_with_parent)  # as the RQ worker does for its work horses
horse = os.fork()
if horse == 0:
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
    os._exit(0)
print(child.pid, horse, flush=True)
time.sleep(60)
"""


def test_children_that_ignore_sigterm_still_die_with_their_parent() -> None:
    """The busy driver that ignored its parent-death SIGTERM and ran on for 20 minutes: the signal is
    SIGKILL now, for spawned processes and for forked ones (RQ's work horses)."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parent.parent.parent)
    middle = subprocess.Popen([sys.executable, "-c", _MIDDLE.format(root=root)], stdout=subprocess.PIPE, text=True)
    assert middle.stdout is not None
    child, horse = (int(x) for x in middle.stdout.readline().split())
    assert _alive(child) and _alive(horse)
    middle.kill()
    middle.wait(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (_alive(child) or _alive(horse)):
        time.sleep(0.05)
    assert not _alive(child) and not _alive(horse)

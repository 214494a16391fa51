"""Helpers for the security suite: the CLI as a subprocess, and every process that descends from one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from implementations.backends import QUEUES

ROOT = Path(__file__).resolve().parent.parent.parent


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, input=input,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd or ROOT, check=False)


def popen_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})},
                            cwd=ROOT)


def assert_clear_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("retrybench: error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def cmdlines() -> dict[int, str]:
    """Every process's command line (as ``ps`` shows it to any user)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    out[int(entry)] = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return out


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry reaches ``pid`` (by parent links read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {c for c, p in parents.items() if p in frontier and c not in found}
        found |= children
        frontier = children
    return found


@pytest.fixture(scope="session")
def queue_envs() -> None:
    """rq, arq and celery environments (created once under .venvs/)."""
    from harness.orchestrate.envs import ensure_envs, parse_backend_spec

    ensure_envs([parse_backend_spec(b) for b in QUEUES], root=ROOT / ".venvs")

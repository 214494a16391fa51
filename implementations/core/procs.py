"""Child processes that never outlive us: own process group, parent-death signal, group kill."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Linux only: when the process (strictly: the thread) that started us dies, even by SIGKILL, the
    kernel sends ``sig``. SIGKILL, not SIGTERM: a busy driver that caught SIGTERM ran on for 20 minutes
    with parent 1. Our parents stop us in order (SIGTERM, wait, SIGKILL) while they live; this is for
    when they cannot. Called in the child between fork and exec, and in forked children (RQ work horses)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))
        except (OSError, AttributeError):
            return
        if os.getppid() == 1:  # the parent died before the signal was armed: it will never come
            os.kill(os.getpid(), sig)


def _die_with_parent() -> None:
    die_with_parent(signal.SIGKILL)


def spawn(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, log_path: str | None = None,
          cwd: str | None = None, pipe_stdout: bool = False) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session (Ctrl-C reaches only us; we stop it in order).

    Output goes to ``log_path`` (or nowhere); with ``pipe_stdout`` stdout is a pipe for the caller.
    """
    out: Any = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(list(cmd), env=dict(env) if env is not None else None, cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if pipe_stdout else out,
                                stderr=out if pipe_stdout else subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
    finally:
        if log_path:
            out.close()


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """Stop ``proc`` and everything it forked: ``sig`` to its group, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # The leader may be gone while forked children (RQ work horses, Celery pool) linger: kill the group.
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        return None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass

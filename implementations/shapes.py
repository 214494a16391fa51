"""The events every job records, each made by copying a template of its kind and setting what varies.

A dict literal inserts every key one by one; ``dict.copy`` of a template copies its whole table at once,
and only the fields that differ from job to job are set after it, in fewer instructions (README "What
recording costs": ``python -m benchmarks.instructions`` counts them). That counts where the workers are
threads of the process that records and measures them (the reference backend).
The templates hold the run's identity, so every event carries it as the literals did.
"""

from __future__ import annotations

from typing import Any

from .events import HOST


class Shapes:
    """One template per hot event kind, for one run; keys in the order the history has always had."""

    __slots__ = ("enqueue", "start", "success", "failed", "terminal", "on_retry")

    def __init__(self, ident: dict[str, Any]) -> None:
        """``ident``: the run's identity every event carries (``run_id``, ``backend``, ``scenario``)."""
        self.enqueue = {"type": "enqueue", **ident, "job_id": None, "task": None, "ts_ns": None, "countdown": None}
        attempt = {"job_id": None, "task": None, "attempt": None, "host": HOST, "pid": None, "started_ns": None}
        self.start = {"type": "attempt_start", **ident, **attempt, "fault": None, "native": None}
        self.success = {"type": "attempt", **ident, **attempt, "finished_ns": None, "outcome": "success",
                        "fault": None, "native": None}
        self.failed = {"type": "attempt", **ident, **attempt, "finished_ns": None, "outcome": None,
                       "exc_type": None, "exc_message": None, "fault": None, "expected_delay": None,
                       "native": None}
        self.terminal = {"type": "terminal", **ident, "job_id": None, "task": None, "state": "success",
                         "attempts": None, "ts_ns": None, "result": None}
        self.on_retry = {"type": "callback", **ident, "name": "on_retry", "job_id": None, "task": None,
                         "attempt": None, "ts_ns": None}

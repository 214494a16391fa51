"""Structured logs of both outcomes: one JSON line per attempt, with the same fields on every backend.

The lesson logs successes and failures separately and by hand; here the shared attempt wrapper does it
once for all backends, through ``logging`` (so any handler can take it), formatted as JSON lines:
``{"ts", "level", "event", "outcome", "backend", "task", "job_id", "attempt", "duration_ms",
"exc_type", "exc_message", "retry_in_s", "fault", "worker", "cell_id", "scenario"}``.
Enable with the app option ``log_json`` (a file path, or ``-`` for stderr): ``-o log_json=jobs.log``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

FIELDS = ("ts", "level", "event", "outcome", "backend", "task", "job_id", "attempt", "duration_ms", "exc_type",
          "exc_message", "retry_in_s", "fault", "worker", "cell_id", "scenario")
_LEVELS = {"success": logging.INFO, "retry": logging.WARNING, "failure": logging.ERROR}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="microseconds"),
                "level": record.levelname, **getattr(record, "job", {})}
        return json.dumps({k: line.get(k) for k in FIELDS}, default=str)


def job_logger(target: str) -> logging.Logger:
    """``retrybench.jobs``, writing JSON lines to ``target`` (a path, appended; ``-`` for stderr)."""
    logger = logging.getLogger(f"retrybench.jobs.{target}")
    if not logger.handlers:
        # Several worker processes append to one file: line-buffered appends keep lines whole.
        handler = (logging.StreamHandler(sys.stderr) if target == "-"
                   else logging.FileHandler(target, mode="a", encoding="utf-8"))
        handler.setFormatter(JsonLines())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def log_attempt(logger: logging.Logger, event: dict[str, Any]) -> None:
    outcome = str(event.get("outcome"))
    started, finished = event.get("started_ns"), event.get("finished_ns")
    fault = event.get("fault")
    job = {"event": "job.attempt", "outcome": outcome, "backend": event.get("backend"), "task": event.get("task"),
           "job_id": event.get("job_id"), "attempt": event.get("attempt"),
           "duration_ms": round((finished - started) / 1e6, 3) if started and finished else None,
           "exc_type": event.get("exc_type") or None, "exc_message": event.get("exc_message") or None,
           "retry_in_s": event.get("expected_delay") if outcome == "retry" else None,
           "fault": fault.get("kind") if isinstance(fault, dict) else fault,
           "worker": f"{event.get('host')}:{event.get('pid')}", "cell_id": event.get("cell_id"),
           "scenario": event.get("scenario")}
    logger.log(_LEVELS.get(outcome, logging.INFO), "job %s %s", job["job_id"], outcome, extra={"job": job})

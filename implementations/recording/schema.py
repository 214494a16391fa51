"""The one event schema: every kind of event a history holds, one typed constructor per kind.

A history (``history.jsonl``) is one JSON object a line. Every event has ``type`` (its kind) and the identity of
the cell it belongs to (``cell_id``: the cell, ``backend``, ``scenario``), then the fields its kind lists in
``KINDS``. Writers build events only through these constructors; the reader (harness/analysis/history.py) refuses
a history whose ``meta`` declares a newer ``schema_version`` than ``SCHEMA_VERSION``, and reads version 1, in
which a cell's events named it ``run_id``, as if they said ``cell_id``. ``run_id`` names the whole run, in
``meta`` only. A kind with ``**more``
carries fields that belong to a backend or a part of the harness (a library's native counts, start-up figures);
they are listed where they are made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 2
IDENTITY = ("cell_id", "backend", "scenario")
Event = dict[str, Any]
Ident = Mapping[str, Any]

# kind -> the fields every event of that kind has (beyond type and identity)
KINDS: dict[str, tuple[str, ...]] = {
    "meta": ("run_id", "schema_version", "environment", "scenarios", "repeat", "cells"),
    "run": ("ts_ns",),
    "workers_ready": ("ts_ns",),
    "enqueue": ("job_id", "task", "ts_ns", "countdown"),
    "enqueue_error": ("job_id", "task", "ts_ns"),
    "attempt_start": ("job_id", "task", "attempt", "host", "pid", "started_ns", "fault", "native"),
    "attempt": ("job_id", "task", "attempt", "host", "pid", "started_ns", "finished_ns", "outcome", "fault",
                "native"),
    "callback": ("name", "job_id", "task", "attempt", "ts_ns"),
    "terminal": ("job_id", "task", "state", "attempts", "ts_ns"),
    "failure_record": ("job_id", "task", "exc_type", "exc_message", "attempts", "failed_ns"),
    "schedule": ("job_id", "attempt", "due_ns", "delay_s", "source", "observed_ns", "schedule", "pid"),
    "deferral": ("job_id", "task", "attempt", "host", "pid", "started_ns", "delay"),
    "requeue": ("job_id", "requeued_as", "task"),
    "worker": ("event",),
    "probe": ("probe_id", "index", "host", "state", "ts_ns"),
    "broker": ("event", "ts_ns"),
    "native": (),
    "whereabouts": ("ts_ns",),
    "end": ("ts_ns", "complete", "reason"),
    "clock": ("host", "pid", "role", "phase", "reference", "ts_ns"),
    "network": ("host", "fault", "event", "ts_ns"),
}


class SchemaError(ValueError):
    """An event that does not follow the schema."""


def make(kind: str, ident: Ident, **fields: Any) -> Event:
    """An event of ``kind`` for the cell ``ident``; SchemaError when a field its kind requires is missing.

    The events every job has (enqueue, attempts, callbacks, terminal) are built by their constructors as dict
    literals instead, with no check: they are made on the workers' hot path, and the in-process control's
    throughput is what recording is measured against. tests/unit/test_schema.py holds every constructor to
    ``KINDS``."""
    required = KINDS.get(kind)
    if required is None:
        raise SchemaError(f"unknown event kind {kind!r}")
    missing = [f for f in required if f not in fields]
    if missing:
        raise SchemaError(f"{kind} event without {', '.join(missing)}")
    return {"type": kind, **{k: ident.get(k, "") for k in IDENTITY}, **fields}


def check(event: Mapping[str, Any]) -> str | None:
    """Why ``event`` does not follow the schema (None: it does). Unknown kinds are not an error for a reader:
    a newer writer may add kinds an older reader skips."""
    kind = event.get("type")
    if not isinstance(kind, str):
        return "no type"
    required = KINDS.get(kind)
    if required is None:
        return None
    missing = [f for f in (*IDENTITY, *required) if f not in event]
    return f"{kind} event without {', '.join(missing)}" if missing else None


# -- one constructor per kind ----------------------------------------------------------------------------
def meta(run_id: str, *, environment: Mapping[str, Any], scenarios: Mapping[str, Any], repeat: int, cells: int,
         **more: Any) -> Event:
    """The first line of a history: the whole run, named by ``run_id`` (its cells' ``cell_id`` is empty)."""
    return make("meta", {}, run_id=run_id, schema_version=SCHEMA_VERSION, environment=dict(environment),
                scenarios=dict(scenarios), repeat=repeat, cells=cells, **more)


def run(ident: Ident, *, ts_ns: int, **setup: Any) -> Event:
    """A cell begins: its policy, fault plan, seed and sizes (``setup``)."""
    return make("run", ident, ts_ns=ts_ns, **setup)


def workers_ready(ident: Ident, *, ts_ns: int, **startup: Any) -> Event:
    return make("workers_ready", ident, ts_ns=ts_ns, **startup)


def enqueue(ident: Ident, *, job_id: str, task: str, ts_ns: int, countdown: float | None,
            meta: Mapping[str, Any] | None = None) -> Event:
    """The library now holds job ``job_id`` (``meta``: what the driver expects of it)."""
    event = {"type": "enqueue", **ident, "job_id": job_id, "task": task, "ts_ns": ts_ns, "countdown": countdown}
    if meta:
        event.update(meta)
    return event


def enqueue_error(ident: Ident, *, job_id: str, task: str, ts_ns: int, **more: Any) -> Event:
    return make("enqueue_error", ident, job_id=job_id, task=task, ts_ns=ts_ns, **more)


def attempt_start(ident: Ident, *, job_id: str, task: str, attempt: int, host: str, pid: int, started_ns: int,
                  fault: str | None, native: Mapping[str, Any] | None) -> Event:
    return {"type": "attempt_start", **ident, "job_id": job_id, "task": task, "attempt": attempt, "host": host,
            "pid": pid, "started_ns": started_ns, "fault": fault, "native": native}


def attempt(ident: Ident, *, job_id: str, task: str, attempt: int, host: str, pid: int, started_ns: int,
            finished_ns: int, outcome: str, fault: str | None, native: Mapping[str, Any] | None,
            exc_type: str | None = None, exc_message: str | None = None,
            expected_delay: float | None = None) -> Event:
    """One attempt ended: ``outcome`` is success, retry or failure; a failed one names its error and the
    delay the plan gives its retry."""
    if outcome == "success":
        return {"type": "attempt", **ident, "job_id": job_id, "task": task, "attempt": attempt, "host": host,
                "pid": pid, "started_ns": started_ns, "finished_ns": finished_ns, "outcome": outcome, "fault": fault,
                "native": native}
    return {"type": "attempt", **ident, "job_id": job_id, "task": task, "attempt": attempt, "host": host,
            "pid": pid, "started_ns": started_ns, "finished_ns": finished_ns, "outcome": outcome,
            "exc_type": exc_type, "exc_message": exc_message, "fault": fault, "expected_delay": expected_delay,
            "native": native}


def callback(ident: Ident, *, name: str, job_id: str, task: str, attempt: int, ts_ns: int) -> Event:
    """A Celery-style handler ran: ``on_retry`` or ``on_failure``."""
    return {"type": "callback", **ident, "name": name, "job_id": job_id, "task": task, "attempt": attempt,
            "ts_ns": ts_ns}


def terminal(ident: Ident, *, job_id: str, task: str, state: str, attempts: int, ts_ns: int, **more: Any) -> Event:
    """The job's end: ``state`` success (``result``) or failure (``exc_type``, ``exc_message``; ``source`` when
    the library ended it on its own)."""
    return {"type": "terminal", **ident, "job_id": job_id, "task": task, "state": state, "attempts": attempts,
            "ts_ns": ts_ns, **more}


def failure_record(record: Mapping[str, Any]) -> Event:
    """A failure record (what ``on_failure`` stored: identity, task, arguments, error, traceback) as an event."""
    event = {"type": "failure_record", **record}
    problem = check(event)
    if problem:
        raise SchemaError(problem)
    return event


def schedule(ident: Ident, *, job_id: str, attempt: int, due_ns: int | None, delay_s: float | None, source: str,
             observed_ns: int, schedule: str, pid: int) -> Event:
    """What the library itself scheduled after failed attempt ``attempt`` (docs/schedules.md)."""
    return make("schedule", ident, job_id=job_id, attempt=attempt, due_ns=due_ns, delay_s=delay_s, source=source,
                observed_ns=observed_ns, schedule=schedule, pid=pid)


def deferral(ident: Ident, *, job_id: str, task: str, attempt: int, host: str, pid: int, started_ns: int,
             delay: float) -> Event:
    """An open circuit breaker deferred the attempt without calling the dependency."""
    return make("deferral", ident, job_id=job_id, task=task, attempt=attempt, host=host, pid=pid,
                started_ns=started_ns, delay=delay)


def requeue(ident: Ident, *, job_id: str, requeued_as: str, task: str, **more: Any) -> Event:
    return make("requeue", ident, job_id=job_id, requeued_as=requeued_as, task=task, **more)


def worker(ident: Ident, *, event: str, **more: Any) -> Event:
    """A worker's life: ``start``, ``stop`` (host, pid, index, ts_ns) or ``restarted`` (pid, exit code)."""
    return make("worker", ident, event=event, **more)


def probe(ident: Ident, *, probe_id: str, index: int, host: str, state: str, ts_ns: int, **more: Any) -> Event:
    """A start-up probe job: ``first`` (a worker's first), ``held`` or ``done``."""
    return make("probe", ident, probe_id=probe_id, index=index, host=host, state=state, ts_ns=ts_ns, **more)


def broker(ident: Ident, *, event: str, ts_ns: int, **more: Any) -> Event:
    """The broker itself: ``restart`` (``down_ns``, ``up_ns``)."""
    return make("broker", ident, event=event, ts_ns=ts_ns, **more)


def native(ident: Ident, **counts: Any) -> Event:
    """What the library's own stores say at the end (``Backend.native_failures``)."""
    return make("native", ident, **counts)


def whereabouts(ident: Ident, *, ts_ns: int, **where: Any) -> Event:
    """Where each never-terminal job still is in the library's stores (``Backend.whereabouts``)."""
    return make("whereabouts", ident, ts_ns=ts_ns, **where)


def end(ident: Ident, *, ts_ns: int, complete: bool, reason: str, **figures: Any) -> Event:
    """The cell's end: whether it completed, why it stopped, and the harness's own figures."""
    return make("end", ident, ts_ns=ts_ns, complete=complete, reason=reason, **figures)


def clock(ident: Ident, *, host: str, pid: int, role: str, phase: str, reference: str, ts_ns: int,
          **offset: Any) -> Event:
    """A host's clock against the one reference (the broker's ``TIME``) at a cell's ``start`` or ``end``:
    ``offset`` holds the measured offset and its uncertainty (docs/multi-host.md)."""
    return make("clock", ident, host=host, pid=pid, role=role, phase=phase, reference=reference, **offset,
                ts_ns=ts_ns)


def network(ident: Ident, *, host: str, fault: str, event: str, ts_ns: int, **detail: Any) -> Event:
    """A network fault applied to a simulated host: ``partition`` / ``heal``, ``latency``, ``drop``."""
    return make("network", ident, host=host, fault=fault, event=event, ts_ns=ts_ns, **detail)

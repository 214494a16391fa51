"""Reading ``history.jsonl``: one JSON event per line, several runs (cells) per file.

A history is the only input of the checkers. It is written append-only while workers run, so an
interrupted run may leave a torn last line; reading keeps every valid line and reports the rest as
problems (``strict=True`` turns the first problem into an error instead). ``group_runs`` splits a file
into its runs and ``index_run`` organises one run by job, in one pass, for the checkers.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]


class HistoryError(Exception):
    """A history file that cannot be used at all (missing, empty, or a problem in strict mode)."""


@dataclass
class History:
    """Every readable event of one file, in file order, and what could not be read."""

    path: str
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def runs(self) -> dict[str, list[Event]]:
        """The events grouped by ``run_id`` (see ``group_runs``)."""
        return group_runs(self.events)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic dicts.

    Each collection rescans every live event, so with the collector on, reading and indexing a
    million-event history takes several times longer; nothing built here forms reference cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _open(path: str | os.PathLike[str]) -> tuple[str, Any]:
    name = os.fspath(path)
    try:
        # Committed example runs keep their history gzipped (25 MB of JSON lines compress ~10×).
        fh = gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")  # noqa: SIM115 - closed by the generator that owns it
    except FileNotFoundError:
        raise HistoryError(f"{name}: no such history file") from None
    except IsADirectoryError:
        raise HistoryError(f"{name}: is a directory, not a history file") from None
    except OSError as exc:
        raise HistoryError(f"{name}: cannot read history ({exc.strerror or exc})") from None
    if os.stat(name).st_size == 0:
        fh.close()
        raise HistoryError(f"{name}: history file is empty (the run recorded nothing)")
    return name, fh


def _problem(name: str, lineno: int, line: bytes) -> str:
    try:
        event = json.loads(line)
    except ValueError as exc:
        # A torn final write has no newline; saying so saves a reader from suspecting the writer.
        torn = "" if line.endswith(b"\n") else "; the line has no newline, so the write was cut short"
        reason = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        return f"{name}:{lineno}: not valid JSON ({reason}{torn})"
    if not isinstance(event, dict):
        return f"{name}:{lineno}: not a JSON object (got {type(event).__name__})"
    return f"{name}:{lineno}: event has no \"type\""


def iter_history(path: str | os.PathLike[str], *, problems: list[str] | None = None,
                 strict: bool = False) -> Iterator[Event]:
    """Stream the events of a history file one at a time (memory stays flat for any file size).

    Unreadable lines are skipped and described in ``problems`` (when a list is given); with
    ``strict=True`` the first one raises ``HistoryError``. A missing or empty file raises at once,
    not on the first ``next()``.
    """
    name, fh = _open(path)
    return _stream(name, fh, problems, strict)


def _stream(name: str, fh: Any, problems: list[str] | None, strict: bool) -> Iterator[Event]:
    try:
        yield from _lines(name, fh, problems, strict)
    except (OSError, EOFError) as exc:  # a truncated or corrupt .gz: what came before it was used
        raise HistoryError(f"{name}: cannot read history past this point ({exc})") from None


def _lines(name: str, fh: Any, problems: list[str] | None, strict: bool) -> Iterator[Event]:
    loads = json.loads
    with fh:
        for lineno, line in enumerate(fh, 1):
            # The happy path is one loads() per line; only bad lines pay for a diagnosis.
            try:
                event = loads(line)
            except ValueError:
                event = None
            if type(event) is dict and type(event.get("type")) is str:
                yield event
                continue
            if not line.strip():
                continue
            problem = _problem(name, lineno, line)
            if strict:
                raise HistoryError(problem)
            if problems is not None:
                problems.append(problem)


def read_history(path: str | os.PathLike[str], *, strict: bool = False) -> History:
    """Read a whole history file; see ``iter_history`` for what happens to unreadable lines.

    Raises ``HistoryError`` when the file is missing, empty, or holds no readable event at all.
    """
    problems: list[str] = []
    with paused_gc():
        events = list(iter_history(path, problems=problems, strict=strict))
    name = os.fspath(path)
    if not events:
        detail = f" ({len(problems)} unreadable line(s), first: {problems[0]})" if problems else ""
        raise HistoryError(f"{name}: history holds no readable events{detail}")
    return History(path=name, events=events, problems=problems)


def group_runs(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events grouped by ``run_id``, runs in order of first appearance, events in file order.

    Events without a ``run_id`` are grouped under ``""``.
    """
    runs: dict[str, list[Event]] = {}
    for event in events:
        rid = event.get("run_id") or ""
        bucket = runs.get(rid)
        if bucket is None:
            bucket = runs[rid] = []
        bucket.append(event)
    return runs


@dataclass(slots=True)
class JobView:
    """Everything one job left in the history, by attempt number."""

    job_id: str
    enqueued_ns: int | None = None
    expected: Mapping[str, Any] | None = None
    starts: dict[int, list[int]] = field(default_factory=dict)  # attempt_start started_ns, per attempt
    ends: dict[int, list[Event]] = field(default_factory=dict)  # "attempt" events, per attempt
    terminals: list[Event] = field(default_factory=list)
    records: list[Event] = field(default_factory=list)
    on_retry: int = 0
    on_failure: int = 0

    def attempts_seen(self) -> set[int]:
        return self.starts.keys() | self.ends.keys()

    def start_ns(self, attempt: int) -> int | None:
        # attempt_start is written before the body runs, so it exists even when the attempt crashed.
        starts = self.starts.get(attempt)
        if not starts:
            starts = [s for e in self.ends.get(attempt, ()) if (s := e.get("started_ns")) is not None]
        return min(starts) if starts else None

    @property
    def state(self) -> str | None:
        return self.terminals[0].get("state") if self.terminals else None


@dataclass
class RunIndex:
    """One run's history indexed by job, built in a single pass by ``index_run``."""

    run_id: str | None = None
    backend: str | None = None
    scenario: str | None = None
    header: Event | None = None
    end: Event | None = None
    jobs: dict[str, JobView] = field(default_factory=dict)
    native: set[str] | None = None  # None: the backend's own store was never read
    first_enqueue_ns: int | None = None
    last_terminal_ns: int | None = None
    deferrals: int = 0  # attempts a circuit breaker turned away without calling the dependency

    @property
    def policy(self) -> Mapping[str, Any]:
        return (self.header or {}).get("policy") or {}

    @property
    def partial(self) -> bool:
        """Interrupted (no end event, stopped by the user, or broken off by an error such as Redis going
        away): unfinished jobs are not proof of loss. A deadline is not partial: that is loss."""
        return self.end is None or str(self.end.get("reason", "")).startswith(("interrupted", "error"))


_JOB_EVENTS = frozenset({"attempt_start", "attempt", "callback", "terminal", "failure_record", "enqueue"})


def index_run(events: Iterable[Event]) -> RunIndex:
    """Index the events of ONE run; raises ValueError if they belong to several run_ids."""
    with paused_gc():
        return _index(events)


def _index(events: Iterable[Event]) -> RunIndex:
    idx = RunIndex()
    jobs = idx.jobs
    for e in events:
        rid = e.get("run_id")
        if rid != idx.run_id and rid is not None:
            if idx.run_id is not None:
                raise ValueError(f"events of several runs ({idx.run_id!r}, {rid!r}): split them with group_runs")
            idx.run_id, idx.backend, idx.scenario = rid, e.get("backend"), e.get("scenario")
        kind = e.get("type")
        jid = e.get("job_id")
        if jid is not None and kind in _JOB_EVENTS:
            jv = jobs.get(jid)
            if jv is None:
                jv = jobs[jid] = JobView(jid)
            n = e.get("attempt")
            if kind == "attempt_start":
                if isinstance(n, int):
                    started = jv.starts.setdefault(n, [])
                    if (ts := e.get("started_ns")) is not None:
                        started.append(ts)
            elif kind == "attempt":
                if isinstance(n, int):
                    jv.ends.setdefault(n, []).append(e)
            elif kind == "callback":
                if e.get("name") == "on_retry":
                    jv.on_retry += 1
                elif e.get("name") == "on_failure":
                    jv.on_failure += 1
            elif kind == "terminal":
                jv.terminals.append(e)
                ts = e.get("ts_ns")
                if ts is not None and (idx.last_terminal_ns is None or ts > idx.last_terminal_ns):
                    idx.last_terminal_ns = ts
            elif kind == "failure_record":
                jv.records.append(e)
            elif jv.enqueued_ns is None:  # kind == "enqueue": the first one counts, as in the sink
                jv.enqueued_ns = ts = e.get("ts_ns")
                jv.expected = e.get("expected")
                if ts is not None and (idx.first_enqueue_ns is None or ts < idx.first_enqueue_ns):
                    idx.first_enqueue_ns = ts
        elif kind == "run":
            idx.header = idx.header or e
        elif kind == "end":
            idx.end = e
        elif kind == "native":
            idx.native = (idx.native or set()) | set(e.get("job_ids") or ())
        elif kind == "deferral":
            idx.deferrals += 1
        # Anything else (worker lifecycle, event types added later) is not evidence for these checks.
    return idx

"""One run's history organised by job for the checkers, built one event at a time.

``RunBuilder.add`` takes the events of one run in file order, so a history is indexed while it is streamed
and never held whole (``harness.analysis.results`` does that). The index keeps only what checkers read: an
attempt's outcome and times but not its message or the backend's native blob, a terminal's state and time.
Those slim entries are slotted objects that also answer dict-style ``.get("field")``, so checkers written
against raw event dicts keep working; a million-event run then fits in a few hundred MB instead of 2 GB.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.bench.hostclock import Clocks, shift

Event = dict[str, Any]
# What a failure record must hold (failure-log completeness counts these); the index keeps only these.
RECORD_FIELDS = ("cell_id", "backend", "task", "job_id", "args", "exc_type", "exc_message", "traceback",
                 "attempts", "enqueued_ns", "failed_ns", "worker")
TRACEBACK_KEPT = 240  # characters of a failure record's traceback kept in the index: its last lines

_dumps: Callable[[Any], Any] = json.dumps
try:  # only a key for sharing equal expectations: orjson's is faster, json's is there without it
    from orjson import dumps as _orjson_dumps

    _dumps = _orjson_dumps
except ImportError:
    pass


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic objects.

    Each collection rescans every live object, so with the collector on, indexing a million-event
    history takes several times longer; nothing built here forms reference cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Fields:
    """Dict-style reads over a slotted entry, for code written against the raw event dicts.

    A field the event lacked and one it held as null both read as ``default`` (every checker treats them
    alike). A checker that needs another field of the event adds it to the entry's slots.
    """

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.__slots__:
            value = getattr(self, key)
            if value is not None:
                return value
        return default

    def __getitem__(self, key: str) -> Any:
        if key in self.__slots__:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.__slots__ and getattr(self, str(key)) is not None

    def to_dict(self) -> Event:
        names: tuple[str, ...] = self.__slots__
        return {k: v for k in names if (v := getattr(self, k)) is not None}


@dataclass(slots=True)
class Attempt(_Fields):
    """The fields of an ``attempt`` event (one finished execution) that checkers read."""

    outcome: str | None
    started_ns: int | None
    finished_ns: int | None
    exc_type: str | None
    fault: str | None
    expected_delay: float | None


@dataclass(slots=True)
class Terminal(_Fields):
    """The fields of a ``terminal`` event that checkers read."""

    state: str | None
    ts_ns: int | None
    exc_type: str | None
    attempts: int | None


@dataclass(slots=True)
class JobView:
    """Everything one job left in the history, by attempt number.

    ``ends`` and ``terminals`` hold slim ``Attempt``/``Terminal`` entries (attributes, or ``.get``);
    ``records`` are dicts of each failure record's ``RECORD_FIELDS`` (the record's other keys, such as
    kwargs, stay in the history), its traceback cut to the last ``TRACEBACK_KEPT`` characters (still
    present or absent, as completeness counts it, and still ending with the exception line).
    """

    job_id: str
    enqueued_ns: int | None = None
    expected: Mapping[str, Any] | None = None
    starts: dict[int, list[int]] = field(default_factory=dict)  # attempt_start started_ns, per attempt
    ends: dict[int, list[Attempt]] = field(default_factory=dict)  # "attempt" events, per attempt
    terminals: list[Terminal] = field(default_factory=list)
    records: list[Event] = field(default_factory=list)
    on_retry: int = 0
    on_failure: int = 0
    # What the library itself scheduled after failed attempt n: (due_ns, delay_s, source) of "schedule" events.
    schedules: dict[int, tuple[int | None, float | None, str | None]] = field(default_factory=dict)

    def attempts_seen(self) -> set[int]:
        return self.starts.keys() | self.ends.keys()

    def start_ns(self, attempt: int) -> int | None:
        # attempt_start is written before the body runs, so it exists even when the attempt crashed.
        starts = self.starts.get(attempt)
        if not starts:
            starts = [s for e in self.ends.get(attempt, ()) if (s := e.started_ns) is not None]
        return min(starts) if starts else None

    @property
    def state(self) -> str | None:
        return self.terminals[0].state if self.terminals else None


@dataclass
class RunIndex:
    """One run's history indexed by job (see ``RunBuilder``)."""

    cell_id: str | None = None
    backend: str | None = None
    scenario: str | None = None
    header: Event | None = None
    end: Event | None = None
    jobs: dict[str, JobView] = field(default_factory=dict)
    native: set[str] | None = None  # None: the backend's own store was never read
    first_enqueue_ns: int | None = None
    last_terminal_ns: int | None = None
    deferrals: int = 0  # attempts a circuit breaker turned away without calling the dependency
    ready: Event | None = None  # the first workers_ready event
    refused: set[str] = field(default_factory=set)  # jobs whose enqueue the client refused (enqueue_error)
    broker: list[Event] = field(default_factory=list)  # broker lifecycle events (a restart's down/up times)
    faults_fired: set[str] = field(default_factory=set)  # fault kinds some attempt really ran with
    # Where the jobs not terminal at the end still were, from the library's own stores ("whereabouts" event):
    # job id -> store names (empty: in none). None: the stores were never searched.
    whereabouts: dict[str, list[str]] | None = None
    recovery_hints: dict[str, str] = field(default_factory=dict)  # store -> when the library would bring it back
    # Multi-host runs (docs/multi-host.md): each host's clock offset, by which its times were corrected as they
    # were indexed, and the network faults the harness applied (their times corrected onto the same clock).
    clocks: Clocks = field(default_factory=Clocks)
    network: list[Event] = field(default_factory=list)

    @property
    def policy(self) -> Mapping[str, Any]:
        return (self.header or {}).get("policy") or {}

    @property
    def partial(self) -> bool:
        """Interrupted (no end event, stopped by the user, or broken off by an error such as Redis going
        away): unfinished jobs are not proof of loss. A deadline is not partial: that is loss."""
        return self.end is None or str(self.end.get("reason", "")).startswith(("interrupted", "error"))


def index_run(events: Iterable[Event]) -> RunIndex:
    """Index the events of ONE run; raises ValueError if they belong to several cell_ids."""
    builder = RunBuilder()
    with paused_gc():
        for e in events:
            builder.add(e)
    return builder.idx


_JOB_EVENTS = frozenset({"attempt_start", "attempt", "callback", "terminal", "failure_record", "enqueue",
                         "schedule"})
# The times a host's clock offset corrects, per event kind (the rest of an event is left as recorded).
_CORRECTED = {"attempt_start": ("started_ns",), "attempt": ("started_ns", "finished_ns"), "terminal": ("ts_ns",),
              "schedule": ("due_ns", "observed_ns"), "enqueue": ("ts_ns",), "network": ("ts_ns",)}


class RunBuilder:
    """Adds the events of one run to a ``RunIndex``, in file order."""

    __slots__ = ("idx", "_words", "_plans", "_hosts")

    def __init__(self) -> None:
        self.idx = RunIndex()
        self._words: dict[str, str] = {}
        self._plans: dict[bytes, Any] = {}
        self._hosts: dict[str, str] = {}  # job id -> the host of its latest attempt (multi-host runs only)

    def add(self, e: Event) -> None:
        idx = self.idx
        rid = e.get("cell_id")
        if rid != idx.cell_id and rid is not None:
            if idx.cell_id is not None:
                raise ValueError(f"events of several runs ({idx.cell_id!r}, {rid!r}): split them with group_cells")
            idx.cell_id, idx.backend, idx.scenario = rid, e.get("backend"), e.get("scenario")
        kind = e.get("type")
        jid = e.get("job_id")
        if kind == "clock":
            idx.clocks.add(e)
            return
        if idx.clocks.offsets and kind in _CORRECTED:
            e = self._corrected(kind, jid, e)
        if kind == "network":
            idx.network.append(e)
            return
        if jid is not None and kind in _JOB_EVENTS:
            self._job_event(idx, kind, jid, e)
        elif kind == "run":
            idx.header = idx.header or e
        elif kind == "end":
            idx.end = e
        elif kind == "native":
            idx.native = (idx.native or set()) | set(e.get("job_ids") or ())
        elif kind == "deferral":
            idx.deferrals += 1
        elif kind == "workers_ready":
            idx.ready = idx.ready or e
        elif kind == "enqueue_error":
            if jid is not None:
                idx.refused.add(jid)
        elif kind == "broker":
            idx.broker.append(e)
        elif kind == "whereabouts":
            found = e.get("jobs")
            if isinstance(found, dict):
                idx.whereabouts = {**(idx.whereabouts or {}),
                                   **{str(j): [str(s) for s in v] for j, v in found.items() if isinstance(v, list)}}
            hints = e.get("recovery")
            if isinstance(hints, dict):
                idx.recovery_hints.update({str(k): str(v) for k, v in hints.items()})
        # Anything else (worker lifecycle, event types added later) is not evidence for these checks.

    def _corrected(self, kind: str, jid: Any, e: Event) -> Event:
        """``e`` with its times on the broker's clock: a worker's by its host's offset, a terminal's and a native
        schedule's by the host of the job's latest attempt (the worker that wrote it, whose clock the library
        read for the due time), the harness's own (enqueue, network) by the driver's."""
        clocks = self.idx.clocks
        if kind in ("attempt_start", "attempt"):
            host = e.get("host")
            if isinstance(host, str) and jid is not None:
                self._hosts[jid] = host
            offset = clocks.of(host)
        elif kind in ("terminal", "schedule"):
            offset = clocks.of(self._hosts.get(jid))
        else:
            offset = clocks.harness()
        if not offset:
            return e
        return {**e, **{k: shift(e.get(k), offset) for k in _CORRECTED[kind] if k in e}}

    def _word(self, value: Any) -> Any:
        # Outcomes, states, exception names and messages repeat on every attempt: one string object each.
        return self._words.setdefault(value, value) if type(value) is str else value

    def _plan(self, expected: Any) -> Any:
        # Most jobs of a run share one expectation ({"state": ..., "attempts": ..., "delays": [...]}): one
        # object each. The serialised form is the key; equality guards what it conflates (NaN and null).
        try:
            key = _dumps(expected)
        except (TypeError, ValueError):
            return expected
        shared = self._plans.setdefault(key, expected)
        return shared if shared is expected or shared == expected else expected

    def _job_event(self, idx: RunIndex, kind: str, jid: str, e: Event) -> None:
        jv = idx.jobs.get(jid)
        if jv is None:
            jv = idx.jobs[jid] = JobView(jid)
        fault = e.get("fault")
        if fault and kind in ("attempt_start", "attempt"):
            idx.faults_fired.add(str(fault))
        if kind == "attempt_start":
            n = e.get("attempt")
            if isinstance(n, int):
                ts = e.get("started_ns")
                started = jv.starts.get(n)
                if started is None:
                    jv.starts[n] = [] if ts is None else [ts]
                elif ts is not None:
                    started.append(ts)
        elif kind == "attempt":
            n = e.get("attempt")
            if isinstance(n, int):
                ts = e.get("started_ns")
                started = jv.starts.get(n)
                if started and started[-1] == ts:
                    ts = started[-1]  # the same time as its attempt_start: one int object, not two
                word = self._word
                a = Attempt(word(e.get("outcome")), ts, e.get("finished_ns"), word(e.get("exc_type")),
                            word(e.get("fault")), e.get("expected_delay"))
                ends = jv.ends.get(n)
                if ends is None:
                    jv.ends[n] = [a]
                else:
                    ends.append(a)
        elif kind == "callback":
            name = e.get("name")
            if name == "on_retry":
                jv.on_retry += 1
            elif name == "on_failure":
                jv.on_failure += 1
        elif kind == "terminal":
            ts = e.get("ts_ns")
            word = self._word
            jv.terminals.append(Terminal(word(e.get("state")), ts, word(e.get("exc_type")), e.get("attempts")))
            if ts is not None and (idx.last_terminal_ns is None or ts > idx.last_terminal_ns):
                idx.last_terminal_ns = ts
        elif kind == "failure_record":
            jv.records.append(self._record(e))
        elif kind == "schedule":
            n, due, delay = e.get("attempt"), e.get("due_ns"), e.get("delay_s")
            if isinstance(n, int):
                jv.schedules[n] = (due if isinstance(due, int) else None,
                                   float(delay) if isinstance(delay, (int, float)) else None, e.get("source"))
        elif jv.enqueued_ns is None:  # kind == "enqueue": the first one counts, as in the sink
            jv.enqueued_ns = ts = e.get("ts_ns")
            jv.expected = self._plan(e.get("expected"))
            if ts is not None and (idx.first_enqueue_ns is None or ts < idx.first_enqueue_ns):
                idx.first_enqueue_ns = ts

    def _record(self, e: Event) -> Event:
        """A new dict (the caller may still hold the event) of the record's required fields."""
        word = self._word
        record = {k: word(e[k]) for k in RECORD_FIELDS if k in e}
        tb = record.get("traceback")
        if type(tb) is str and len(tb) > TRACEBACK_KEPT:
            record["traceback"] = word(tb[-TRACEBACK_KEPT:])
        return record

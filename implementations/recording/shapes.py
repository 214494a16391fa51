"""The events every job records, as compact records: ``(kind, shape, value, …)``, made a dict only when read.

An event dict costs far more than its values: copying a template's table, setting each field, and, for an
in-process run that holds its history until the measured window closes (harness/bench/cell.py ``History``),
~500 bytes of fresh memory an event with its values, whose page faults the workers pay for. A tuple of the
values is built in one instruction, and takes ~270 bytes with them. ``Shape.expand`` makes the dict, the
same keys in the same order as the history has always had, when the event is read: by the driver when it
writes the history (after the window), by ``MemorySink.drain`` and ``MemorySink.state`` for anyone else,
and at once for a sink that is not compact (a real queue's workers write JSON as they go). docs/performance.md "What
recording costs" counts each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# A record: (kind, shape, *values), or (kind, None, event) for an event that was a dict from the start.
Record = tuple[Any, ...]
Item = dict[str, Any] | Record  # what a compact sink's reader and the driver's history take


class Shape:
    """One kind of event: its template (the run's identity and the constant fields) and, in order, the
    fields a record gives values for. ``extra``: the record's last value is a dict of more fields, or
    ``None`` (an enqueue event's ``meta``)."""

    __slots__ = ("template", "expand")

    def __init__(self, template: dict[str, Any], fields: tuple[str, ...], *, extra: bool = False) -> None:
        if not set(fields) <= template.keys():
            # A field the template lacks would be added after the others: the history's key order would move.
            raise ValueError(f"fields {sorted(set(fields) - template.keys())} are not in the template")
        self.template = template
        self.expand: Callable[[Record], dict[str, Any]] = _expander(template, fields, extra)


def _expander(template: dict[str, Any], fields: tuple[str, ...], extra: bool) -> Callable[[Record], dict[str, Any]]:
    # Generated, as dataclasses generates __init__: the template's copy keeps each field's place, and one
    # unpacking assignment sets them all, two to three times faster than ``update(zip(...))``; every history
    # write of an in-process run makes each of its events this way. The names are this module's own
    # constants. The whole tail is unpacked: a record with a value too many or too few fails here.
    if not all(f.isidentifier() for f in fields):
        raise ValueError(f"event fields must be identifiers: {fields}")
    targets = ", ".join(f"e[{f!r}]" for f in fields)
    if extra:
        body = f"    {targets}, more = r[2:]\n    if more:\n        e.update(more)\n"
    else:
        body = f"    {targets}, = r[2:]\n"
    source = f"def expand(r):\n    e = template.copy()\n{body}    return e\n"
    namespace: dict[str, Any] = {"template": template}
    exec(compile(source, f"<expand {template['type']}>", "exec"), namespace)  # noqa: S102 - see above
    return namespace["expand"]  # type: ignore[no-any-return]


def as_event(item: dict[str, Any] | Record) -> dict[str, Any]:
    """An event, from either a dict or a record."""
    if isinstance(item, dict):
        return item
    shape = item[1]
    return item[2] if shape is None else shape.expand(item)  # type: ignore[no-any-return]


def as_events(items: Iterable[dict[str, Any] | Record]) -> list[dict[str, Any]]:
    """Events, from dicts and records (as_event's test inlined: this runs once for every held event)."""
    return [i if isinstance(i, dict) else i[2] if i[1] is None else i[1].expand(i) for i in items]


def terminal_of(item: dict[str, Any] | Record) -> tuple[Any, Any]:
    """A terminal event's ``(job_id, state)``, from a dict or a record, without making a dict of a record."""
    if isinstance(item, dict):
        return item.get("job_id"), item.get("state")
    shape = item[1]
    if shape is None:
        return item[2].get("job_id"), item[2].get("state")
    return item[2], shape.template["state"]  # a compact terminal's state is its shape's (success)


def wrap(event: dict[str, Any]) -> Record:
    """A dict event as a record, so that a compact sink's queue holds records alone."""
    return (event.get("type"), None, event)


class Shapes:
    """One shape per hot event kind, for one run; keys in the order the history has always had."""

    __slots__ = ("enqueue", "start", "success", "failed", "terminal", "on_retry")

    def __init__(self, ident: dict[str, Any], host: str) -> None:
        """``ident``: the run's identity every event carries (``run_id``, ``backend``, ``scenario``); ``host``:
        this machine's name, in every attempt."""
        attempt = {"job_id": None, "task": None, "attempt": None, "host": host, "pid": None, "started_ns": None}
        self.enqueue = Shape({"type": "enqueue", **ident, "job_id": None, "task": None, "ts_ns": None,
                              "countdown": None}, ("job_id", "task", "ts_ns", "countdown"), extra=True)
        self.start = Shape({"type": "attempt_start", **ident, **attempt, "fault": None, "native": None},
                           ("job_id", "task", "attempt", "pid", "started_ns", "fault", "native"))
        self.success = Shape({"type": "attempt", **ident, **attempt, "finished_ns": None, "outcome": "success",
                              "fault": None, "native": None},
                             ("job_id", "task", "attempt", "pid", "started_ns", "finished_ns", "fault", "native"))
        self.failed = Shape({"type": "attempt", **ident, **attempt, "finished_ns": None, "outcome": None,
                             "exc_type": None, "exc_message": None, "fault": None, "expected_delay": None,
                             "native": None},
                            ("job_id", "task", "attempt", "pid", "started_ns", "finished_ns", "outcome", "exc_type",
                             "exc_message", "fault", "expected_delay", "native"))
        self.terminal = Shape({"type": "terminal", **ident, "job_id": None, "task": None, "state": "success",
                               "attempts": None, "ts_ns": None, "result": None},
                              ("job_id", "task", "attempts", "ts_ns", "result"))
        self.on_retry = Shape({"type": "callback", **ident, "name": "on_retry", "job_id": None, "task": None,
                               "attempt": None, "ts_ns": None}, ("job_id", "task", "attempt", "ts_ns"))

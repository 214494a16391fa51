"""Reading ``history.jsonl``: one JSON event per line, several cells per file.

A history is the only input of the checkers. It is written append-only while workers run, so an
interrupted run may leave a torn last line; reading keeps every valid line and reports the rest as
problems (``strict=True`` turns the first problem into an error instead). ``iter_history`` streams a file
(what ``harness.analysis.results`` uses, so memory stays flat), ``group_cells`` splits events into their cells and
``index_run`` (``harness.analysis.runindex``) organises one run by job for the checkers.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.runindex import Event, JobView, RunIndex, index_run, paused_gc
from implementations.recording.schema import SCHEMA_VERSION

_LOADS: Callable[[bytes], Any] = json.loads
try:  # parsing is most of the cost of reading a history; orjson does it several times faster
    from orjson import loads as _orjson_loads

    _LOADS = _orjson_loads
except ImportError:  # backend environments (worker-side drivers import harness) do not install it
    pass

__all__ = ["Event", "HistoryReader", "HistoryError", "JobView", "RunIndex", "group_cells", "index_run", "iter_history",
           "paused_gc", "read_history"]


class HistoryError(Exception):
    """A history file that cannot be used at all (missing, empty, or a problem in strict mode)."""


@dataclass
class HistoryReader:
    """Every readable event of one file, in file order, and what could not be read."""

    path: str
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def runs(self) -> dict[str, list[Event]]:
        """The events grouped by ``cell_id`` (see ``group_cells``)."""
        return group_cells(self.events)


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
    loads = _LOADS
    with fh:
        for lineno, line in enumerate(fh, 1):
            # The happy path is one loads() per line; only bad lines pay for a diagnosis.
            try:
                event = loads(line)
            except ValueError:
                # orjson refuses a few things the json module (which wrote the file) accepts: NaN,
                # integers past 64 bits, lone surrogates. Those lines are valid, so ask json too.
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
            if type(event) is dict and type(event.get("type")) is str:
                if event["type"] == "meta":
                    check_version(name, event)
                elif "cell_id" not in event and "run_id" in event:
                    event["cell_id"] = event.pop("run_id")  # schema version 1 named a cell run_id
                yield event
                continue
            if not line.strip():
                continue
            problem = _problem(name, lineno, line)
            if strict:
                raise HistoryError(problem)
            if problems is not None:
                problems.append(problem)


def check_version(name: str, meta: Event) -> None:
    """HistoryError for a history written under a newer event schema than this reader knows
    (``implementations.recording.schema.SCHEMA_VERSION``): its events may not mean what the checkers think."""
    version = meta.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
        raise HistoryError(f"{name}: history schema_version {version!r} is newer than this retrybench reads "
                           f"({SCHEMA_VERSION}): upgrade retrybench to read it")


def read_history(path: str | os.PathLike[str], *, strict: bool = False) -> HistoryReader:
    """Read a whole history file; see ``iter_history`` for what happens to unreadable lines.

    Raises ``HistoryError`` when the file is missing, empty, or holds no readable event at all.
    """
    problems: list[str] = []
    with paused_gc():
        events = list(iter_history(path, problems=problems, strict=strict))
    name = os.fspath(path)
    if not events:
        raise no_events(name, problems)
    return HistoryReader(path=name, events=events, problems=problems)


def no_events(name: str, problems: list[str]) -> HistoryError:
    """The error for a history with no readable event at all."""
    detail = f" ({len(problems)} unreadable line(s), first: {problems[0]})" if problems else ""
    return HistoryError(f"{name}: history holds no readable events{detail}")


def group_cells(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events grouped by ``cell_id``, cells in order of first appearance, events in file order.

    Events without a ``cell_id`` are grouped under ``""``.
    """
    runs: dict[str, list[Event]] = {}
    for event in events:
        rid = event.get("cell_id") or ""
        bucket = runs.get(rid)
        if bucket is None:
            bucket = runs[rid] = []
        bucket.append(event)
    return runs

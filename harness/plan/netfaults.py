"""Network faults, the fault plan's network component (scenario key ``network``; docs/multi-host.md).

Each fault names a worker host (1-based) and a window, in seconds from the cell's measured start (scaled by
``time_scale`` as outages are): ``partition`` takes the host's link to the broker down for ``duration`` and
brings it up again; ``latency`` delays every byte between the host and the broker by ``ms`` (one way) through
the proxy on its path for ``duration``; ``drop`` resets every connection between them at ``at`` and refuses
new ones for ``duration``. The ``Nemesis`` applies them while the cell runs and writes every change into the
history as a ``network`` event (implementations/recording/clock.py) at the moment it took effect.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from implementations.recording import schema

KINDS = ("partition", "latency", "drop")
_KEYS = {"kind", "host", "at", "duration", "ms"}


class NetFaultError(ValueError):
    """A network fault that cannot be read."""


@dataclass(frozen=True)
class NetFault:
    kind: str
    host: int = 1
    at: float = 0.0
    duration: float = 0.0
    ms: float = 0.0

    @property
    def host_name(self) -> str:
        return f"w{self.host}"

    @property
    def proxied(self) -> bool:
        return self.kind in ("latency", "drop")


def parse_network(items: Sequence[Mapping[str, Any]], where: str = "network") -> tuple[NetFault, ...]:
    out = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise NetFaultError(f"{at}: expected a table with a 'kind', got {item!r}")
        if item.get("kind") not in KINDS:
            raise NetFaultError(f"{at}.kind: expected one of {', '.join(KINDS)}, got {item.get('kind')!r}")
        if unknown := sorted(set(item) - _KEYS):
            raise NetFaultError(f"{at}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
        host = item.get("host", 1)
        if isinstance(host, bool) or not isinstance(host, int) or host < 1:
            raise NetFaultError(f"{at}.host: expected a worker host number >= 1, got {host!r}")
        for key in ("at", "duration", "ms"):
            value = item.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise NetFaultError(f"{at}.{key}: expected a number >= 0, got {value!r}")
        if item["kind"] in ("partition", "latency") and not item.get("duration"):
            raise NetFaultError(f"{at}: a {item['kind']} needs a duration > 0")
        if item["kind"] == "latency" and not item.get("ms"):
            raise NetFaultError(f"{at}: a latency needs ms > 0")
        out.append(NetFault(str(item["kind"]), host, float(item.get("at", 0)), float(item.get("duration", 0)),
                            float(item.get("ms", 0))))
    return tuple(out)


def scaled(faults: Sequence[NetFault], time_scale: float) -> list[NetFault]:
    return [NetFault(f.kind, f.host, f.at * time_scale, f.duration * time_scale, f.ms) for f in faults]


Action = tuple[float, str, NetFault]  # (seconds from the cell's start, what, the fault)


def schedule(faults: Sequence[NetFault]) -> list[Action]:
    """Every change in time order: a window's start, and its end (what undoes it)."""
    actions: list[Action] = []
    for f in faults:
        actions.append((f.at, {"partition": "partition", "latency": "latency", "drop": "drop"}[f.kind], f))
        if f.kind == "partition":
            actions.append((f.at + f.duration, "heal", f))
        elif f.kind == "latency":
            actions.append((f.at + f.duration, "latency_end", f))
    return sorted(actions, key=lambda a: a[0])


class Nemesis:
    """Applies a cell's network faults on time, from a thread; ``stop`` undoes whatever is still applied.

    ``link(host, up)`` takes a link down or up and returns its name; ``proxy(change)`` sends a change to the
    proxy and returns its answer (with ``ts_ns``, when it took effect)."""

    def __init__(self, faults: Sequence[NetFault], *, link: Callable[[str, bool], str],
                 proxy: Callable[[dict[str, Any]], dict[str, Any]] | None, history: Path,
                 base: dict[str, Any]) -> None:
        self._todo = schedule(faults)
        self._link, self._proxy, self._history, self._base = link, proxy, history, base
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def on_progress(self, line: dict[str, Any]) -> None:
        """Started by the cell's first progress line: its ``elapsed`` is the clock the plan's times are on."""
        if self._thread is None and self._todo and "elapsed" in line and not line.get("finished"):
            start = time.monotonic() - float(line.get("elapsed") or 0)
            self._thread = threading.Thread(target=self._run, args=(start,), daemon=True, name="nemesis")
            self._thread.start()

    def _run(self, start: float) -> None:
        while True:
            with self._lock:
                if not self._todo:
                    return
                at = self._todo[0][0]
            if self._wake.wait(max(0.0, start + at - time.monotonic())):
                return
            with self._lock:
                if self._todo and self._todo[0][0] == at:
                    self._apply(*self._todo.pop(0)[1:])

    def stop(self) -> None:
        """Stop the thread, then lift what is still applied (heal links, latency back to 0) and record it."""
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            for _, what, fault in self._todo:
                if what in ("heal", "latency_end"):
                    self._apply(what, fault)
            self._todo = []

    def _apply(self, what: str, f: NetFault) -> None:
        event: dict[str, Any] = {}  # what was done, and when
        try:
            if what in ("partition", "heal"):
                event.update(event=what, link=self._link(f.host_name, what == "heal"), ts_ns=time.time_ns())
            elif self._proxy is not None:
                change: dict[str, Any] = {"host": f.host_name}
                if what == "drop":
                    change.update(drop=True, refuse_s=f.duration)
                else:
                    change["latency_ms"] = f.ms if what == "latency" else 0
                answer = self._proxy(change)
                event.update(event="latency" if what != "drop" else "drop", ms=change.get("latency_ms"),
                             refuse_s=change.get("refuse_s"), dropped=answer.get("dropped"),
                             ts_ns=int(answer.get("ts_ns") or time.time_ns()))
                if what == "drop" and f.duration:
                    event["until_ns"] = event["ts_ns"] + int(f.duration * 1e9)
        except Exception as exc:  # noqa: BLE001 - a fault that could not be applied is recorded, not fatal
            self.errors.append(f"{what} {f.host_name}: {exc}")
            event.update(event=what, error=str(exc), ts_ns=time.time_ns())
        event.setdefault("event", what)
        event.setdefault("ts_ns", time.time_ns())
        append_event(self._history, schema.network(self._base, host=f.host_name, fault=f.kind, **event))


def append_event(history: Path, event: dict[str, Any]) -> None:
    # O_APPEND: the driver appends to the same file; one short write stays one whole line.
    fd = os.open(history, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (json.dumps({k: v for k, v in event.items() if v is not None}) + "\n").encode())
    finally:
        os.close(fd)


def windows(events: Sequence[Mapping[str, Any]], t0_ns: int) -> list[tuple[str, float, float]]:
    """``(label, start_s, end_s)`` of every network fault in a cell's ``network`` events, seconds after
    ``t0_ns``: a partition until its heal, a latency until it is lifted, a drop for its refusal window (at
    least an instant). A window never closed (a run broken off) ends where it began."""
    out: list[tuple[str, float, float]] = []
    open_: dict[tuple[str, str], tuple[float, Any]] = {}
    for e in sorted(events, key=lambda e: e.get("ts_ns") or 0):
        ts = e.get("ts_ns")
        if not isinstance(ts, int) or e.get("error"):
            continue
        at, host, what = (ts - t0_ns) / 1e9, str(e.get("host")), e.get("event")
        if what == "partition":
            open_[("partition", host)] = (at, None)
        elif what == "heal" and ("partition", host) in open_:
            out.append((f"partition {host}", open_.pop(("partition", host))[0], at))
        elif what == "latency" and e.get("ms"):
            open_[("latency", host)] = (at, e.get("ms"))
        elif what == "latency" and ("latency", host) in open_:
            start, ms = open_.pop(("latency", host))
            out.append((f"+{float(ms):g} ms {host}", start, at))
        elif what == "drop":
            until = e.get("until_ns")
            out.append((f"drop {host}", at, (until - t0_ns) / 1e9 if isinstance(until, int) else at))
    out.extend((f"{kind} {host}", start, start) for (kind, host), (start, _) in open_.items())
    return out


def summary(events: Sequence[Mapping[str, Any]], t0_ns: int | None) -> list[dict[str, Any]]:
    """What results.json keeps of each ``network`` event: what, which host, and when (s after the first enqueue)."""
    keep = ("event", "host", "ms", "refuse_s", "dropped", "link", "error")
    return [{k: e[k] for k in keep if e.get(k) is not None}
            | {"at_s": round((e["ts_ns"] - t0_ns) / 1e9, 3) if t0_ns and isinstance(e.get("ts_ns"), int) else None}
            for e in events]

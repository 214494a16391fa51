"""The driver's side of one clock (docs/multi-host.md): its own offset against the broker, and, for the
analysis, the correction of every host's recorded times onto the broker's clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from implementations.recording.clock import EVENT_CLOCK, clock_event
from implementations.recording.events import harness_redis


class DriverClock:
    """Measures the driver host's offset (a ``clock`` event with role "driver") through its own connection."""

    def __init__(self, redis_url: str, base: dict[str, Any]) -> None:
        self._client = harness_redis(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._base = base

    def events(self, phase: str) -> list[dict[str, Any]]:
        event = clock_event(self._client, self._base, role="driver", phase=phase)
        return [event] if event is not None else []

    def close(self) -> None:
        self._client.close()


@dataclass
class Clocks:
    """Each host's offset onto the broker's clock, from the ``clock`` events seen so far in one run.

    A host's times are corrected with its first measurement (taken before any of its workers ran, so known
    before any of its attempts is read); the later ones only say how far its clock drifted (the report's
    table). Times of a host that measured nothing, and every time of a run without ``clock`` events, stay
    as recorded: a run on one host is read exactly as before.
    """

    offsets: dict[str, int] = field(default_factory=dict)
    driver: str | None = None  # the host whose clock the harness's own events (enqueue, network) are on
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, e: dict[str, Any]) -> None:
        if e.get("type") != EVENT_CLOCK:
            return
        self.events.append(e)
        host, offset = e.get("host"), e.get("offset_ns")
        if isinstance(host, str) and isinstance(offset, int):
            self.offsets.setdefault(host, offset)
            if e.get("role") == "driver" and self.driver is None:
                self.driver = host

    def of(self, host: Any) -> int:
        return self.offsets.get(host, 0) if isinstance(host, str) else 0

    def harness(self) -> int:
        return self.offsets.get(self.driver, 0) if self.driver else 0


def shift(ts: Any, offset: int) -> Any:
    return ts + offset if offset and isinstance(ts, int) else ts


def clock_table(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per host: its offset at the start and the end, their uncertainty, and the drift between them."""
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        host = str(e.get("host"))
        row = rows.setdefault(host, {"host": host, "role": e.get("role")})
        phase = "start" if e.get("phase") == "start" else "end"
        if phase in row and phase == "start":
            continue
        row[phase] = {"offset_ms": e.get("offset_ns", 0) / 1e6, "uncertainty_ms": e.get("uncertainty_ns", 0) / 1e6,
                      "rtt_ms": e.get("rtt_ns", 0) / 1e6}
    for row in rows.values():
        if "start" in row and "end" in row:
            row["drift_ms"] = row["end"]["offset_ms"] - row["start"]["offset_ms"]
    return sorted(rows.values(), key=lambda r: (r.get("role") != "driver", r["host"]))


def _ms(phase: Any) -> str:
    if not isinstance(phase, dict):
        return "-"
    return f"{phase['offset_ms']:+.3f} ± {phase['uncertainty_ms']:.3f}"


def clock_rows(cells: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The report's "Hosts and clocks" table: one row per host of every cell that measured clocks, with the
    network faults each worker host had (from results.json's ``clocks`` and ``network``)."""
    rows = []
    for cell in cells:
        faults: dict[str, list[str]] = {}
        for n in cell.get("network") or ():
            what = f"{n.get('event')}{' ' + format(n['ms'], 'g') + ' ms' if n.get('ms') else ''} at {n.get('at_s')} s"
            faults.setdefault(str(n.get("host")), []).append(what)
        for r in cell.get("clocks") or ():
            drift = r.get("drift_ms")
            rows.append({"cell": f"{cell.get('backend')} · {cell.get('scenario')}", "host": str(r.get("host")),
                         "role": str(r.get("role")), "start": _ms(r.get("start")), "end": _ms(r.get("end")),
                         "drift": f"{drift:+.3f}" if isinstance(drift, (int, float)) else "-",
                         "network": "; ".join(faults.get(str(r.get("host")), [])) or "-"})
    return rows

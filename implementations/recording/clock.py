"""One clock for a run on several hosts: each host's offset from the broker's ``TIME``, measured NTP-style.

The event kinds multi-host runs add to the history are defined here, in one place:

- ``clock``: one host's measured offset (``role`` "worker" from each supervisor, "driver" from the driver;
  ``phase`` "start" or "end" of the cell): ``offset_ns`` is what to add to a time this host recorded to put
  it on the broker's clock, ``uncertainty_ns`` bounds the error (half the round trip of the best sample),
  ``rtt_ns`` that round trip, ``samples`` how many were taken.
- ``network``: a network fault the harness applied or lifted (``event``: "partition", "heal", "latency",
  "drop"; ``host``: the worker host; ``ms``, ``link``), at ``ts_ns`` on the harness's clock.

Correcting is the analysis's job (``harness/analysis/runindex.py``): the recording path only reads its clock.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from implementations.recording import schema
from implementations.recording.events import HOST, now_ns

EVENT_CLOCK = "clock"
EVENT_NETWORK = "network"
EVENT_KINDS = (EVENT_CLOCK, EVENT_NETWORK)
SAMPLES = 7


@dataclass(frozen=True)
class Offset:
    """``server - local`` at the moment of the best (shortest round trip) sample, in ns."""

    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int
    samples: int


def estimate(samples: list[tuple[int, int, int]]) -> Offset:
    """From ``(t0, server, t1)`` samples (local send, broker time, local receive; ns): the offset of the one
    with the shortest round trip, whose midpoint is the likeliest moment the broker read its clock (NTP's
    assumption of a symmetric path); the error is at most half that round trip plus the 1 µs of ``TIME``."""
    if not samples:
        raise ValueError("no clock samples")
    t0, server, t1 = min(samples, key=lambda s: s[2] - s[0])
    rtt = max(0, t1 - t0)
    return Offset(offset_ns=server - (t0 + t1) // 2, uncertainty_ns=rtt // 2 + 1000, rtt_ns=rtt,
                  samples=len(samples))


def broker_time_ns(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000_000 + int(micros) * 1000


def measure(client: Any, samples: int = SAMPLES) -> Offset:
    """Ask the broker for its ``TIME`` ``samples`` times, reading this host's recording clock around each."""
    taken: list[tuple[int, int, int]] = []
    for _ in range(samples):
        t0 = now_ns()
        server = broker_time_ns(client)
        taken.append((t0, server, now_ns()))
    return estimate(taken)


def clock_event(client: Any, base: dict[str, Any], *, role: str, phase: str) -> dict[str, Any] | None:
    """A ``clock`` event for this host, or None when the broker cannot be asked (down, partitioned)."""
    try:
        offset = measure(client)
    except Exception:  # noqa: BLE001 - a missing measurement is recorded as missing, never a crash
        return None
    return schema.clock(base, host=HOST, pid=os.getpid(), role=role, phase=phase, reference="broker TIME",
                        ts_ns=now_ns(), **asdict(offset))

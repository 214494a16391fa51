"""A stopping worker records its stop even while the broker still refuses it, and never raises for it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import implementations.processes.worker as worker


class FlakySink:
    def __init__(self, refusals: int) -> None:
        self.refusals, self.emitted = refusals, []  # type: ignore[var-annotated]

    def emit(self, *events: dict[str, Any]) -> None:
        if self.refusals:
            self.refusals -= 1
            raise ConnectionError("Error while reading: Connection reset by peer")
        self.emitted.extend(events)


def app_with(sink: FlakySink) -> Any:
    return SimpleNamespace(runtime=sink)


def test_the_stop_is_recorded_once_the_broker_takes_it_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a broker that refuses the first two writes (its connections reset, the arq case of broker-latency)
    monkeypatch.setattr(worker.time, "sleep", lambda s: None)
    sink = FlakySink(refusals=2)
    # When the worker records its stop, then it lands, once
    worker.record_stop(app_with(sink), {"type": "worker", "event": "stop"})
    assert sink.emitted == [{"type": "worker", "event": "stop"}]


def test_a_broker_that_never_comes_back_costs_the_stop_not_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "STOP_RECORD_S", 0.05)
    sink = FlakySink(refusals=10**6)
    worker.record_stop(app_with(sink), {"type": "worker", "event": "stop"})  # returns, does not raise
    assert sink.emitted == []

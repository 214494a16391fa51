"""One clock and network faults over literal histories: offset estimation, per-host correction, windows.

Two worker hosts; host w2's recording clock is 5 s fast. A job fails on w1 and is retried 1 s later on w2:
without correction its lateness reads 5 s; with w2's measured offset it reads what really happened."""

from __future__ import annotations

from typing import Any

import pytest

from harness.analysis.checks import check_retry_timing
from harness.analysis.runindex import index_run
from harness.bench.hostclock import clock_rows, clock_table
from harness.orchestrate.hosts import HostsError, check_hosts, parse_skews
from harness.orchestrate.netns import unavailable
from harness.plan.netfaults import NetFaultError, parse_network, schedule, summary, windows
from harness.plan.presets import PRESETS
from implementations.recording.clock import estimate

T0 = 1_700_000_000_000_000_000
SKEW = 5_000_000_000  # w2's clock is 5 s ahead


def ns(seconds: float) -> int:
    return T0 + round(seconds * 1e9)


def ev(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "cell_id": "r1", "backend": "rq", "scenario": "unit", **fields}


def header() -> dict[str, Any]:
    policy = {"autoretry_for": ["ConnectionError"], "max_retries": 3, "retry_backoff": False,
              "default_retry_delay": 1.0, "intervals": [1.0], "time_scale": 1.0}
    return ev("run", ts_ns=ns(0), policy=policy, faults=[], tolerance_s=0.002, jobs=1)


def clock(host: str, offset_ns: int, role: str = "worker", phase: str = "start") -> dict[str, Any]:
    return ev("clock", host=host, role=role, phase=phase, offset_ns=offset_ns, uncertainty_ns=20_000,
              rtt_ns=40_000, samples=7, ts_ns=ns(0))


def attempt(n: int, host: str, at: float, until: float, outcome: str, skew: int = 0) -> dict[str, Any]:
    fields = {"exc_type": "ConnectionError", "expected_delay": 1.0} if outcome == "retry" else {}
    return ev("attempt", job_id="r1-000000", task="work", attempt=n, host=host, pid=1,
              started_ns=ns(at) + skew, finished_ns=ns(until) + skew, outcome=outcome, **fields)


def history(*, with_clocks: bool) -> list[dict[str, Any]]:
    clocks = [clock("harness", 0, role="driver"), clock("w1", 0), clock("w2", -SKEW)] if with_clocks else []
    return [header(), *clocks,
            ev("enqueue", job_id="r1-000000", task="work", ts_ns=ns(0.0), expected={"state": "success"}),
            attempt(1, "w1", 0.1, 0.2, "retry"),
            attempt(2, "w2", 1.25, 1.3, "success", skew=SKEW),  # 1.05 s after the failure: 50 ms late
            ev("terminal", job_id="r1-000000", task="work", state="success", attempts=2, ts_ns=ns(1.3) + SKEW),
            ev("network", host="w1", event="partition", link="rbb1", ts_ns=ns(0.5)),
            ev("network", host="w1", event="heal", link="rbb1", ts_ns=ns(2.5))]


def test_the_offset_is_the_midpoint_of_the_sample_with_the_shortest_round_trip() -> None:
    samples = [(1_000, 6_000_900, 3_000),  # rtt 2000 ns
               (10_000, 6_010_500, 11_000),  # rtt 1000 ns: this one
               (20_000, 6_021_000, 24_000)]
    got = estimate(samples)
    assert got.offset_ns == 6_010_500 - 10_500
    assert got.rtt_ns == 1_000 and got.uncertainty_ns == 500 + 1_000 and got.samples == 3
    with pytest.raises(ValueError):
        estimate([])


def test_a_skewed_host_s_times_are_corrected_and_lateness_is_unchanged() -> None:
    corrected = check_retry_timing(history(with_clocks=True))
    assert corrected["lateness"] == [pytest.approx(0.05, abs=1e-6)]
    assert corrected["late_retries"] == 0 and corrected["valid"]
    raw = check_retry_timing(history(with_clocks=False))
    assert raw["lateness"] == [pytest.approx(5.05, abs=1e-6)] and raw["late_retries"] == 1


def test_the_terminal_is_corrected_by_the_host_of_the_job_s_last_attempt() -> None:
    idx = index_run(history(with_clocks=True))
    assert idx.jobs["r1-000000"].terminals[0].ts_ns == ns(1.3)
    assert idx.last_terminal_ns == ns(1.3)
    assert idx.clocks.offsets == {"harness": 0, "w1": 0, "w2": -SKEW} and idx.clocks.driver == "harness"


def test_a_native_schedule_is_corrected_by_the_clock_of_the_host_that_failed_the_attempt() -> None:
    # Given a job that fails on the skewed host w2, whose library schedules the retry on w2's clock, 1 s later
    events = [header(), clock("harness", 0, role="driver"), clock("w1", 0), clock("w2", -SKEW),
              attempt(1, "w2", 0.1, 0.2, "retry", skew=SKEW),
              ev("schedule", job_id="r1-000000", attempt=1, due_ns=ns(1.2) + SKEW, delay_s=1.0, source="rq",
                 observed_ns=ns(0.2) + SKEW, schedule="native", pid=1),
              attempt(2, "w1", 1.25, 1.3, "success")]
    # When the run is indexed, then the due time is on the broker's clock, as the next attempt's start is
    (due, delay, source) = index_run(events).jobs["r1-000000"].schedules[1]
    assert due == ns(1.2) and delay == 1.0 and source == "rq"


def test_a_run_without_clock_events_is_read_as_recorded() -> None:
    events = history(with_clocks=False)
    idx = index_run(events)
    assert idx.jobs["r1-000000"].ends[2][0].started_ns == ns(1.25) + SKEW
    assert [e["event"] for e in idx.network] == ["partition", "heal"]


def test_later_measurements_do_not_move_the_correction_but_show_the_drift() -> None:
    events = [*history(with_clocks=True), clock("w2", -SKEW + 2_000_000, phase="end")]
    idx = index_run(events)
    assert idx.clocks.offsets["w2"] == -SKEW
    rows = {r["host"]: r for r in clock_table(idx.clocks.events)}
    assert rows["w2"]["drift_ms"] == pytest.approx(2.0)
    assert rows["harness"]["role"] == "driver" and list(rows)[0] == "harness"
    table = clock_rows([{"backend": "rq", "scenario": "unit", "clocks": list(rows.values()),
                         "network": summary(idx.network, idx.first_enqueue_ns)}])
    w1 = next(r for r in table if r["host"] == "w1")
    assert w1["network"] == "partition at 0.5 s; heal at 2.5 s"
    assert next(r for r in table if r["host"] == "w2")["drift"] == "+2.000"


def test_network_windows_pair_each_fault_with_what_lifts_it() -> None:
    events = [{"event": "partition", "host": "w1", "ts_ns": ns(1)}, {"event": "heal", "host": "w1", "ts_ns": ns(3)},
              {"event": "latency", "host": "w2", "ms": 150, "ts_ns": ns(2)},
              {"event": "latency", "host": "w2", "ms": 0, "ts_ns": ns(4)},
              {"event": "drop", "host": "w2", "ts_ns": ns(5), "until_ns": ns(6)},
              {"event": "partition", "host": "w3", "ts_ns": ns(7)}]  # never healed: a run broken off
    assert windows(events, T0) == [("partition w1", 1.0, 3.0), ("+150 ms w2", 2.0, 4.0), ("drop w2", 5.0, 6.0),
                                   ("partition w3", 7.0, 7.0)]


def test_network_faults_are_checked_and_scheduled_in_time_order() -> None:
    faults = parse_network([{"kind": "latency", "host": 2, "at": 1, "duration": 3, "ms": 100},
                            {"kind": "partition", "at": 0.5, "duration": 1}])
    assert [(t, what) for t, what, _ in schedule(faults)] == [(0.5, "partition"), (1.0, "latency"),
                                                               (1.5, "heal"), (4.0, "latency_end")]
    for bad, says in (({"kind": "cut"}, "kind"), ({"kind": "partition", "host": 0, "duration": 1}, "host"),
                      ({"kind": "partition"}, "duration"), ({"kind": "latency", "duration": 1}, "ms"),
                      ({"kind": "drop", "port": 1}, "unknown")):
        with pytest.raises(NetFaultError, match=says):
            parse_network([bad])


def test_network_presets_need_hosts_and_enough_of_them() -> None:
    for name in ("partition-worker", "broker-latency"):
        with pytest.raises(HostsError, match="--hosts"):
            check_hosts(0, [PRESETS[name]], {})
    with pytest.raises(HostsError, match="w3"):
        check_hosts(0, [], {"w3": 1.0})
    with pytest.raises(HostsError, match="HOST=SECONDS"):
        parse_skews(["w2"])
    assert parse_skews(["w2=5", "w1=-0.5"]) == {"w2": 5.0, "w1": -0.5}


def test_without_root_hosts_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    why = unavailable()
    assert why is not None and "root" in why and "\n" not in why

"""History lines: orjson where it can, json where it cannot, and the same events back either way."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from implementations.recording.jsonline import SMALL_BATCH, dumps_line, dumps_lines, loads


def test_an_event_comes_back_as_it_went_in() -> None:
    event = {"type": "attempt", "job_id": "j", "attempt": 2, "started_ns": 1_764_000_000_000_000_000,
             "fault": None, "native": {"job_try": 2}, "ok": True, "delay": 0.25, "args": ["é", [1, 2]]}
    line = dumps_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert loads(line) == event == json.loads(line)


def test_what_orjson_refuses_still_becomes_one_line() -> None:
    # An integer beyond 64 bits (a task's result), keys that are not strings, a value json cannot encode
    event = {"result": 2**70, 3: "three", "when": datetime(2026, 11, 29, tzinfo=timezone.utc), "obj": object()}
    back = loads(dumps_line(event))
    assert back["result"] == 2**70 and back["3"] == "three"
    assert back["when"].startswith("2026-11-29") and back["obj"].startswith("<object object")


def test_a_line_json_wrote_with_nan_is_read() -> None:
    assert math.isnan(loads(b'{"lateness": NaN}\n')["lateness"])


def test_a_key_that_is_not_a_string_alone_takes_orjsons_slower_options_not_json() -> None:
    # Given an event whose only oddity is an integer key (orjson's plain call refuses it)
    line = dumps_line({"native": {1: "one"}, "ok": True})
    # Then the key becomes a string, in orjson's compact form (json would have written ", " and ": ")
    assert line == b'{"native":{"1":"one"},"ok":true}\n'


def test_a_batch_is_one_line_per_event_in_order_whatever_one_of_them_holds() -> None:
    # Given a batch with a string holding "},{", an integer key and an integer beyond 64 bits among plain events
    batch = [{"type": "a", "n": 1}, {"type": "b", "msg": "x},{y"}, {"type": "c", "native": {1: "one"}},
             {"type": "d", "result": 2**70}, {"type": "e", "n": 5}]
    # When it is encoded as lines
    data = dumps_lines(batch)
    lines = data.splitlines(keepends=True)
    # Then every event is its own line, in order, each the same bytes as on its own
    assert lines == [dumps_line(e) for e in batch]
    assert [loads(line)["type"] for line in lines] == ["a", "b", "c", "d", "e"]
    assert loads(lines[1])["msg"] == "x},{y" and loads(lines[2])["native"] == {"1": "one"}
    # and an empty batch is nothing at all
    assert dumps_lines([]) == b""


def test_a_large_batch_is_the_same_lines_as_a_small_one() -> None:
    # Given a driver-sized batch (past SMALL_BATCH, gathered in one buffer) with one event orjson refuses
    batch = [{"type": "attempt", "job_id": f"j{i}", "attempt": 1} for i in range(SMALL_BATCH * 3)]
    # When it is encoded, and again with an integer key in its middle (the whole batch then goes event by event)
    plain = dumps_lines(batch)
    odd = dumps_lines([*batch[:20], {"type": "c", "native": {1: "one"}}, *batch[20:]])
    # Then both are one line per event, in order, the same bytes as each event on its own
    assert bytes(plain) == b"".join(dumps_line(e) for e in batch)
    assert [loads(line)["job_id"] for line in bytes(plain).splitlines()] == [e["job_id"] for e in batch]
    assert bytes(odd).splitlines()[20] == b'{"type":"c","native":{"1":"one"}}'
    assert bytes(odd).count(b"\n") == len(batch) + 1

"""Enqueue times: sent at once, or batched inside a burst, in order, and never lost while Redis is away."""

from __future__ import annotations

import threading

import pytest
import redis

import implementations.recording.events as events
from harness.orchestrate.redis_server import RedisServer, _free_port
from implementations.recording.events import RedisSink, harness_redis
from implementations.recording.marks import BATCH, MarkWriter

pytestmark = pytest.mark.integration


def test_every_mark_lands_and_the_first_enqueue_time_wins(redis_url: str) -> None:
    # Given a burst of enqueue marks, one job marked twice (a requeue keeps the first enqueue time)
    key = "test-marks:burst"
    writer = MarkWriter(harness_redis(redis_url), key)
    for n in range(2000):
        writer.add(f"job-{n}", n)
    writer.add("job-7", 10**9)
    # When they are flushed
    assert writer.flush(timeout=30)
    # Then every one is in Redis, with the first time given for each job
    stored = redis.Redis.from_url(redis_url).hgetall(key)
    assert len(stored) == 2000
    assert stored[b"job-7"] == b"7" and stored[b"job-1999"] == b"1999"


def test_a_mark_outside_a_burst_is_in_redis_when_add_returns(redis_url: str) -> None:
    # Given one enqueue, and no more after it (a script that enqueues a job and waits for its result)
    writer = MarkWriter(harness_redis(redis_url), "test-marks:lone")
    writer.add("job-1", 1)
    # Then its mark is in Redis already, with no flush
    assert redis.Redis.from_url(redis_url).hget("test-marks:lone", "job-1") == b"1"


def test_marks_wait_for_a_redis_that_is_away() -> None:
    # Given a writer whose Redis is not there yet (a broker restart, seen from the enqueuing process)
    port = _free_port("127.0.0.1")
    writer = MarkWriter(harness_redis(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.2), "test-marks:away")
    writer.add("job-1", 1)
    assert not writer.flush(timeout=0.3)  # nothing to write to: not flushed, and not dropped either
    # When Redis comes up on that port
    with RedisServer(port=port, password="") as server:  # no password: the writer was made before it existed
        # Then the mark is written
        assert writer.flush(timeout=20)
        assert redis.Redis.from_url(server.url).hget("test-marks:away", "job-1") == b"1"


def test_a_failure_reads_an_enqueue_time_that_lands_after_it_asked(redis_url: str) -> None:
    # Given a job whose enqueue mark is still on its way when its worker asks for it
    reader = RedisSink(redis_url, "test-marks:late")
    late = threading.Timer(0.2, lambda: redis.Redis.from_url(redis_url).hset("test-marks:late:enqueued", "j", 42))
    late.start()
    try:
        # When the worker reads it, then it waits for the mark rather than record the job without one
        assert reader.enqueued_ns("j") == 42
    finally:
        late.join()


def test_a_job_never_marked_has_no_enqueue_time(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MARK_WAIT_S", 0.05)
    assert RedisSink(redis_url, "test-marks:never").enqueued_ns("nobody") is None


def test_a_burst_sends_full_batches_and_its_tail_when_it_ends(redis_url: str) -> None:
    # Given a writer used inside a burst (the driver's enqueue loop)
    writer = MarkWriter(harness_redis(redis_url), "test-marks:burst-block")
    with writer.burst():
        for n in range(2 * BATCH + 8):
            writer.add(f"job-{n}", n)
        # Then full batches are sent as they fill, and the rest waits
        assert redis.Redis.from_url(redis_url).hlen("test-marks:burst-block") == 2 * BATCH
    # And the tail is sent when the burst ends
    assert redis.Redis.from_url(redis_url).hlen("test-marks:burst-block") == 2 * BATCH + 8


def test_a_batch_keeps_the_first_enqueue_time_and_survives_a_restart_that_forgot_its_script() -> None:
    # Given a burst whose batch marks one job twice, sent as one script
    with RedisServer(password="") as server:
        writer = MarkWriter(harness_redis(server.url), "test-marks:script")
        with writer.burst():
            for n in range(BATCH):
                writer.add("job-twice" if n in (3, 9) else f"job-{n}", n)
        stored = redis.Redis.from_url(server.url).hgetall("test-marks:script")
        # Then the first time given wins inside a batch too
        assert stored[b"job-twice"] == b"3" and len(stored) == BATCH - 1
        # When Redis forgets its scripts (what a restart does) and another batch comes
        redis.Redis.from_url(server.url).script_flush()
        with writer.burst():
            for n in range(BATCH):
                writer.add(f"later-{n}", n)
        # Then the script is loaded again and every mark lands
        assert redis.Redis.from_url(server.url).hlen("test-marks:script") == 2 * BATCH - 1

"""Reading taskiq's own Redis stores: failed results, and where an unfinished job's message still is."""

from __future__ import annotations

import json
from typing import Any

import redis
from taskiq.serializers import PickleSerializer

from implementations.backends.taskiq_backend.schedule import ClaimingScheduleSource
from implementations.runtime.startup import PROBE_ID_PREFIX

BATCH = 1000


def failed_results(client: redis.Redis, results_prefix: str) -> list[str]:
    """Task ids whose stored TaskiqResult has ``is_err`` (RedisAsyncResultBackend: one pickled dict per task id,
    key ``prefix_str:task_id``), read a thousand at a time."""
    serializer = PickleSerializer()
    failed: list[str] = []
    batch: list[bytes] = []
    start = len(results_prefix) + 1

    def flush() -> None:
        for key, raw in zip(batch, client.mget(batch) if batch else [], strict=True):
            if raw is not None and serializer.loadb(raw).get("is_err"):
                job_id = key.decode()[start:]
                if not job_id.startswith(PROBE_ID_PREFIX):
                    failed.append(job_id)
        batch.clear()

    for key in client.scan_iter(match=f"{results_prefix}:*", count=BATCH):
        batch.append(key)
        if len(batch) >= BATCH:
            flush()
    flush()
    return failed


def find_jobs(client: redis.Redis, n: dict[str, str], source: ClaimingScheduleSource,
              job_ids: list[str]) -> dict[str, list[str]]:
    """Each job's message in the stream (pending for a consumer, or not yet delivered to the group) and in the
    schedule source (a delayed retry or countdown not yet sent)."""
    wanted = set(job_ids)
    where: dict[str, list[str]] = {j: [] for j in job_ids}
    stream = n["stream"]
    pending: set[bytes] = set()
    last = b"0-0"
    if client.exists(stream):
        for group in client.xinfo_groups(stream):
            if group["name"] in (n["group"], n["group"].encode()):
                last = group["last-delivered-id"]
                last = last if isinstance(last, bytes) else str(last).encode()
        for entry in client.xpending_range(stream, n["group"], min="-", max="+", count=1_000_000):
            pending.add(entry["message_id"] if isinstance(entry["message_id"], bytes)
                        else str(entry["message_id"]).encode())
        cursor = "-"
        while True:
            entries: list[Any] = client.xrange(stream, min=cursor, max="+", count=BATCH) or []
            for msg_id, fields in entries:
                task_id = _task_id(fields.get(b"data"))
                if task_id not in wanted:
                    continue
                if msg_id in pending:
                    where[task_id].append("taskiq stream, pending (delivered, unacked)")
                elif _after(msg_id, last):
                    where[task_id].append("taskiq stream, undelivered")
            if len(entries) < BATCH:
                break
            cursor = "(" + entries[-1][0].decode()
    serializer = PickleSerializer()
    for key in client.scan_iter(match=source.data_key("*"), count=BATCH):
        raw = client.get(key)
        task_id = serializer.loadb(raw).get("task_id") if raw is not None else None
        if task_id in wanted:
            where[task_id].append("taskiq schedule source")
    return where


def _task_id(data: bytes | None) -> str | None:
    try:
        return str(json.loads(data or b"{}").get("task_id"))
    except ValueError:
        return None


def _after(msg_id: bytes, last: bytes) -> bool:
    a, b = (tuple(int(x) for x in i.split(b"-")) for i in (msg_id, last))
    return a > b

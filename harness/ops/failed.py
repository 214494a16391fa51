"""The failure log as an operator sees it: ``retrybench failed-jobs`` and ``retrybench serve`` read it here.

Two sources hold the same records: a live Redis (every run's ``retrybench:<cell>:failures`` list and
its event stream) and a results directory (``failed_jobs.log`` and ``history.jsonl``, possibly gzipped).
Requeueing needs the live Redis and the backend's own library, so it runs
``python -m implementations.processes.requeue`` in that backend's virtualenv.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from harness.analysis.history import HistoryError, iter_history
from harness.analysis.storage import history_file
from implementations.backends import is_in_process

Record = dict[str, Any]
PREFIX = "retrybench:"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# What the list shows; the traceback is for `show` (it is most of a record's size).
SUMMARY_FIELDS = ("job_id", "backend", "scenario", "task", "exc_type", "exc_message", "attempts", "failed_ns",
                  "cell_id", "worker")


class FailedJobsError(ValueError):
    """A source that cannot be read, a bad filter, or a job that cannot be requeued."""


class AlreadyRequeued(FailedJobsError):
    """This failure was requeued already (409 in the API, exit 1 in the CLI)."""


MAX_RECORD_BYTES = 1 << 20  # a record larger than this is listed as malformed, never parsed
_TEXT_FIELDS = ("job_id", "backend", "scenario", "task", "exc_type", "exc_message", "cell_id", "worker", "traceback")
_INT_FIELDS = ("attempts", "failed_ns", "enqueued_ns")


def normalize(raw: Any, where: str = "") -> Record:
    """A failure record as the list, ``show`` and the API can always use it: text fields are strings, counts
    and times are integers or None, args a list and kwargs a dict. Anything else (not JSON, not an object,
    too large, a wrongly typed field) is kept visible with ``malformed`` saying why, never an error."""
    if isinstance(raw, (bytes, str)):
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        if len(text) > MAX_RECORD_BYTES:
            return {"job_id": "?", "malformed": f"record of {len(text)} bytes (limit {MAX_RECORD_BYTES})",
                    "exc_message": text[:200]}
        try:
            raw = json.loads(text)
        except ValueError:
            return {"job_id": "?", "malformed": f"not JSON{' (' + where + ')' if where else ''}",
                    "exc_message": text[:200]}
    if not isinstance(raw, dict):
        return {"job_id": "?", "malformed": f"not a JSON object but {type(raw).__name__}",
                "exc_message": json.dumps(raw, default=str)[:200]}
    out: Record = dict(raw)
    if "cell_id" not in out and "run_id" in out:
        out["cell_id"] = out.pop("run_id")  # a record of event schema version 1, which named the cell run_id
    problems = []
    for key in _TEXT_FIELDS:
        value = out.get(key)
        if value is not None and not isinstance(value, str):
            out[key] = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
            if key == "job_id" and not isinstance(value, int):
                problems.append(key)
    for key in _INT_FIELDS:
        value = out.get(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        try:
            out[key] = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError, OverflowError):
            out[key] = None
            problems.append(key)
        else:
            if isinstance(value, bool):
                problems.append(key)
    if not isinstance(out.get("args", []), list):
        out["args"] = [out.get("args")]
        problems.append("args")
    if not isinstance(out.get("kwargs", {}), dict):
        out["kwargs"] = {}
        problems.append("kwargs")
    if not out.get("job_id"):
        out["job_id"] = "?"
        problems.append("job_id")
    if problems:
        out["malformed"] = "wrongly typed " + ", ".join(problems)
    return out


def parse_since(text: str, *, now_ns: int) -> int:
    """``30s``, ``15m``, ``2h``, ``1d`` (ago) or an ISO-8601 time → nanoseconds since the epoch."""
    m = re.fullmatch(r"\s*(\d{1,9}(?:\.\d{1,9})?)\s*([smhd])\s*", text)
    if m:
        return now_ns - int(float(m.group(1)) * _UNITS[m.group(2)] * 1e9)
    try:
        when = datetime.fromisoformat(text.strip())
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return int(when.timestamp() * 1e9)
    except (ValueError, OverflowError, OSError):
        raise FailedJobsError(f"since {text!r}: expected a duration like 15m, 2h, 1d or an ISO time "
                              "like 2026-11-29T10:00") from None


@dataclass(frozen=True, kw_only=True)
class Filter:
    backend: str | None = None
    task: str | None = None
    exc_type: str | None = None
    since_ns: int | None = None
    run: str | None = None  # a cell id or the start of one (a whole run shares its cells' prefix)

    def __call__(self, r: Record) -> bool:
        return ((self.backend is None or r.get("backend") == self.backend)
                and (self.task is None or r.get("task") == self.task)
                and (self.exc_type is None or r.get("exc_type") == self.exc_type)
                and (self.since_ns is None or _ns(r) >= self.since_ns)
                and (self.run is None or str(r.get("cell_id", "")).startswith(self.run)))


def _ns(r: Record) -> int:
    value = r.get("failed_ns")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class Source(Protocol):
    description: str
    can_requeue: bool

    def records(self) -> Iterator[Record]: ...

    def events_of(self, record: Record) -> list[Record]: ...


class ResultsSource:
    """A results directory: ``failed_jobs.log`` for records, the history for each job's attempts."""

    can_requeue = False

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir.resolve()
        self.description = f"results {self.dir}"
        self.log = next((p for p in (self.dir / "failed_jobs.log", self.dir / "failed_jobs.log.gz") if p.exists()),
                        None)
        if self.log is None and not history_file(self.dir).exists():
            raise FailedJobsError(f"{run_dir}: no failed_jobs.log or history.jsonl here — is this a retrybench "
                                  "results directory?")

    def records(self) -> Iterator[Record]:
        if self.log is None:  # an older run: the history holds the same records
            yield from (normalize(self._strip(e)) for e in self._events() if e.get("type") == "failure_record")
            return
        opener = gzip.open if self.log.suffix == ".gz" else open
        with opener(self.log, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    yield normalize(line, f"{self.log.name}:{lineno}")

    def events_of(self, record: Record) -> list[Record]:
        return [e for e in self._events() if isinstance(e, dict) and e.get("job_id") == record["job_id"]]

    def _events(self) -> Iterator[Record]:
        try:
            yield from iter_history(history_file(self.dir))
        except HistoryError as exc:
            raise FailedJobsError(str(exc)) from None

    @staticmethod
    def _strip(event: Record) -> Record:
        return {k: v for k, v in event.items() if k != "type"}


class RedisSource:
    """A live Redis: every run's failure list and event stream under ``retrybench:<cell>:``."""

    can_requeue = True

    def __init__(self, url: str) -> None:
        import redis

        from implementations.core.redact import redact_text, redact_url

        self.url = url
        self.description = f"redis {redact_url(url)}"
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30, decode_responses=True)
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise FailedJobsError(f"cannot reach Redis at {redact_url(url)}: {redact_text(str(exc))}") from None

    def records(self) -> Iterator[Record]:
        for key in sorted(self._redis.scan_iter(match=f"{PREFIX}*:failures", count=1000)):
            for raw in self._redis.lrange(key, 0, -1):
                yield normalize(raw, key)

    def events_of(self, record: Record) -> list[Record]:
        key = f"{PREFIX}{record['cell_id']}:events"
        job = record["job_id"]
        out = []
        entries: list[tuple[str, dict[str, str]]] = self._redis.xrange(key)  # type: ignore[assignment]
        for _, fields in entries:
            try:
                event = json.loads(fields["e"])
            except (KeyError, ValueError, TypeError):
                continue
            if not isinstance(event, dict):
                continue
            # A requeued ARQ job runs under a derived id (<id>.requeue-…): it belongs to this job's story.
            if event.get("job_id") == job or str(event.get("job_id", "")).startswith(job + ".requeue-"):
                out.append(event)
        return out

    def claim_requeue(self, record: Record) -> bool:
        """Mark this failure (job and failure time) as requeued; False if it was already. A job that fails
        again makes a new failure record, which can be requeued in turn."""
        key = f"{PREFIX}{record['cell_id']}:requeued:{record['job_id']}:{record.get('failed_ns')}"
        return bool(self._redis.set(key, "1", nx=True, ex=30 * 86400))

    def release_requeue(self, record: Record) -> None:
        self._redis.delete(f"{PREFIX}{record['cell_id']}:requeued:{record['job_id']}:{record.get('failed_ns')}")


def open_source(*, redis_url: str | None, results: Path | None) -> Source:
    if bool(redis_url) == bool(results):
        raise FailedJobsError("give exactly one of --redis-url URL (a live Redis) or --results DIR (a run's results)")
    return RedisSource(redis_url) if redis_url else ResultsSource(results)  # type: ignore[arg-type]


def query(source: Source, flt: Filter, *, offset: int = 0, limit: int = 50) -> tuple[int, list[Record]]:
    """Matching records, newest failure first: (total, one page)."""
    found = sorted((r for r in source.records() if flt(r)), key=_ns, reverse=True)
    return len(found), found[offset:offset + limit]


def find(source: Source, job_id: str) -> Record | None:
    """The newest record of one job, with ``history``: every event of that job, attempts first to last."""
    matches = [r for r in source.records() if r.get("job_id") == job_id]
    if not matches:
        return None
    record = max(matches, key=_ns)
    events = source.events_of(record)

    def when(e: Record) -> int:
        value = e.get("ts_ns") or e.get("started_ns") or 0
        return value if isinstance(value, int) else 0

    return {**record, "records": len(matches), "history": sorted(events, key=when)}


def summary(record: Record) -> Record:
    return {k: record.get(k) for k in SUMMARY_FIELDS + ("malformed",)}


def requeue(source: Source, job_id: str, *, env_root: Path | None = None) -> Record:
    """Run one failed job again through its backend's native mechanism; returns where it went."""
    from harness.orchestrate.envs import EnvError, ensure_envs, parse_backend_spec

    if not isinstance(source, RedisSource):
        raise FailedJobsError("requeue needs the live Redis (--redis-url): a results directory is a record of "
                              "the past")
    record = find(source, job_id)
    if record is None:
        raise LookupError(job_id)
    if record.get("malformed"):
        raise FailedJobsError(f"{job_id}: the failure record is malformed ({record['malformed']}): not requeued")
    try:
        spec = parse_backend_spec(str(record.get("backend", "")))
        if is_in_process(spec.backend):
            raise FailedJobsError("the reference backend runs in-process: its jobs cannot be requeued")
        kwargs = {"root": env_root} if env_root else {}
        env = ensure_envs([spec], **kwargs)[0]  # type: ignore[arg-type]
    except EnvError as exc:
        raise FailedJobsError(str(exc)) from None
    plain = {k: v for k, v in record.items() if k not in ("history", "records")}
    if not source.claim_requeue(record):
        raise AlreadyRequeued(f"{job_id} was requeued already (failure of {record.get('failed_ns')}); it can be "
                              "requeued again once that run of it has failed again")
    try:
        return _run_requeue(env.python, source.url, record, plain, job_id)
    except BaseException:
        source.release_requeue(record)  # nothing was queued: the next try may
        raise


def _run_requeue(python: Path, url: str, record: Record, plain: Record, job_id: str) -> Record:
    from implementations.backends.base import SOURCE_ROOT

    # Everything on stdin: the URL may hold a password (argv is public in `ps`), and a record can be far
    # larger than the kernel's limit on one argument.
    request = json.dumps({"redis_url": url, "prefix": f"{PREFIX}{record['cell_id']}", "record": plain},
                         default=str)
    done = subprocess.run([str(python), "-m", "implementations.processes.requeue"], input=request,
                          capture_output=True, text=True, timeout=120, cwd=SOURCE_ROOT, check=False,
                          env={**os.environ, "PYTHONPATH": SOURCE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        result: Record = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise FailedJobsError(f"requeue of {job_id} failed: {done.stderr.strip()[-300:]}") from None
    if "error" in result:
        raise FailedJobsError(f"requeue of {job_id} failed: {result['error']}")
    return result

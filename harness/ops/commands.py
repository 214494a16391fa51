"""``retrybench failed-jobs`` (``rq info`` for failures, on every backend) and ``retrybench serve``."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table, box

from harness.ops.failed import (
    AlreadyRequeued,
    FailedJobsError,
    Filter,
    Record,
    find,
    open_source,
    parse_since,
    query,
    requeue,
    summary,
)

Command = Callable[[argparse.Namespace, Console], int]


class OpsUsageError(Exception):
    """Reported by the CLI as one line and exit code 2."""


def _source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="read the live failure log of every run in this Redis (default "
                   "$RETRYBENCH_REDIS_URL: "
                   "keeps a password off the command line)")
    p.add_argument("--results", type=Path, metavar="DIR", help="read a results directory instead")


def add_commands(sub: Any) -> dict[str, Command]:
    fj = sub.add_parser("failed-jobs", help="list, show and requeue failed jobs of every backend (like `rq info`)")
    fj.add_argument("action", nargs="?", choices=["list", "show", "requeue"], default="list")
    fj.add_argument("job_id", nargs="?", help="the job to show or requeue")
    _source_options(fj)
    fj.add_argument("--backend", help="only this backend (as results name it, e.g. rq or celery==5.6.*)")
    fj.add_argument("--task", help="only this task")
    fj.add_argument("--exc", dest="exc_type", help="only this exception type, e.g. ConnectionError")
    fj.add_argument("--since", help="only failures since: 30s, 15m, 2h, 1d, or an ISO time")
    fj.add_argument("--run", help="only this run (a cell id or its first characters)")
    fj.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    fj.add_argument("--offset", type=int, default=0, help="skip this many of the newest first")
    fj.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sv = sub.add_parser("serve", help="HTTP API over the failure log: GET /failed-jobs, requeue, /health, /docs")
    _source_options(sv)
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--token", default=os.environ.get("RETRYBENCH_API_TOKEN"),
                    help="bearer token (default $RETRYBENCH_API_TOKEN); required to requeue, and to bind "
                         "anywhere but loopback")
    return {"failed-jobs": cmd_failed_jobs, "serve": cmd_serve}


def _redis_url(args: argparse.Namespace) -> str | None:
    # $RETRYBENCH_REDIS_URL keeps a password out of the shell history and `ps`; --results wins over it.
    return args.redis_url or (None if args.results else os.environ.get("RETRYBENCH_REDIS_URL") or None)


def _filter(args: argparse.Namespace) -> Filter:
    since = parse_since(args.since, now_ns=time.time_ns()) if args.since else None
    return Filter(backend=args.backend, task=args.task, exc_type=args.exc_type, since_ns=since, run=args.run)


def _when(ns: Any) -> str:
    try:
        return datetime.fromtimestamp(int(ns) / 1e9).strftime("%Y-%m-%d %H:%M:%S") if ns else "-"
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _text(value: Any) -> str:
    # Every value of a record is data: "[/x]" in a message is text, not rich markup (it crashed the table).
    return escape(str(value))


def cmd_failed_jobs(args: argparse.Namespace, console: Console) -> int:
    try:
        if args.action != "list" and not args.job_id:
            raise OpsUsageError(f"failed-jobs {args.action} needs a JOB_ID")
        if args.limit < 1 or args.offset < 0:
            raise OpsUsageError("--limit must be >= 1 and --offset >= 0")
        source = open_source(redis_url=_redis_url(args), results=args.results)
        if args.action == "requeue":
            try:
                result = requeue(source, args.job_id)
            except AlreadyRequeued as exc:
                print(f"retrybench: {exc}", file=sys.stderr)
                return 1
            except LookupError:
                raise OpsUsageError(f"no failed job {args.job_id!r} in {source.description}") from None
            print(json.dumps(result)) if args.json else console.print(
                _text(f"requeued {result['job_id']} on {result['backend']} as {result['requeued_as']}"))
            return 0
        if args.action == "show":
            record = find(source, args.job_id)
            if record is None:
                raise OpsUsageError(f"no failed job {args.job_id!r} in {source.description}")
            print(json.dumps(record, default=str)) if args.json else _show(record, console)
            return 0
        total, items = query(source, _filter(args), offset=args.offset, limit=args.limit)
    except FailedJobsError as exc:
        raise OpsUsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"total": total, "offset": args.offset, "limit": args.limit,
                          "items": [summary(r) for r in items]}, default=str))
        return 0
    table = Table(box=box.SIMPLE_HEAD, title=_text(f"{total} failed job(s) in {source.description}"),
                  title_justify="left")
    id_width = max((len(str(r.get("job_id"))) for r in items), default=6)
    for name in ("failed at", "job id", "backend", "scenario", "task", "exception", "message", "tries"):
        # Ids are what people copy into `show` and `requeue`: never shortened; the message gives way.
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=30 if name == "message" else None,
                         min_width=id_width if name == "job id" else None,
                         justify="right" if name == "tries" else "left")
    for r in items:
        message = str(r.get("exc_message"))[:60]
        if r.get("malformed"):
            message = f"MALFORMED ({r['malformed']}): {message}"
        table.add_row(_when(r.get("failed_ns")), _text(r.get("job_id")), _text(r.get("backend")),
                      _text(r.get("scenario")), _text(r.get("task")), _text(r.get("exc_type")), _text(message),
                      _text(r.get("attempts")))
    console.print(table)
    if total > args.offset + len(items):
        console.print(f"… {total - args.offset - len(items)} more: --offset {args.offset + len(items)}")
    return 0


def _show(record: Record, console: Console) -> None:
    for key in ("job_id", "backend", "scenario", "task", "args", "kwargs", "exc_type", "exc_message", "attempts",
                "worker", "cell_id"):
        console.print(f"[bold]{key}[/]: {_text(record.get(key))}")
    if record.get("malformed"):
        console.print(f"[bold red]malformed[/]: {_text(record['malformed'])}")
    console.print(f"[bold]enqueued[/]: {_when(record.get('enqueued_ns'))}   [bold]failed[/]: "
                  f"{_when(record.get('failed_ns'))}   [bold]records[/]: {record.get('records')}")
    console.print("[bold]traceback[/]:")
    console.print(str(record.get("traceback", "")).rstrip(), markup=False, highlight=False)
    table = Table(box=box.SIMPLE_HEAD, title="history", title_justify="left")
    for name in ("time", "event", "attempt", "outcome", "exception", "fault", "worker"):
        table.add_column(name)
    for e in record.get("history", []):
        if e.get("type") not in ("enqueue", "attempt", "terminal", "requeue", "callback"):
            continue
        ts = e.get("started_ns") or e.get("ts_ns")
        table.add_row(_when(ts), _text(e.get("type") if e.get("type") != "callback" else e.get("name")),
                      _text(e.get("attempt", "")), _text(e.get("outcome") or e.get("state") or ""),
                      _text(e.get("exc_type") or ""), _text(e.get("fault") or ""),
                      _text(e.get("worker") or (f"{e['host']}:{e.get('pid')}" if e.get("host") else "")
                            or e.get("requeued_as") or ""))
    console.print(table)


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    from harness.ops.server import LOOPBACK, create_app

    if args.host not in LOOPBACK and not args.token:
        raise OpsUsageError(f"--host {args.host} is reachable from other machines: give --token (or set "
                            "RETRYBENCH_API_TOKEN), or bind to 127.0.0.1")
    try:
        source = open_source(redis_url=_redis_url(args), results=args.results)
    except FailedJobsError as exc:
        raise OpsUsageError(str(exc)) from None
    import uvicorn

    app = create_app(source, token=args.token, require_token=args.host not in LOOPBACK)
    # Bound before the "serving" line: a port in use is one line and exit 2, never "serving …" then exit 3.
    sock = _bind(args.host, args.port)
    console.print(_text(f"serving {source.description} on http://{args.host}:{sock.getsockname()[1]} (docs: /docs)"
                        + ("" if args.token else "; requeue disabled: no --token")))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise OpsUsageError(f"--port {port}: expected 0-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OpsUsageError(f"--host {host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OpsUsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock

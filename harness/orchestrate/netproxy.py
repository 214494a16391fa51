"""A small TCP proxy of our own on the path from a worker host to the broker (docs/multi-host.md).

No maintained fault-injecting TCP proxy could be installed here (Toxiproxy has no Debian package, and PyPI
has only clients for it), so this is ours: asyncio, standard library only, about a hundred lines. It runs in
the broker's namespace (``python -m harness.orchestrate.netproxy``), one listener per proxied worker host, forwarding
bytes to the broker's Redis; it reads no byte of what it forwards (Redis's password still guards every
connection). It is controlled only through its stdin, one JSON line per change, and answers each with the
moment it applied it (``ts_ns``) on stdout:

- ``{"host": "w1", "latency_ms": 200}``: every chunk, both ways, is delivered 200 ms after it arrived (one
  way; a round trip gains twice that), in order; 0 lifts it.
- ``{"host": "w1", "drop": true, "refuse_s": 2}``: every open connection of that host is reset now, and new
  ones are refused (closed at once) for ``refuse_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Route:
    name: str
    latency_s: float = 0.0
    refuse_until: float = 0.0
    conns: set[asyncio.StreamWriter] = field(default_factory=set)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            if route.latency_s <= 0 and queue.empty():
                writer.write(data)
                await writer.drain()
            else:
                queue.put_nowait((time.monotonic() + route.latency_s, data))
        queue.put_nowait((0.0, b""))
        await sender
    except (ConnectionError, OSError):
        pass
    finally:
        sender.cancel()
        with contextlib.suppress(Exception):
            writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a middlebox that drops a connection does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _serve(route: Route, target: tuple[str, int], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    if time.monotonic() < route.refuse_until:
        _reset(writer)
        return
    try:
        up_reader, up_writer = await asyncio.open_connection(*target)
    except OSError:
        _reset(writer)
        return
    route.conns.update((writer, up_writer))
    try:
        await asyncio.gather(_pipe(reader, up_writer, route), _pipe(up_reader, writer, route))
    finally:
        route.conns.difference_update((writer, up_writer))


def apply(routes: dict[str, Route], change: dict[str, Any]) -> dict[str, Any]:
    route = routes[str(change["host"])]
    if "latency_ms" in change:
        route.latency_s = max(0.0, float(change["latency_ms"])) / 1000
    dropped = 0
    if change.get("drop"):
        route.refuse_until = time.monotonic() + float(change.get("refuse_s") or 0)
        for w in list(route.conns):
            _reset(w)
            dropped += 1
        route.conns.clear()
    return {"ok": True, "host": route.name, "ts_ns": time.time_ns(), "dropped": dropped}


async def main_async() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    setup = json.loads(await stdin.readline())
    target = (str(setup["target"][0]), int(setup["target"][1]))
    routes: dict[str, Route] = {}
    for entry in setup["listen"]:
        route = routes[entry["name"]] = Route(entry["name"])

        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, route: Route = route) -> None:
            await _serve(route, target, r, w)

        await asyncio.start_server(handler, entry["host"], int(entry["port"]))
    print(json.dumps({"ready": True}), flush=True)
    while line := await stdin.readline():  # EOF: the harness is gone or done
        try:
            print(json.dumps(apply(routes, json.loads(line))), flush=True)
        except (KeyError, ValueError, TypeError) as exc:
            print(json.dumps({"ok": False, "error": str(exc)}), flush=True)


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async())


if __name__ == "__main__":
    main()

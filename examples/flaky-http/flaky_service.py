"""A small local HTTP service that fails transiently, deterministically: the example task's dependency.

``GET /charge/<n>`` answers 503 (Service Unavailable) to the first ``failures_for(n)`` requests for order
``n`` and 200 with a JSON body after that; how many times order ``n`` fails comes from the seed alone, so two
runs see the same failures. Some orders are declined for good (402, never worth retrying). Standard library
only; run as ``python flaky_service.py PORT SEED`` (charges.make_args does), it prints "ready" once it listens
and exits when the process that started it is gone.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DECLINED = 402


def failures_for(order: int, seed: int) -> int:
    """How many requests for ``order`` fail before one succeeds: 0 to 2, or -1 (declined for good)."""
    draw = random.Random(f"{seed}:{order}").random()
    return -1 if draw < 0.1 else 0 if draw < 0.4 else 1 if draw < 0.8 else 2


class Handler(BaseHTTPRequestHandler):
    seen: dict[int, int] = {}
    seed = 0

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "charge" or not parts[1].isdigit():
            self.send_error(404)
            return
        order = int(parts[1])
        count = self.seen[order] = self.seen.get(order, 0) + 1
        fails = failures_for(order, self.seed)
        status, body = ((DECLINED, {"error": "card declined"}) if fails < 0 else
                        (503, {"error": "try again"}) if count <= fails else
                        (200, {"order": order, "charged": True, "request": count}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    port, seed = int(sys.argv[1]), int(sys.argv[2])
    Handler.seed = seed
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    parent = os.getppid()

    def orphaned() -> None:  # the process that started it is gone (even SIGKILLed): stop too
        while os.getppid() == parent:
            time.sleep(0.5)
        server.shutdown()

    threading.Thread(target=orphaned, daemon=True).start()
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

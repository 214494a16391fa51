"""The example's own task: charge an order through a payment API that fails transiently (docs/own-tasks.md).

``charge`` is an ordinary function using a real HTTP client (httpx, from requirements.txt): it raises
``PaymentUnavailable`` when the API answers 503 (worth retrying) and ``CardDeclined`` on 402 (never worth
retrying); the scenario's policy names both. ``make_args`` gives job ``index`` its arguments; called first in
the driver (job 0), it starts the local flaky service for the run and stops it when the driver exits.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys

import httpx


class PaymentUnavailable(Exception):
    """The payment API said 503: try again later."""


class CardDeclined(Exception):
    """The payment API said 402: retrying will not help."""


def charge(base_url: str, order: int) -> dict:
    response = httpx.get(f"{base_url}/charge/{order}", timeout=5.0)
    if response.status_code == 503:
        raise PaymentUnavailable(f"order {order}: payment API unavailable (503)")
    if response.status_code == 402:
        raise CardDeclined(f"order {order}: card declined (402)")
    response.raise_for_status()
    return response.json()


_service: dict[str, str] = {}
SERVICE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flaky_service.py")


def make_args(index: int, seed: int) -> list:
    """Job ``index``'s arguments: the service's URL and an order number. Starts the service on first use
    (in the driver: one service per run, stopped when the driver exits)."""
    if "url" not in _service:
        _service["url"] = start_service(seed)
    return [_service["url"], index]


def start_service(seed: int) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, SERVICE, str(port), str(seed)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    atexit.register(stop_service, proc)
    if proc.stdout is None or proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the flaky payment service did not start")
    return f"http://127.0.0.1:{port}"


def stop_service(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

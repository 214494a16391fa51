"""Failure alerts: a Slack-compatible webhook post per terminal failure, rate-limited, never in the job's way.

The failure handler only *queues* an alert (one Redis command); a sender thread in each long-lived
worker process delivers it. A job therefore never waits for, or fails because of, a slow or broken
webhook — and an alert queued by an RQ work horse survives the horse's ``os._exit``. Rate limit: at most
one alert per task per window (60 s) across all workers (``SET NX EX`` in Redis); the ones suppressed
meanwhile are counted and reported by the next alert that gets through. Delivery is retried with
exponential backoff and full jitter (the same ``RetryPolicy`` the benchmark measures); alerts that
still fail go to a dead-letter list.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import urllib.error
import urllib.request
from typing import Any

from implementations.core.policy import RetryPolicy

log = logging.getLogger("retrybench.alerts")
# A webhook URL carries its own token (Slack's path is the secret): it comes from this variable, never from a
# command line or a file. The ``alert_webhook`` option then says ``env``.
WEBHOOK_ENV = "RETRYBENCH_ALERT_WEBHOOK"
FROM_ENV = "env"


class WebhookError(ValueError):
    """An alert webhook that cannot be used: not set, or not an http(s) URL."""


def webhook_url(option: object) -> str:
    """The URL alerts are posted to, for the ``alert_webhook`` option: ``env`` reads ``$RETRYBENCH_ALERT_WEBHOOK``;
    an app built in code may pass the URL itself. Only http and https: urllib would also open ``file:`` and
    ``ftp:`` URLs."""
    from urllib.parse import urlsplit

    url = os.environ.get(WEBHOOK_ENV, "") if option == FROM_ENV else str(option or "")
    if not url:
        raise WebhookError(f"alert_webhook=env needs ${WEBHOOK_ENV} (the webhook URL, which holds its token)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        where = f"${WEBHOOK_ENV}" if option == FROM_ENV else "alert_webhook"
        raise WebhookError(f"alert webhook: {where} must be an http or https URL")
    return url


_ADMIT = """
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then
  local n = redis.call('GET', KEYS[2])
  redis.call('DEL', KEYS[2])
  return tonumber(n or 0)
end
redis.call('INCR', KEYS[2])
return -1
"""
DELIVERY = RetryPolicy(max_retries=4, retry_backoff=0.5, retry_backoff_max=8.0, retry_jitter=True)


def payload(record: dict[str, Any], suppressed: int) -> dict[str, Any]:
    """Slack's incoming-webhook format (``text`` + ``blocks``), with the record's fields alongside."""
    more = f" ({suppressed} more failure(s) of this task suppressed since the last alert)" if suppressed else ""
    text = (f":rotating_light: {record.get('task')} failed for good on {record.get('backend')} after "
            f"{record.get('attempts')} attempt(s): {record.get('exc_type')}: {record.get('exc_message')}{more}")
    fields = {k: record.get(k) for k in ("job_id", "task", "backend", "scenario", "cell_id", "exc_type",
                                          "exc_message", "attempts", "failed_ns", "worker")}
    return {"text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                       {"type": "context", "elements": [{"type": "mrkdwn", "text": f"job `{record.get('job_id')}`"}]}],
            "retrybench": {**fields, "suppressed": suppressed}}


class Alerts:
    """``notify(record)`` from the failure handler; ``start_sender()`` in each long-lived worker process."""

    def __init__(self, webhook: str, *, prefix: str, redis_url: str | None, window_s: float = 60.0,
                 timeout_s: float = 5.0) -> None:
        self.webhook, self.prefix, self.window_s, self.timeout_s = webhook, prefix, window_s, timeout_s
        self._redis: Any = None
        self._local: queue.Queue[str] = queue.Queue()
        self._limits: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._sender: threading.Thread | None = None
        self._busy = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    @property
    def outbox(self) -> str:
        return f"{self.prefix}:alerts:outbox"

    def notify(self, record: dict[str, Any]) -> None:
        """Queue one alert, or count it as suppressed; never raises."""
        try:
            allowed, suppressed = self._admit(str(record.get("task")))
            if not allowed:
                return
            body = json.dumps(payload(record, suppressed), default=str)
            if self._redis is not None:
                self._redis.lpush(self.outbox, body)
            else:
                self._local.put(body)
                self.start_sender()  # in-process backends have no worker main to start it
        except Exception:  # noqa: BLE001 - an alert must never fail the job it reports
            log.exception("could not queue an alert")

    def _admit(self, task: str) -> tuple[bool, int]:
        if self._redis is None:
            import time

            with self._lock:
                now = time.monotonic()
                if now < self._limits.get(task, 0.0):
                    self._suppressed[task] = self._suppressed.get(task, 0) + 1
                    return False, 0
                self._limits[task] = now + self.window_s
                return True, self._suppressed.pop(task, 0)
        key = f"{self.prefix}:alerts:limit:{task}"
        # One script, so that opening the window and taking the suppressed count are one step: a failure
        # suppressed by another worker in between would otherwise be reported by the wrong alert.
        n = int(self._redis.eval(_ADMIT, 2, key, f"{key}:suppressed", max(1, int(self.window_s * 1000))))
        return (n >= 0), max(n, 0)

    def start_sender(self) -> None:
        with self._lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_forever, name="retrybench-alerts", daemon=True)
                self._sender.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the sender (after its current delivery): for embedders and tests; workers just exit."""
        self._stopping.set()
        if self._sender is not None:
            self._sender.join(timeout)

    def _send_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._redis is not None:
                    item = self._redis.brpop([self.outbox], timeout=1)
                    if item is None:
                        continue
                    self._busy = True
                    body = item[1].decode()
                else:
                    try:
                        body = self._local.get(timeout=1)
                    except queue.Empty:
                        continue
                    self._busy = True
                self._deliver(body)
            except Exception:  # noqa: BLE001 - Redis gone or a bug: keep the worker alive, try again
                log.exception("alert sender")
                threading.Event().wait(1.0)
            finally:
                self._busy = False

    def flush(self, timeout: float = 3.0) -> bool:
        """Wait (bounded) until queued alerts are delivered: a stopping worker sends what it can first."""
        import time

        if self._sender is None:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = self._redis.llen(self.outbox) if self._redis is not None else self._local.qsize()
            if not pending and not self._busy:
                return True
            time.sleep(0.05)
        return False

    def _deliver(self, body: str) -> None:
        rng = random.Random()
        for retries in range(DELIVERY.max_retries + 1):
            try:
                request = urllib.request.Request(self.webhook, data=body.encode(), method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - user's URL
                    if response.status < 300:
                        return
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code != 429:  # the webhook refuses this alert: no point retrying
                    log.error("alert refused by the webhook (%s)", exc.code)
                    break
                log.warning("alert delivery failed (%s), try %d", exc, retries + 1)
            except (urllib.error.URLError, OSError) as exc:
                log.warning("alert delivery failed (%s), try %d", exc, retries + 1)
            if retries < DELIVERY.max_retries:
                threading.Event().wait(DELIVERY.delay(retries, rng))
        if self._redis is not None:
            self._redis.lpush(f"{self.prefix}:alerts:dead", body)
        log.error("alert dropped after %d tries: %s", DELIVERY.max_retries + 1, body[:200])

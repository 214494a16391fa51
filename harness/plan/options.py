"""Scenario options: every option a backend or the driver reads, and the checks that stop a bad value with one
line before anything starts (docs/scenarios.md lists them, docs/security.md the refusals)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


class ScenarioError(ValueError):
    """A scenario (preset name or file) that cannot be used."""


# Every option a backend or the driver reads (docs/scenarios.md documents them): a misspelt one
# would otherwise be ignored without a word, and a run would measure the defaults it meant to change.
KNOWN_OPTIONS = frozenset({
    "rq_worker_class", "rq_with_scheduler", "rq_maintenance_interval", "rq_worker_ttl", "rq_job_timeout",
    "arq_poll_delay", "arq_job_timeout", "arq_conn_retries",
    "taskiq_idle_timeout", "taskiq_xread_count", "taskiq_update_interval",
    "taskiq_reclaim_tick",
    "saq_job_timeout", "saq_sweep", "saq_schedule", "saq_ttl", "saq_heartbeat",
    "celery_pool", "celery_prefetch", "celery_acks_late", "celery_reject_on_worker_lost",
    "celery_retry_on_worker_lost", "celery_visibility_timeout", "celery_unacked_restore_interval",
    "celery_unacked_restore_throttle",
    "dramatiq_broker", "dramatiq_heartbeat_timeout", "dramatiq_maintenance_chance", "dramatiq_worker_timeout",
    "huey_worker_type", "huey_scheduler_interval",
    "restart_workers", "record_history", "deadline_s", "broker_restart_at", "broker_down_s", "broker_wait_s",
    "redis_appendfsync", "alert_webhook", "alert_window_s", "log_json", "log_dir", "late_budget_s",
    "probe_timeout_s",
})
# The options that are a number of seconds (or a count): anything else would reach a worker or the driver
# and stop it with a traceback, or (a deadline of -5) end every cell at once.
POSITIVE_OPTIONS = frozenset({
    "rq_maintenance_interval", "rq_worker_ttl", "rq_job_timeout", "arq_poll_delay", "arq_job_timeout",
    "celery_visibility_timeout", "deadline_s", "broker_wait_s", "alert_window_s", "late_budget_s",
    "probe_timeout_s", "dramatiq_heartbeat_timeout", "dramatiq_worker_timeout", "taskiq_idle_timeout",
    "taskiq_xread_count", "taskiq_update_interval",
    "saq_job_timeout", "saq_sweep", "saq_schedule", "saq_ttl", "saq_heartbeat",
})
NON_NEGATIVE_OPTIONS = frozenset({
    "arq_conn_retries", "celery_prefetch", "celery_unacked_restore_interval", "celery_unacked_restore_throttle",
    "broker_restart_at", "broker_down_s", "dramatiq_maintenance_chance", "taskiq_reclaim_tick",
})


# Options with a fixed set of values: anything else reached a worker that then ran nothing (exit 0, zeros).
CHOICE_OPTIONS: dict[str, tuple[Any, ...]] = {
    "celery_pool": ("prefork", "processes", "threads", "solo"),
    "rq_worker_class": ("Worker", "SimpleWorker"),
    "huey_worker_type": ("thread", "process"),
    "huey_scheduler_interval": (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60),  # Huey's rule: a factor of 60
    "redis_appendfsync": ("always", "everysec", "no"),
    "dramatiq_broker": ("redis", "rabbitmq"),
}
BOOLEAN_OPTIONS = frozenset({"rq_with_scheduler", "celery_acks_late", "celery_reject_on_worker_lost",
                             "celery_retry_on_worker_lost", "restart_workers", "record_history"})


def check_options(options: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ScenarioError(f"{where}: unknown option(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(KNOWN_OPTIONS))})")
    for key, choices in CHOICE_OPTIONS.items():
        if key in options and options[key] not in choices:
            raise ScenarioError(f"{where}: {key} must be one of {', '.join(map(str, choices))}, got {options[key]!r}")
    for key in BOOLEAN_OPTIONS & set(options):
        if not isinstance(options[key], bool):
            raise ScenarioError(f"{where}: {key} must be true or false, got {options[key]!r}")
    if options.get("alert_webhook") is not None:
        from implementations.runtime.alerts import FROM_ENV, WEBHOOK_ENV, WebhookError, webhook_url

        if options["alert_webhook"] != FROM_ENV:
            raise ScenarioError(f"{where}: alert_webhook must be 'env': a webhook URL holds its token, so it comes "
                                f"from ${WEBHOOK_ENV}, never from a command line or a file")
        try:
            webhook_url(FROM_ENV)
        except WebhookError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
    log_json = options.get("log_json")
    if log_json is not None and log_json != "-":
        if not isinstance(log_json, str) or not log_json:
            raise ScenarioError(f"{where}: log_json must be '-' or a file name, got {log_json!r}")
        confined(log_json, "/run-dir")  # where it lands is decided by the driver, inside the run directory
    for key in (POSITIVE_OPTIONS | NON_NEGATIVE_OPTIONS) & set(options):
        value, positive = options[key], key in POSITIVE_OPTIONS
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
            raise ScenarioError(f"{where}: {key} must be a number {'> 0' if positive else '>= 0'}, got {value!r}")


def confined(path: str, root: str) -> str:
    """``path`` (relative) inside ``root``, or ScenarioError: an option may not write elsewhere."""
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, path))
    if os.path.isabs(path) or os.path.commonpath([base, full]) != base or full == base:
        raise ScenarioError(f"log_json {path!r}: must be '-' (stderr) or a file name inside the run directory")
    return full

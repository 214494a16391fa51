"""Huey: ``RedisHuey`` with each task's own ``retries``/``retry_delay``; on_retry/on_failure from Huey's signals."""

"""Celery: real ``autoretry_for`` / ``max_retries`` / ``retry_backoff`` tasks with ``on_failure``/``on_retry``."""

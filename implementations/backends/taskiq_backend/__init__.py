"""Taskiq: RedisStreamBroker, SmartRetryMiddleware with a schedule source, ``max_retries`` label = max_retries + 1."""

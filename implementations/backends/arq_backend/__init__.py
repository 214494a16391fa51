"""ARQ: a wrapper turns retryable errors into ``arq.Retry(defer=…)``; ``max_tries = max_retries + 1``."""


def queue_name(prefix: str) -> str:
    """The queue of one run: every run has its own prefix."""
    return f"{prefix}:arq"

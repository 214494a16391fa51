"""ARQ: a wrapper turns retryable errors into ``arq.Retry(defer=…)``; ``max_tries = max_retries + 1``."""

"""SAQ: a wrapper sets the job's own ``retry_delay`` (or ``retries``) and re-raises; ``retries = max_retries + 1``."""

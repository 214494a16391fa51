"""Dramatiq: actors with ``max_retries = max_retries``; retries raise ``dramatiq.Retry(delay=ms)``."""

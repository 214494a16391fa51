"""RQ: ``Retry(max, interval)`` per job, an ``on_failure`` ``Callback``, workers ``--with-scheduler``."""


def queue_name(prefix: str) -> str:
    """The queue of one run: every run has its own prefix."""
    return f"{prefix}:rq"

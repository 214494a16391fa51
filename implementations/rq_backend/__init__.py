"""RQ: ``Retry(max, interval)`` per job, an ``on_failure`` ``Callback``, workers ``--with-scheduler``."""

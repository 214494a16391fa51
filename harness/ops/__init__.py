"""Operating a run: ``failed-jobs``, ``serve`` (the /failed-jobs API)."""

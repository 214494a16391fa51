"""The Celery-style task API users write against: ``RetryApp``, ``@app.task``, the built-in task bodies."""

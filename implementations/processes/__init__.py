"""Process entry points: a worker, a requeue, the external-worker supervisor."""

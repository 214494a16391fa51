"""Where events go: the history sinks (file, Redis stream), JSON lines, job logs."""

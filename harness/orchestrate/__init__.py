"""``retrybench run``: environments, the private Redis, one driver process per cell."""

"""retrybench harness: CLI, environments, Redis, runner, checkers and reports (main environment)."""

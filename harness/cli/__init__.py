"""The ``retrybench`` command line: ``parser`` (arguments, and the checks that make a run's plan) and ``commands``
(what each subcommand does, and ``main``)."""

from harness.cli.commands import main

__all__ = ["main"]

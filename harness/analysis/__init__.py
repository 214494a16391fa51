"""Pure functions over a history: checkers, metrics, verdicts, comparisons, results files."""

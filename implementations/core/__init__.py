"""Leaf modules every layer uses: retry policy, app config, fault plans, poison, redaction, processes."""

"""What a run is before it runs: scenarios, presets, sweeps, and the seeded plan's expectations."""

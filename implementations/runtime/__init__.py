"""What runs around every attempt: the attempt wrapper, faults, breakers, alerts, start-up probes."""

"""The driver side, run inside each backend's own environment (no rich, matplotlib, jinja2 or fastapi)."""

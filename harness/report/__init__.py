"""Reports from results and history: markdown/HTML, rich tables, plots, JUnit."""

# Two commands: `make bench` runs the lesson scenario on every backend; `make test` runs the test suite.
# Each sets up what it needs (.venv, one virtualenv per backend under .venvs/, a private redis-server).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: bench test benchmark lint setup clean verify-results

setup:
	@$(PYTHON) harness/orchestrate/bootstrap.py

bench:
	@$(PYTHON) harness/orchestrate/bootstrap.py bench $(ARGS)

# The whole suite: harness/orchestrate/bootstrap.py says how it runs (four pytest-xdist processes).
test:
	@$(PYTHON) harness/orchestrate/bootstrap.py test $(PYTEST_ARGS)

# Timed runs of benchmarks/ (BENCH_EVENTS=1000000 for the issue's figure); JSON kept in results/benchmarks/.
# BENCH picks a part, e.g. BENCH=benchmarks/test_recording.py (PYTEST_ARGS only adds options to the whole).
BENCH ?= benchmarks
benchmark: setup
	@BENCH_FULL=1 $(BIN)/python -m pytest -p no:xdist $(BENCH) --benchmark-enable --benchmark-only --benchmark-autosave \
		--benchmark-storage=file://results/benchmarks $(PYTEST_ARGS)

# Re-report each committed run from its history (a temporary copy) and show what changed in report.md: the
# reports are pure functions of the history, so nothing but paths should.
verify-results: setup
	@set -e; status=0; for run in results/*/; do \
		tmp=$$(mktemp -d); cp -r "$$run" "$$tmp/run"; \
		$(BIN)/retrybench report "$$tmp/run" >/dev/null; \
		if diff -u "$$run/report.md" "$$tmp/run/report.md" >"$$tmp/diff"; then echo "$$run: unchanged"; \
		else echo "$$run: report.md changed"; cat "$$tmp/diff"; status=1; fi; rm -rf "$$tmp"; \
	done; exit $$status

lint: setup
	$(BIN)/ruff check harness implementations tests benchmarks
	$(BIN)/mypy harness implementations
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .venvs .pytest_cache

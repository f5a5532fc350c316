# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
# `make check` (lint, format, types, fast tests) is what CI runs before `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when pyproject.toml changes; otherwise nothing to do.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/vclock demo

# The suite in parallel (pytest-xdist), a test file per worker at a time: every test
# binds port 0 and works in its own tmp_path. JOBS=0 runs it in one process.
JOBS ?= 2

test: $(VENV)/.installed
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile

# Static checks, then the fast tests (no processes, sockets or browsers: a few seconds).
check: $(VENV)/.installed
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not integration"

# Benchmarks side by side with NATS and the vectorclock package; writes benchmarks/results/.
bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks

# Ten minutes of SIGKILLs, full disks and hostile clients against one server
# (docs/operations.md, "Chaos run"); writes CHAOS_OUT/report.md and report.json.
CHAOS_SECONDS ?= 600
CHAOS_OUT ?= runs/chaos-$(shell date +%Y%m%d-%H%M%S)
chaos: $(VENV)/.installed
	$(BIN)/python scripts/chaos.py --duration $(CHAOS_SECONDS) --out $(CHAOS_OUT)

clean:
	rm -rf $(VENV) runs test-artifacts .pytest_cache .hypothesis .mypy_cache .ruff_cache

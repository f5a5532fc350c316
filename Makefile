# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
# `make check` (lint, format, types, fast tests) is what CI runs before `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-second check docs bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when pyproject.toml or the version (src/vclock/__init__.py) changes;
# otherwise nothing to do.
$(VENV)/.installed: pyproject.toml src/vclock/__init__.py | $(BIN)/python
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
	@$(MAKE) --no-print-directory test-second

# The suite runs on two Pythons, the classifiers' two (pyproject.toml): all of it on
# $(PYTHON) (3.11 on this machine: the oldest supported), and the fast tests on
# SECOND_PYTHON, the newest,
# in a venv of its own; skipped, saying so, when that Python is not on this machine
# (scripts/find-python.sh looks on the PATH and in pyenv). SECOND_PYTHON= skips it.
SECOND_PYTHON ?= 3.13
SECOND_VENV := .venv-$(SECOND_PYTHON)
SECOND_INTERPRETER = $(shell bash scripts/find-python.sh $(SECOND_PYTHON))

test-second:
ifeq ($(SECOND_PYTHON),)
	@echo "make test: SECOND_PYTHON is empty: skipped the second Python"
else
	@if [ -z "$(SECOND_INTERPRETER)" ]; then \
	  echo "make test: python$(SECOND_PYTHON) not found (PATH, pyenv): skipped the fast tests on Python $(SECOND_PYTHON)"; \
	else \
	  $(MAKE) --no-print-directory $(SECOND_VENV)/.installed && \
	  echo "make test: the fast tests on Python $(SECOND_PYTHON) ($(SECOND_INTERPRETER))" && \
	  $(SECOND_VENV)/bin/python -m pytest -q -n $(JOBS) -m "not integration"; \
	fi
endif

$(SECOND_VENV)/.installed: pyproject.toml src/vclock/__init__.py
	"$(SECOND_INTERPRETER)" -m venv $(SECOND_VENV)
	$(SECOND_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Static checks, then the fast tests (no processes, sockets or browsers: a few seconds).
check: $(VENV)/.installed
	$(BIN)/ruff check src tests scripts benchmarks docs/*.py
	$(BIN)/ruff format --check src tests scripts benchmarks docs/*.py
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not integration"

# The API reference of vclock, vclock.asyncio and vclock.tracing, generated from the
# docstrings with pdoc (the docs extra) into DOCS_OUT, which git ignores; fails on a
# public name without a docstring. Open $(DOCS_OUT)/index.html.
DOCS_OUT ?= build/docs
docs: $(VENV)/.installed
	rm -rf $(DOCS_OUT)
	$(BIN)/python docs/make_api_reference.py $(DOCS_OUT)

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
	rm -rf $(VENV) .venv-* build/docs runs test-artifacts .pytest_cache .hypothesis .mypy_cache .ruff_cache

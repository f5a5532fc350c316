# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when pyproject.toml changes; otherwise nothing to do.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/vclock demo

test: $(VENV)/.installed
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

# Benchmarks side by side with NATS and the vectorclock package; writes benchmarks/results/.
bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs test-artifacts .pytest_cache .hypothesis

# Two commands do everything on a fresh clone with Python 3.11+ and make:
#   make demo   - set up .venv if absent, then run the demo
#   make test   - set up .venv if absent, then lint, type-check and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -n 2

# Long hypothesis runs (opt-in): HYPOTHESIS_PROFILE=long
test-slow: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q -n 2 -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_liquidation.py
	@command -v wrk >/dev/null || apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk
	$(BIN)/python bench/bench_server.py
	$(BIN)/python bench/bench_sdk.py
	$(BIN)/python bench/bench_risk.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Two commands do everything on a fresh clone with Python 3.11+ and make:
#   make demo   - set up .venv if absent, then run the demo
#   make test   - set up .venv if absent, then lint, type-check and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The install compiles these engine modules with mypyc (the list is in perpbot/_native.py), so
# it is redone when one of them changes; commands.py is not compiled, but the compiled code is
# built against its types. PERPBOT_PURE_PYTHON=1 at install time skips compiling.
ENGINE := $(shell $(PYTHON) perpbot/_native.py --sources) sandbox/engine/commands.py

.PHONY: demo test test-slow lint build bench clean

$(STAMP): pyproject.toml setup.py build_tools/pgo_training.py perpbot/_native.py $(ENGINE)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(BIN)/python perpbot/_native.py --status
	@touch $(STAMP)

# Re-run the install (recompiles the engine after an edit; `make test` etc. also do it when needed).
build:
	@rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite on the compiled engine, then the engine tests once more on its sources.
test: lint
	$(BIN)/python -m pytest -q -n 2
	PERPBOT_PURE_PYTHON=1 $(BIN)/python -m pytest -q -n 2 tests/engine

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build
	rm -f perpbot/_native_build.json $(wildcard perpbot/*.so perpbot/risk/*.so sandbox/engine/*.so)

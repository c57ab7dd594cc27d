# Two commands on a fresh machine: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow test-browser bench lint clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Main job on the embedded offline sample: data -> optimize -> params -> paper replay -> summary
demo: $(STAMP)
	$(BIN)/workbench demo

## The whole test suite: the default tier, then the slow tier with a small count (SLOW_TRIALS=3)
test: $(STAMP)
	$(BIN)/python -m pytest -q
	SLOW_TRIALS=$${SLOW_TRIALS:-3} $(BIN)/python -m pytest -q -m slow

## The slow tier in full: long trials (20 crash-restart trials, big grids); SLOW_TRIALS sets the count
test-slow: $(STAMP)
	SLOW_TRIALS=$${SLOW_TRIALS:-20} $(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check workbench tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

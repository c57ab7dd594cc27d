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

## The whole default test suite (slow tier excluded; it runs with `make test-slow`)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## The slow tier: long trials (crash-restart loops, big grids); SLOW_TRIALS sets the count
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check workbench tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

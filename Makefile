# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint install browser wrk

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned resolve would pull the multi-GB CUDA build.
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev,web,music,scale]" torch==2.13.0
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the Playwright browser tests (Playwright's own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install chromium)"; exit 1; fi; }

run: $(STAMP)
	$(BIN)/billionsongs serve

test: $(STAMP) browser wrk
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

# Debian's wrk, the load generator of benchmarks/web.py.
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else echo "install Debian's wrk (sudo apt-get install wrk)"; exit 1; fi; }

# Each benchmark appends its results to benchmarks/RESULTS.md and redraws its plot.
bench: $(STAMP) wrk
	$(BIN)/python benchmarks/generation.py --profile
	$(BIN)/python benchmarks/web.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

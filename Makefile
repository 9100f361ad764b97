# Single entry point. `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CPU torch wheel by default; for CUDA: make setup TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test test-fast lint format bench clean

$(BIN)/promogym: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

setup: $(BIN)/promogym

demo: setup
	$(BIN)/promogym demo --out demo-out

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Each script prints a table and writes JSON to benchmarks/results/ (see benchmarks/README.md).
bench: setup
	$(BIN)/python benchmarks/bench_env.py --threads 1 --ppo-envs 256 --out benchmarks/results/bench_env_ppo256.json
	$(BIN)/python benchmarks/bench_forecaster.py --from-scratch
	$(BIN)/python benchmarks/bench_oj.py --models snaive,lgbm,tft,tft-scratch --rounds 12
	$(BIN)/python benchmarks/bench_policy.py --update-readme

clean:
	rm -rf $(VENV) demo-out build *.egg-info

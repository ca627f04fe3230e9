# The two commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run test test-sqlite lint format clean

$(BIN)/newsletters: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/newsletters
	PORT=$(PORT) $(BIN)/newsletters dev

test: $(BIN)/newsletters lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/newsletters
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/newsletters
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts

# Every target creates the virtualenv and installs the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck check format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Migrate, seed demo data once, and serve on http://127.0.0.1:5000 (SQLite unless DATABASE_URL).
run: install
	$(BIN)/pedidos init-db
	$(BIN)/pedidos seed --if-empty --clientes 1000 --produtos 200
	$(BIN)/pedidos serve

## The whole suite: SQLite and MariaDB (MariaDB tests skip locally if it is down; fail under CI=true).
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

## HTTP simulation on MariaDB at concurrency 1, 16 and 64 (see benchmarks/simulate.sh).
bench: install
	bash benchmarks/simulate.sh

clean:
	rm -rf $(VENV) instance .mypy_cache .ruff_cache .pytest_cache

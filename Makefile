# Outbound: `make run` serves the app with a worker and a mail catcher on
# SQLite; `make test` runs lint, type checks and every test on SQLite and on
# PostgreSQL. Both set up everything they need on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: install run test lint typecheck test-sqlite test-postgres services bench clean screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	bash scripts/run-dev.sh

services:
	bash scripts/ensure-services.sh
	bash scripts/ensure-browser.sh

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy outbound config

test-sqlite: install services
	$(BIN)/python -m pytest -q

test-postgres: install services
	DATABASE_URL=$(PG_URL) $(BIN)/python -m pytest -q

test: lint typecheck test-sqlite test-postgres

bench: install services
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) var build *.egg-info

# Refresh the README's screenshots from the browser tests.
screenshots: install services
	OUTBOUND_SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest -q -m browser tests/web

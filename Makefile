# Two commands for a fresh machine: `make demo` and `make test`. Each does the whole set-up
# (virtual env, install, Delta jars from Maven Central cached in ~/.m2), then runs.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pdp-installed
PYTEST_ARGS ?=

.PHONY: setup demo test bench lint clean

$(STAMP): pyproject.toml pdp/lake/delta_jars.txt
	bash infra/setup/bootstrap.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/pdp demo

test: setup
	$(BIN)/ruff check pdp tests
	bash infra/setup/postgres.sh >/dev/null
	bash infra/setup/chromium.sh >/dev/null
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/pdp bench all

lint: setup
	$(BIN)/ruff check pdp tests

clean:
	-bash infra/setup/postgres-stop.sh
	rm -rf var .pytest_cache

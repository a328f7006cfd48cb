# Two commands for a fresh machine: `make demo` and `make test`. Each does the whole set-up
# (virtual env, install, Delta jars from Maven Central cached in ~/.m2), then runs.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pdp-installed
PYTEST_ARGS ?= -m "not cluster"

.PHONY: setup demo test test-cluster bench lint clean fuzz fuzz-hypothesis

# `make fuzz`: the hypothesis fuzz tests with a long budget, then atheris (coverage-guided) for
# FUZZ_SECONDS per parser; new inputs that add coverage are merged into tests/fuzz/corpus/<format>/,
# crashes are left in var/fuzz/ (turn each into a crash-* corpus file and a named test).
FUZZ_SECONDS ?= 120
FUZZ_EXAMPLES ?= 3000
FUZZ_FORMATS := delimited fixed_width hl7v2_oru fhir_bundle_ndjson fhir_questionnaire_response_ndjson report_index

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
	bash infra/setup/softhsm.sh >/dev/null
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-cluster: setup
	$(BIN)/python -m pytest -m cluster -p no:cacheprovider

bench: setup
	$(BIN)/pdp bench all

fuzz: fuzz-hypothesis $(addprefix fuzz-,$(FUZZ_FORMATS))

fuzz-hypothesis: setup
	PDP_FUZZ_PROFILE=fuzz PDP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz -q -p no:cacheprovider

fuzz-%: setup
	@if $(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/python -m pip install -q atheris; then \
		mkdir -p var/fuzz/$* && \
		$(BIN)/python tests/fuzz/atheris_target.py $* -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=30 \
			-rss_limit_mb=3072 -artifact_prefix=var/fuzz/$*-crash- var/fuzz/$* tests/fuzz/corpus/$* && \
		$(BIN)/python tests/fuzz/atheris_target.py $* -merge=1 tests/fuzz/corpus/$* var/fuzz/$*; \
	else echo "atheris does not install here: no coverage-guided fuzzing of $* (the hypothesis budget ran)"; fi

lint: setup
	$(BIN)/ruff check pdp tests

clean:
	-bash infra/setup/postgres-stop.sh
	rm -rf var .pytest_cache

# Two commands: `make run` and `make test` (the fast tests; `make test-slow` runs the rest,
# `make test-all` both; and `make lint`, which CI runs first). Each builds .venv from the pinned
# requirements the first time (and again when a requirements file changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export FLASK_APP := app

.PHONY: run test test-slow test-all test-postgres lint bench bench-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-installed

# What the benches need besides: dlt, its stores, other web servers (requirements-bench.txt).
$(VENV)/.bench-installed: requirements.txt requirements-dev.txt requirements-bench.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@ $(VENV)/.dev-installed $(VENV)/.run-installed

bench-deps: $(VENV)/.bench-installed

# Every bench the README quotes, one after another (each saves bench/results/<name>.json):
# about two and a half hours on two cores. Run nothing else meanwhile: they measure the machine.
BENCHES := servers.py "ingest.py --db sqlite --events 20000" "ingest.py --db postgres --events 20000" \
	"api.py --db sqlite" "api.py --db postgres" "records.py --db sqlite" "records.py --db postgres" \
	"events.py --db sqlite" "events.py --db postgres" "deliver.py" "connectors.py" \
	"cdc.py --db sqlite" "cdc.py --db postgres" sqlite_floor.py pg_floor.py peers.py
bench: $(VENV)/.bench-installed
	for b in $(BENCHES); do $(PY) bench/$$b || exit 1; done

run: $(VENV)/.run-installed
	exec $(PY) -m hookstream_ui.runner

# One pytest process per core (pytest-xdist): each has its own database, Redis, fixture
# servers and browser (session fixtures, tmp paths and database names are per worker).
# worksteal: a few tests take most of a minute; idle workers take over queued ones.
PYTEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal
# Coverage of hookstream_ui, combined over the workers; the report lists only files with
# lines not run, then the total.
COVERAGE := --cov --cov-report=term:skip-covered
FAST := -m "not slow and not browser"

# The fast tier: everything but the tests that start whole processes or drive chromium.
test: $(VENV)/.dev-installed
	$(PYTEST) $(FAST) $(COVERAGE) $(PYTEST_ARGS)

# The rest: end-to-end tests with real workers, ingest writer, web server, `make run`, chromium.
test-slow: $(VENV)/.dev-installed
	$(PYTEST) -m "slow or browser" $(PYTEST_ARGS)

test-all: $(VENV)/.dev-installed
	$(PYTEST) $(COVERAGE) $(PYTEST_ARGS)

# The suite on an embedded PostgreSQL, browser tests aside (the pages do not depend on the
# database; what does is covered by the API and end-to-end tests), and `make run`'s tests
# (they run it as a new user does, on SQLite, whatever TEST_DATABASE says: the slow tier has
# them, and here they were 40 s of the run again).
test-postgres: $(VENV)/.dev-installed
	TEST_DATABASE=postgres $(PYTEST) -m "$(or $(PG_MARKS),not browser)" -k "not make_run" $(PYTEST_ARGS)

# Style, format, types and the import layers; the same checks pre-commit runs.
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache

# Two commands: `make run` and `make test` (and `make lint`, which CI runs first). Each builds .venv from the pinned
# requirements the first time (and again when a requirements file changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export FLASK_APP := app

.PHONY: run test test-postgres test-browser lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	exec $(PY) -m hookstream_ui.runner

# One pytest process per core (pytest-xdist): each has its own database, Redis and browser.
PYTEST_WORKERS ?= auto

test: $(VENV)/.dev-installed
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-postgres: $(VENV)/.dev-installed
	TEST_DATABASE=postgres $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Style, format, types and the import layers; the same checks pre-commit runs.
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache

# The README's commands: `make demo` and `make test`, and `make example` with
# `make example-load` for the example messaging service. Each creates its
# own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo dashboard example example-load test screenshots bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-web: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[web]'
	touch $@ $(VENV)/.installed-core

# The benchmark's peers (huey, pgqueuer), psycopg and psutil: the bench extra.
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed-core

# The example messaging service: FastAPI with the web extra (uvicorn).
$(VENV)/.installed-example: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[fastapi]'
	touch $@ $(VENV)/.installed-core $(VENV)/.installed-web

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-core $(VENV)/.installed-web $(VENV)/.installed-example

demo: $(VENV)/.installed-core
	$(BIN)/jobq demo

# The web dashboard on the demo's database (jobq.db); prints its login URL.
dashboard: $(VENV)/.installed-web
	$(BIN)/jobq dashboard

# examples/messaging: its API and worker on http://127.0.0.1:8000, jobs in
# messaging.db, until Ctrl-C.
example: $(VENV)/.installed-example
	$(BIN)/python -m examples.messaging

# In another terminal: 1,000 messages through the running example, then a summary.
example-load: $(BIN)/python
	$(BIN)/python -m examples.messaging.load

# The whole suite, ruff and mypy --strict included: .ci/test.sh installs the
# Debian packages it needs (PostgreSQL, Chromium) when missing, sets up .venv,
# starts a throwaway PostgreSQL server and stops it at the end. Arguments for
# pytest: make test PYTEST_ARGS="-x -k cron".
test:
	PYTHON="$(PYTHON)" bash .ci/test.sh $(PYTEST_ARGS)

# Refreshes docs/screenshots/*.png from the Chromium tests (tests/web/test_browser*.py);
# a plain test run writes them to a temporary folder. Needs Chromium.
screenshots: $(VENV)/.installed-test
	$(BIN)/python -m tests.web.screenshots

# python -m bench; set JOBQ_BENCH_POSTGRES_URL for the postgres and pgqueuer columns.
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) jobq.db jobq.db-wal jobq.db-shm messaging.db messaging.db-wal messaging.db-shm

# The two commands of the README: `make demo` and `make test`. Each creates its
# own virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo dashboard test bench clean

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

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-core $(VENV)/.installed-web

demo: $(VENV)/.installed-core
	$(BIN)/jobq demo

# The web dashboard on the demo's database (jobq.db); prints its login URL.
dashboard: $(VENV)/.installed-web
	$(BIN)/jobq dashboard

# The whole suite, ruff and mypy --strict included: .ci/test.sh installs the
# Debian packages it needs (PostgreSQL, Chromium) when missing, sets up .venv,
# starts a throwaway PostgreSQL server and stops it at the end. Arguments for
# pytest: make test PYTEST_ARGS="-x -k cron".
test:
	PYTHON="$(PYTHON)" bash .ci/test.sh $(PYTEST_ARGS)

# python -m bench; set JOBQ_BENCH_POSTGRES_URL for the postgres and pgqueuer columns.
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) jobq.db jobq.db-wal jobq.db-shm

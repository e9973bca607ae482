#!/usr/bin/env bash
# `make test`: the whole suite, on a fresh Debian machine too. In order:
#
#   1. The Debian packages the suite needs (PostgreSQL's server, Chromium for
#      the dashboard's browser tests, strace for the durability tests,
#      python3-venv for a first .venv), each
#      found by a file it installs, are installed when missing. That needs
#      root: otherwise one line names the apt-get command to run, and it stops.
#   2. The virtual environment .venv with the test extra, as `make demo`
#      sets it up (JOBQ_TEST_PYTHON: an interpreter whose environment already
#      has the test extra, used instead).
#   3. ruff, then mypy --strict on the package (it ships py.typed).
#   4. A throwaway PostgreSQL server (.ci/postgres.sh), unless
#      JOBQ_TEST_POSTGRES_URL already names a database to use, or a server
#      is already running on the port; only a server started here is
#      stopped at the end, failure included.
#   5. pytest over everything, where a skipped test fails the run
#      (JOBQ_TEST_NO_SKIPS=1): every part it could miss has been installed.
#
# Arguments go to pytest: make test PYTEST_ARGS="-x -k cron".
# Detection honours JOBQ_TEST_CHROMIUM (the tests' Chromium) and PG_BIN
# (.ci/postgres.sh's server binaries), e.g. JOBQ_TEST_CHROMIUM=/nonexistent.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "make test: $*" >&2; }

python="${JOBQ_TEST_PYTHON:-}"
chromium="${JOBQ_TEST_CHROMIUM:-/usr/bin/chromium}"

have_postgres() {
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/initdb" ]]
    else
        compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
    fi
}

missing_packages() {
    have_postgres || echo postgresql
    [[ -x "$chromium" ]] || echo chromium
    # The durability tests watch a child's syncs with strace.
    [[ -x /usr/bin/strace ]] || echo strace
    # Debian's own Python makes no virtual environment without python3-venv.
    if [[ -z "$python" && ! -x .venv/bin/python ]] && ! "${PYTHON:-python3}" -c "import ensurepip" 2>/dev/null; then
        echo python3-venv
    fi
}

# -- 1. Debian packages --------------------------------------------------------
mapfile -t missing < <(missing_packages)
if ((${#missing[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        say "missing Debian packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
        exit 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]})); then
        say "still missing after apt-get install: ${missing[*]} (PG_BIN=${PG_BIN:-}, JOBQ_TEST_CHROMIUM=$chromium)"
        exit 1
    fi
fi

# -- 2. The virtual environment ------------------------------------------------
if [[ -z "$python" ]]; then
    make --no-print-directory .venv/.installed-test
    python=.venv/bin/python
fi

# -- 3. Lint and types ---------------------------------------------------------
say "ruff check"
"$python" -m ruff check src tests bench examples
say "mypy --strict src/jobq"
"$python" -m mypy --strict src/jobq

# -- 4. PostgreSQL -------------------------------------------------------------
if [[ -z "${JOBQ_TEST_POSTGRES_URL:-}" ]]; then
    if bash .ci/postgres.sh status; then
        say "reusing the PostgreSQL server already running (left running)"
    else
        trap 'bash .ci/postgres.sh stop' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
    fi
    JOBQ_TEST_POSTGRES_URL=$(bash .ci/postgres.sh start)
    export JOBQ_TEST_POSTGRES_URL
fi

# -- 5. The suite --------------------------------------------------------------
say "pytest, PostgreSQL at $JOBQ_TEST_POSTGRES_URL"
JOBQ_TEST_NO_SKIPS=1 "$python" -m pytest -rs "$@"

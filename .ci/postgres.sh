#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite.
#
#   bash .ci/postgres.sh start   # prints the URL of database jobq_test
#   bash .ci/postgres.sh stop    # stops the server and deletes its data
#   bash .ci/postgres.sh status  # exits 0 if the server is running, else 1
#   bash .ci/postgres.sh restart-immediate
#                                # crashes and restarts the server (pg_ctl
#                                # restart -m immediate), for the outage tests
#
# The server has its own data directory under $TMPDIR, listens on loopback
# only (127.0.0.1, port $JOBQ_PG_PORT, default 54329; no Unix socket outside
# its data directory), trusts loopback connections, and trades durability for
# speed (fsync off: a power loss may lose data, a server crash may not).
# synchronous_commit stays on: with it off, a commit is acknowledged before
# its WAL reaches even the OS, and `restart-immediate` loses acknowledged
# enqueues, which the outage tests must not see. Both subcommands are idempotent. Run as root, the server
# runs as the `postgres` OS user, since initdb refuses root.
set -euo pipefail

PORT="${JOBQ_PG_PORT:-54329}"
ROOT="${JOBQ_PG_DIR:-${TMPDIR:-/tmp}/jobq-ci-postgres-$PORT}"
DATA="$ROOT/data"
LOG="$ROOT/server.log"
DB=jobq_test
URL="postgresql://postgres@127.0.0.1:$PORT/$DB"

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        echo "$PG_BIN"
        return
    fi
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    else
        log "no initdb found: install PostgreSQL (Debian: apt-get install postgresql)"
        exit 1
    fi
}

BIN="$(find_bin)"

# Runs a server binary as the user that owns the data directory.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

running() {
    [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    if ! [[ -f "$DATA/PG_VERSION" ]]; then
        rm -rf "$ROOT"
        mkdir -p "$ROOT"
        if [[ "$(id -u)" == 0 ]]; then
            chown postgres: "$ROOT"
        fi
        chmod 700 "$ROOT"
        log "initdb into $DATA"
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=trust \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if ! running; then
        log "starting the server on 127.0.0.1:$PORT"
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start -o \
            "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$ROOT \
             -c fsync=off -c full_page_writes=off -c max_connections=300" \
            >/dev/null || { cat "$LOG" >&2; exit 1; }
    fi
    local psql=("$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
    if [[ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]]; then
        "${psql[@]}" -c "CREATE DATABASE $DB" >/dev/null
    fi
    echo "$URL"
}

stop() {
    if running; then
        log "stopping the server on 127.0.0.1:$PORT"
        as_owner "$BIN/pg_ctl" -D "$DATA" -w -t 60 stop -m fast >/dev/null
    fi
    rm -rf "$ROOT"
}

# An immediate shutdown (like a crash: no checkpoint, every connection cut),
# then a start with the same options; returns once the server accepts
# connections again.
restart_immediate() {
    if ! running; then
        log "no server running in $DATA (start one with: bash $0 start)"
        exit 1
    fi
    log "restarting the server on 127.0.0.1:$PORT (-m immediate)"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 restart -m immediate >/dev/null \
        || { tail -n 30 "$LOG" >&2; exit 1; }
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart-immediate) restart_immediate ;;
    status) running ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|status|restart-immediate|url" >&2; exit 2 ;;
esac

"""The raw-engine limits: plain ``sqlite3`` and plain ``psycopg`` running the
statements jobq's stores issue, with none of jobq around them.

They answer "how much does jobq cost on top of the engine?": each jobq figure
is divided by the raw figure of the same engine and durability. The SQL is a
copy of the statements in src/jobq/store/sql.py (as src/jobq/store/sqlite/
and src/jobq/store/postgres/ spell them): keep it in step with them. Each function runs in a fresh child interpreter.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from typing import Any

import jobq
from jobq.job import RECORD_FIELDS, JobRecord
from jobq.store.postgres.schema import notify_channel
from jobq.store.sqlite.schema import migrate

JOB_TYPE = "bench"
WARMUP = 20  # untimed single inserts before the clock starts
PG_TABLE = "kmsg_jobs"  # jobq's default PostgreSQL table (jobq.store.postgres.schema.DEFAULT_TABLE)
LEASE_MS = 30_000
OWNER = "bench"

_COLUMNS = ", ".join(RECORD_FIELDS)
_DUE_ORDER = "priority DESC, process_at ASC, created_at ASC"

# -- SQLite statements (jobq.store.sqlite) ----------------------------------

SQLITE_INSERT = f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})"
SQLITE_CLAIM = (
    "UPDATE jobs SET status = 'processing', scheduled_at = process_at,"
    " process_at = ?, lease_token = ?, lease_owner = ?, started_at = ?"
    " WHERE id IN (SELECT id FROM jobs INDEXED BY jobq_jobs_ready WHERE status = 'pending'"
    f" AND process_at <= ? ORDER BY {_DUE_ORDER} LIMIT ?)"
    f" RETURNING {_COLUMNS}"
)
SQLITE_COMPLETE = (
    "UPDATE jobs SET process_at = CASE WHEN status = 'processing'"
    " THEN COALESCE(scheduled_at, process_at) ELSE process_at END,"
    " lease_token = NULL, lease_owner = NULL, scheduled_at = NULL,"
    " status = 'completed', completed_at = ?, result = ?"
    " WHERE id = ? AND status = 'processing' AND lease_token = ?"
)

# -- PostgreSQL statements (jobq.store.postgres), on the caller's clock ------

PG_INSERT = f"INSERT INTO {PG_TABLE} ({_COLUMNS}) VALUES ({', '.join(f'%({f})s' for f in RECORD_FIELDS)})"
PG_CLAIM = (
    f"WITH picked AS (SELECT id FROM {PG_TABLE} WHERE status = 'pending' AND process_at <= %(now)s"
    f" ORDER BY {_DUE_ORDER} LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    f" UPDATE {PG_TABLE} AS j SET status = 'processing', scheduled_at = j.process_at,"
    " process_at = %(now)s + %(lease)s::bigint, lease_token = %(token)s,"
    " lease_owner = %(owner)s, started_at = %(now)s"
    f" FROM picked WHERE j.id = picked.id RETURNING {', '.join(f'j.{f}' for f in RECORD_FIELDS)}"
)
PG_COMPLETE = (
    f"UPDATE {PG_TABLE} SET process_at = CASE WHEN status = 'processing'"
    " THEN COALESCE(scheduled_at, process_at) ELSE process_at END,"
    " lease_token = NULL, lease_owner = NULL, scheduled_at = NULL,"
    " status = 'completed', completed_at = %(now)s, result = %(result)s"
    " WHERE id = %(id)s AND status = 'processing' AND lease_token = %(token)s"
)
# jobq completes a batch of fenced jobs in one statement joined to the batch.
PG_COMPLETE_MANY = (
    f"UPDATE {PG_TABLE} AS j SET process_at = COALESCE(j.scheduled_at, j.process_at),"
    " lease_token = NULL, lease_owner = NULL, scheduled_at = NULL,"
    " status = 'completed', completed_at = %(now)s, result = b.result"
    " FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(results)s::text[]) AS b(id, token, result)"
    " WHERE j.id = b.id AND j.status = 'processing' AND j.lease_token = b.token"
    " RETURNING j.id"
)


def now_ms() -> int:
    return int(time.time() * 1000)


def job_records(n: int, status: str = "pending") -> list[JobRecord]:
    """Records exactly as jobq stores a fresh job (every column, defaults
    included), built before any clock starts."""
    records = []
    for i in range(n):
        now = now_ms()
        records.append(
            JobRecord(
                id=f"{now:012x}{secrets.token_hex(10)}", type=JOB_TYPE, data=f'{{"i":{i}}}', status=status,
                priority=0, attempts=0, max_attempts=3, delay=0, created_at=now, process_at=now,
                completed_at=None, failed_at=None, error=None, metadata="{}",
            )  # fmt: skip
        )
    return records


def _rows(n: int) -> list[tuple[Any, ...]]:
    return [tuple(getattr(r, f) for f in RECORD_FIELDS) for r in job_records(n)]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- plain sqlite3 -----------------------------------------------------------


def sqlite_connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    migrate(conn, "jobs")  # the very table and indexes jobq uses
    return conn


def sqlite_insert(path: str, synchronous: str, n: int, batch: int = 1) -> dict[str, Any]:
    """``batch`` rows per ``BEGIN IMMEDIATE ... COMMIT`` (executemany)."""
    conn = sqlite_connect(path, synchronous)
    rows = _rows(n + WARMUP)
    for row in rows[:WARMUP]:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(SQLITE_INSERT, row)
        conn.execute("COMMIT")
    chunks = _chunks(rows[WARMUP:], batch)
    started = time.perf_counter()
    for chunk in chunks:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQLITE_INSERT, chunk)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return {"n": n, "batch": batch, "synchronous": synchronous, "seconds": seconds, "rate": n / seconds}


def sqlite_claim_complete(path: str, synchronous: str, n: int, batch: int = 1) -> dict[str, Any]:
    """Claims ``batch`` jobs in one transaction, then completes them (fenced,
    one UPDATE each) in another, as jobq's processor does."""
    conn = sqlite_connect(path, synchronous)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(SQLITE_INSERT, _rows(n))
    conn.execute("COMMIT")
    done = 0
    started = time.perf_counter()
    while done < n:
        now = now_ms()
        token = secrets.token_hex(8)
        conn.execute("BEGIN IMMEDIATE")
        claimed = conn.execute(SQLITE_CLAIM, (now + LEASE_MS, token, OWNER, now, now, batch)).fetchall()
        conn.execute("COMMIT")
        if not claimed:
            raise RuntimeError(f"nothing left to claim after {done} of {n} jobs")
        finished = now_ms()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQLITE_COMPLETE, [(finished, None, row[0], token) for row in claimed])
        conn.execute("COMMIT")
        done += len(claimed)
    seconds = time.perf_counter() - started
    left = conn.execute("SELECT count(*) FROM jobs WHERE status <> 'completed'").fetchone()[0]
    conn.close()
    if left:
        raise RuntimeError(f"{left} rows were not completed")
    return {"n": n, "batch": batch, "synchronous": synchronous, "seconds": seconds, "rate": n / seconds}


# -- plain psycopg -------------------------------------------------------------


async def _create_pg_table(url: str) -> None:
    async with jobq.connect(url):  # jobq's migration creates the table and indexes
        pass


def pg_connect(url: str) -> Any:
    import psycopg

    from .pg import admin_dsn

    asyncio.run(_create_pg_table(url))
    return psycopg.connect(admin_dsn(url))  # not autocommit: every statement inside a transaction


def _params(record: JobRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in RECORD_FIELDS}


def _pg_insert_many(records: list[JobRecord]) -> tuple[str, dict[str, Any]]:
    """jobq's many-row insert for ``records`` (``INSERT ... SELECT FROM
    unnest``, a column the same in every row sent once), with its parameters.
    The statement comes from the store's own builder (jobq.store.postgres.sql), so it cannot drift."""
    from jobq.store.postgres import sql as postgres_sql

    constant, params = postgres_sql.insert_many_params(records, db_clock=False)
    params.update(jobq_channel=notify_channel(PG_TABLE), now=None)
    query = postgres_sql.insert_many_query(constant).replace("{t}", PG_TABLE).replace("{now}", postgres_sql.NOW)
    return query, params


def pg_insert(url: str, n: int, batch: int = 1) -> dict[str, Any]:
    """``batch`` rows per transaction: one INSERT for a single row, jobq's
    ``unnest`` statement for a batch; parameters built before the clock."""
    conn = pg_connect(url)
    records = job_records(n + WARMUP)
    with conn.cursor() as cur:
        for record in records[:WARMUP]:
            cur.execute(PG_INSERT, _params(record))
            conn.commit()
        statements = [
            (PG_INSERT, _params(chunk[0])) if len(chunk) == 1 else _pg_insert_many(chunk)
            for chunk in _chunks(records[WARMUP:], batch)
        ]
        started = time.perf_counter()
        for query, params in statements:
            cur.execute(query, params)
            conn.commit()
        seconds = time.perf_counter() - started
    conn.close()
    return {"n": n, "batch": batch, "seconds": seconds, "rate": n / seconds}


def pg_claim_complete(url: str, n: int, batch: int = 1) -> dict[str, Any]:
    """Claims ``batch`` jobs in one transaction, then completes them in
    another: one fenced UPDATE for a single job, the ``unnest`` statement for
    a batch, as jobq's store does."""
    conn = pg_connect(url)
    with conn.cursor() as cur:
        cur.executemany(PG_INSERT, [_params(r) for r in job_records(n)])
        conn.commit()
        cur.execute(f"ANALYZE {PG_TABLE}")
        conn.commit()
        done = 0
        started = time.perf_counter()
        while done < n:
            token = secrets.token_hex(8)
            cur.execute(
                PG_CLAIM,
                {"now": now_ms(), "limit": batch, "lease": LEASE_MS, "token": token, "owner": OWNER},
            )
            ids = [row[0] for row in cur.fetchall()]
            conn.commit()
            if not ids:
                raise RuntimeError(f"nothing left to claim after {done} of {n} jobs")
            if len(ids) == 1:
                cur.execute(PG_COMPLETE, {"now": now_ms(), "result": None, "id": ids[0], "token": token})
            else:
                cur.execute(
                    PG_COMPLETE_MANY,
                    {"now": now_ms(), "ids": ids, "tokens": [token] * len(ids), "results": [None] * len(ids)},
                )
            conn.commit()
            done += len(ids)
        seconds = time.perf_counter() - started
        cur.execute(f"SELECT count(*) FROM {PG_TABLE} WHERE status <> 'completed'")
        left = cur.fetchone()[0]
    conn.close()
    if left:
        raise RuntimeError(f"{left} rows were not completed")
    return {"n": n, "batch": batch, "seconds": seconds, "rate": n / seconds}

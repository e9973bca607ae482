"""Claim cost with 1,000,000 finished jobs, or 1,000,000 jobs not yet due,
in the table, against an empty table.

:func:`fill_finished` opens the queue (jobq creates its table and indexes),
then inserts the finished rows directly in one statement (a recursive CTE on
SQLite, ``generate_series`` on PostgreSQL): status ``completed``, finished an
hour ago, every other column as jobq stores it. :func:`fill_delayed` inserts
a scheduled backlog the same way: waiting jobs of priority
:data:`BACKLOG_PRIORITY` (above the ready jobs' 0), due a day from now. On
PostgreSQL the table is then vacuumed and analysed, as autovacuum would have
done to a table that grew to that size over time, so the measurement does
not race it.

:func:`claim_cycles` enqueues a few ready jobs (untimed) and times
``dequeue`` + ``complete`` through jobq's own verbs, one job at a time.
The runner calls it on the big table and on an empty one, side by side.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import jobq

from .workloads import JOB_TYPE

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BACKLOG_PRIORITY = 10  # scheduled sends outrank the ready jobs the claims take (priority 0)

_SQLITE_FILL = (
    "INSERT INTO jobs (id, type, data, status, priority, attempts, max_attempts, delay, created_at,"
    " process_at, completed_at, metadata, queue, started_at)"
    " WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?)"
    " SELECT printf('done%016d', x), ?, '{\"i\":' || x || '}', 'completed', 0, 1, 3, 0, ? + x, ? + x,"
    " ? + x + 2, '{}', 'default', ? + x + 1 FROM seq"
)
_PG_FILL = (
    "INSERT INTO {t} (id, type, data, status, priority, attempts, max_attempts, delay, created_at,"
    " process_at, completed_at, metadata, queue, started_at)"
    " SELECT 'done' || lpad(x::text, 16, '0'), %(type)s, '{{\"i\":' || x || '}}', 'completed', 0, 1, 3, 0,"
    " %(base)s + x, %(base)s + x, %(base)s + x + 2, '{{}}', 'default', %(base)s + x + 1"
    " FROM generate_series(1, %(rows)s) AS x"
)


_SQLITE_DELAYED = (
    "INSERT INTO jobs (id, type, data, status, priority, attempts, max_attempts, delay, created_at,"
    " process_at, metadata, queue)"
    " WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?)"
    " SELECT printf('later%016d', x), ?, '{\"i\":' || x || '}', 'pending', ?, 0, 3, 0, ?, ? + x,"
    " '{}', 'default' FROM seq"
)
_PG_DELAYED = (
    "INSERT INTO {t} (id, type, data, status, priority, attempts, max_attempts, delay, created_at,"
    " process_at, metadata, queue)"
    " SELECT 'later' || lpad(x::text, 16, '0'), %(type)s, '{{\"i\":' || x || '}}', 'pending', %(priority)s,"
    " 0, 3, 0, %(base)s, %(due)s + x, '{{}}', 'default'"
    " FROM generate_series(1, %(rows)s) AS x"
)


async def _create(url: str) -> None:
    async with jobq.connect(url):
        pass


def fill_finished(url: str, rows: int) -> dict[str, Any]:
    base = int(time.time() * 1000) - HOUR_MS - rows
    return _fill(url, rows, (_SQLITE_FILL, (rows, JOB_TYPE, base, base, base, base)), (_PG_FILL, {"base": base}))


def fill_delayed(url: str, rows: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return _fill(
        url, rows, (_SQLITE_DELAYED, (rows, JOB_TYPE, BACKLOG_PRIORITY, now, now + DAY_MS)),
        (_PG_DELAYED, {"priority": BACKLOG_PRIORITY, "base": now, "due": now + DAY_MS}),
    )  # fmt: skip


def _fill(
    url: str, rows: int, sqlite_fill: tuple[str, tuple[Any, ...]], pg_fill: tuple[str, dict[str, Any]]
) -> dict[str, Any]:
    asyncio.run(_create(url))
    started = time.perf_counter()
    if url.startswith("sqlite:"):
        path = url.split("://", 1)[1].split("?", 1)[0][1:]
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(*sqlite_fill)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            count = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        finally:
            conn.close()
    else:
        import psycopg

        from .pg import admin_dsn
        from .raw import PG_TABLE

        with psycopg.connect(admin_dsn(url), autocommit=True) as conn:
            conn.execute(pg_fill[0].format(t=PG_TABLE), {"type": JOB_TYPE, "rows": rows, **pg_fill[1]})
            conn.execute(f"VACUUM ANALYZE {PG_TABLE}")
            count = conn.execute(f"SELECT count(*) FROM {PG_TABLE}").fetchone()[0]  # type: ignore[index]
    seconds = time.perf_counter() - started
    if count < rows:
        raise RuntimeError(f"expected {rows} rows, the table holds {count}")
    return {"rows": count, "seconds": seconds}


async def claim_cycles(url: str, n: int) -> dict[str, Any]:
    async with jobq.connect(url) as queue:
        await queue.enqueue_many([jobq.NewJob(JOB_TYPE, {"i": i}) for i in range(n)])
        started = time.perf_counter()
        for _ in range(n):
            job = await queue.dequeue()
            if job is None:
                raise RuntimeError("dequeue found no ready job")
            await queue.complete(job)
        seconds = time.perf_counter() - started
    return {"n": n, "seconds": seconds, "rate": n / seconds}

"""Enqueueing inside the application's own PostgreSQL transaction, and the
wake-up and time stamp every insert carries.

An insert queues ``pg_notify`` on the table's channel in its transaction
(PostgreSQL sends it at commit, so workers hear only of jobs that exist) and,
on the database clock, reads the transaction's "now", which replaces the
caller's times in the records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg

from ...errors import InvalidJob, StoreUnavailable
from ...job import RECORD_FIELDS, JobRecord
from ..sql import insert_query
from .sql import DIALECT, NOW

#: The wake-up, and the transaction's "now" in epoch ms.
ANNOUNCE = "SELECT pg_notify(%(channel)s, ''), " + NOW.replace("%(now)s", "NULL")


def stamp(records: Sequence[JobRecord], db_now: int, *, db_clock: bool) -> None:
    """On the database clock, the transaction's "now" replaces the caller's
    (``process_at`` keeps its distance from ``created_at``)."""
    if db_clock:
        for record in records:
            record.process_at = db_now + (record.process_at - record.created_at)
            record.created_at = db_now


async def announce(
    conn: psycopg.AsyncConnection[Any], records: Sequence[JobRecord], *, channel: str, db_clock: bool
) -> None:
    """Queues the wake-up notification (sent at commit) and stamps ``records``."""
    cur = await conn.execute(ANNOUNCE, {"channel": channel})
    row = await cur.fetchone()
    assert row is not None
    stamp(records, int(row[1]), db_clock=db_clock)


async def insert_on(
    conn: Any, records: Sequence[JobRecord], *, table: str, channel: str, db_clock: bool
) -> None:
    """Inserts the jobs on the application's own psycopg connection
    (``psycopg.AsyncConnection`` or ``psycopg.Connection``), inside the
    transaction it has open, without committing: the jobs exist, and
    ``pg_notify`` wakes workers, only if that transaction commits. On a
    connection in autocommit mode with no transaction open, the jobs are
    inserted in a transaction of their own. ``table`` is named with its
    schema, so the connection's ``search_path`` does not matter."""
    insert = insert_query(DIALECT).replace("{t}", table)
    rows = [{f: getattr(r, f) for f in RECORD_FIELDS} for r in records]
    idle = psycopg.pq.TransactionStatus.IDLE
    try:
        if isinstance(conn, psycopg.AsyncConnection):
            own = conn.autocommit and conn.info.transaction_status == idle
            async with conn.transaction() if own else contextlib.nullcontext():
                await announce(conn, records, channel=channel, db_clock=db_clock)
                async with conn.cursor() as acur:
                    await acur.executemany(insert, rows)
        elif isinstance(conn, psycopg.Connection):
            own = conn.autocommit and conn.info.transaction_status == idle
            with conn.transaction() if own else contextlib.nullcontext():
                row = conn.execute(ANNOUNCE, {"channel": channel}).fetchone()
                assert row is not None
                stamp(records, int(row[1]), db_clock=db_clock)
                with conn.cursor() as scur:
                    scur.executemany(insert, rows)
        else:
            raise TypeError(
                f"connection= takes a psycopg Connection or AsyncConnection, not {type(conn).__name__}"
            )
    except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
        raise InvalidJob(f"PostgreSQL cannot store this job: {exc}") from None
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"PostgreSQL (the application's connection): {exc}".strip()) from None

"""The SQLite backend: one database file shared by many worker processes.

The verbs of :class:`~jobq.store.base.Store`, each one short transaction of
SQL, most of it the text both SQL stores share (:mod:`jobq.store.sql`,
spelled here with named ``:value`` parameters, lists as JSON). The plumbing
lives beside: the connections, the database thread, busy waits and
durability in :mod:`.connection`; the schema in :mod:`.schema`; wake-ups
across processes (a touched file, ``PRAGMA data_version``) in :mod:`.wake`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Generator, Sequence
from typing import Any, TypeVar

from ...errors import JobqError, StoreUnavailable
from ...job import JobRecord, record_values
from ...transitions import Transition
from .. import sql as q
from ..base import (
    ClaimRequest,
    Settled,
    dequeue_order,
    missing,
    not_retryable,
    settle_then_claim,
    unique_key_taken,
)
from ..limited import Step, limited_claim
from ..sql import COLUMNS, SETTLE_FIELDS, Dialect, check_table_name, settle_params
from .connection import BUSY_TIMEOUT, Database, Durability
from .schema import migrate, starts_table
from .wake import ChangeWatch, WakeFile

R = TypeVar("R")

#: Cron schedules' last slots (epoch ms), per job table; see ``claim_cron_slot``.
CRON_TABLE = q.cron_table("INTEGER")


def _json_path(field: str) -> str:
    """A JSON path naming one top-level field, whatever characters it has."""
    return '$."' + field.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dialect(table: str) -> Dialect:
    """The shared statements (:mod:`jobq.store.sql`) as SQLite spells them."""
    return Dialect(
        value=lambda name: f":{name}",
        now=":now",
        table=table,
        among=lambda column, name: f"{column} IN (SELECT value FROM json_each(:{name}))",
        json_field=lambda name: f"CASE WHEN json_valid(metadata) THEN json_extract(metadata, :{name}) END",
        array=lambda values: json.dumps(list(values)),
        json_key=_json_path,
    )


def _run_steps(conn: sqlite3.Connection, steps: Generator[Step, list[Any], R]) -> R:
    """Runs the statements a generator yields (see :mod:`jobq.store.limited`)."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(conn.execute(*statement).fetchall())
    except StopIteration as done:
        result: R = done.value
        return result


class SQLiteStore:
    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "jobs",
        durability: Durability = "full",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.table = check_table_name(table)
        self.db = Database(path, durability=durability, busy_timeout=busy_timeout)
        self.path = self.db.path
        self.durability = durability
        self.busy_timeout = busy_timeout
        self.schema_found: int = self.db.write_blocking(
            lambda c: migrate(c, self.table), in_transaction=False
        )
        self._wake_file = WakeFile(self.path)
        self._changes = ChangeWatch(self.db.connect(), self._wake_file, closed=lambda: self.db.closed)
        self._d = d = dialect(self.table)
        self._sql: dict[Any, str] = {}  # statements by variant, each built once
        # Rows of every field in order: positional values, for executemany.
        self._insert_sql = q.insert_query(dataclasses.replace(d, value=lambda _: "?"))
        self._settle_sql = self._settle_statements()
        self._get_sql = q.get_query(d)

    def _settle_statements(self) -> tuple[str, str]:
        """The settle statement (see :mod:`jobq.store.sql`), without and with
        ``RETURNING``. Parameters are numbered: the transition's fields in
        ``SETTLE_FIELDS`` order, then now."""
        number = {name: f"?{i}" for i, (name, _) in enumerate(SETTLE_FIELDS, start=1)}
        d = dataclasses.replace(self._d, value=number.__getitem__, now=f"?{len(SETTLE_FIELDS) + 1}")
        sql = f"UPDATE {self.table} SET {q.settle_assignments(d)} WHERE id = {number['id']} AND {q.settle_fence(d)}"
        return sql, f"{sql} RETURNING {COLUMNS}"

    def _q(self, key: Any, build: Callable[[], str]) -> str:
        """The statement of a variant, built once."""
        sql = self._sql.get(key)
        if sql is None:
            sql = self._sql[key] = build()
        return sql

    @staticmethod
    def _records(rows: list[Any]) -> list[JobRecord]:
        return [JobRecord(*row) for row in rows]

    def _get(self, conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
        row = conn.execute(self._get_sql, {"id": job_id}).fetchone()
        return None if row is None else JobRecord(*row)

    def _missing(self, conn: sqlite3.Connection, job_id: str) -> JobqError:
        return missing(job_id, self._get(conn, job_id))

    # -- the worker's verbs -----------------------------------------------

    async def insert(self, records: Sequence[JobRecord]) -> None:
        sql = self._insert_sql
        rows = list(map(record_values, records))

        def do(conn: sqlite3.Connection) -> None:
            if len(rows) == 1:
                conn.execute(sql, rows[0])
            else:
                conn.executemany(sql, rows)

        await self.db.write(do)
        self._wake_file.touch()

    def _ready_index(self, queues: Sequence[str] | None) -> str:
        """The partial index over waiting rows a claim must walk. Named, not
        left to the planner: without statistics it may pick the status index
        and sort every waiting row, making each claim cost grow with the backlog.
        The walk stops after ``LIMIT`` due rows."""
        if queues is not None and len(queues) == 1:
            return f" INDEXED BY jobq_{self.table}_queue_ready"
        return f" INDEXED BY jobq_{self.table}_ready"

    async def claim(self, request: ClaimRequest) -> list[JobRecord]:
        if request.limits:
            return await self._claim_limited(request)
        sql, values = self._claim_statement(request)
        rows = await self.db.write_unsynced(lambda c: c.execute(sql, values).fetchall())
        return self._claimed(rows)

    def _claim_statement(self, request: ClaimRequest) -> tuple[str, dict[str, Any]]:
        r, d = request, self._d
        where, key, values = q.filters(d, r.queues, r.exclude_types)
        sql = self._q(
            ("claim", key),
            lambda: (
                f"UPDATE {self.table} SET {q.lease_assignments(d)} WHERE id IN"
                f" ({q.due(d, 'id', where, limit=':limit', index=self._ready_index(r.queues))}) RETURNING {COLUMNS}"
            ),
        )
        values.update(q.lease_params(r), now=r.now_ms)
        return sql, values

    def _claimed(self, rows: list[Any]) -> list[JobRecord]:
        records = self._records(rows)
        # RETURNING gives no order; hand the batch out in dequeue order.
        records.sort(key=dequeue_order)
        return records

    async def _claim_limited(self, request: ClaimRequest) -> list[JobRecord]:
        where, _, values = q.filters(self._d, request.queues, request.exclude_types)
        values["now"] = request.now_ms
        starts = starts_table(self.table)

        def do(conn: sqlite3.Connection) -> list[JobRecord]:
            steps = limited_claim(
                self._d, request, where=where, values=values, starts=starts, starts_now=request.now_ms
            )
            return _run_steps(conn, steps)

        return await self.db.write(do)

    async def settle_and_claim(
        self, transitions: Sequence[Transition], request: ClaimRequest
    ) -> tuple[list[Settled], list[JobRecord]]:
        if request.limits:  # the limited claim is a transaction of its own
            return await settle_then_claim(self, transitions, request)
        settle = self._settler(transitions, request.now_ms, returning=False)
        sql, values = self._claim_statement(request)

        def do(conn: sqlite3.Connection) -> tuple[list[Settled], list[Any]]:
            return settle(conn), conn.execute(sql, values).fetchall()

        # What is settled must be synced; a claim alone need not be.
        settled, rows = await (self.db.write if transitions else self.db.write_unsynced)(do)
        self._announce(transitions, settled)
        return settled, self._claimed(rows)

    async def settle(
        self, transitions: Sequence[Transition], *, now_ms: int, returning: bool = False
    ) -> list[Settled]:
        if not transitions:
            return []
        settled: list[Settled] = await self.db.write(self._settler(transitions, now_ms, returning=returning))
        self._announce(transitions, settled)
        return settled

    def _announce(self, transitions: Sequence[Transition], settled: Sequence[Settled]) -> None:
        """Touches the wake file when a job written back to waiting may run."""
        if any(
            t.wakes_workers and not isinstance(s, JobqError)
            for t, s in zip(transitions, settled, strict=True)
        ):
            self._wake_file.touch()

    def _settler(
        self, transitions: Sequence[Transition], now_ms: int, *, returning: bool
    ) -> Callable[[sqlite3.Connection], list[Settled]]:
        """The statements writing ``transitions`` inside a write transaction.
        Without ``returning`` they go in one ``executemany``; only when it
        changes fewer rows than it was given are they rolled back and done one
        by one, to learn which fences failed."""
        sql, returning_sql = self._settle_sql
        rows = [(*settle_params(t), now_ms) for t in transitions]

        def one_by_one(conn: sqlite3.Connection) -> list[Settled]:
            settled: list[Settled] = []
            for transition, row in zip(transitions, rows, strict=True):
                if returning:
                    found = conn.execute(returning_sql, row).fetchone()
                    settled.append(JobRecord(*found) if found else self._missing(conn, transition.job_id))
                else:
                    changed = conn.execute(sql, row).rowcount
                    settled.append(None if changed else self._missing(conn, transition.job_id))
            return settled

        def do(conn: sqlite3.Connection) -> list[Settled]:
            if returning or len(rows) == 1:
                return one_by_one(conn)
            conn.execute("SAVEPOINT jobq_settle")
            changed = conn.executemany(sql, rows).rowcount
            if changed != len(rows):
                conn.execute("ROLLBACK TO jobq_settle")
                conn.execute("RELEASE jobq_settle")
                return one_by_one(conn)
            conn.execute("RELEASE jobq_settle")
            return [None] * len(rows)

        return do

    async def extend_leases(self, leases: Sequence[tuple[str, str]], *, until_ms: int) -> set[str]:
        sql = self._q(
            "extend",
            lambda: f"UPDATE {self.table} SET process_at = :until WHERE id = :id AND {q.held(self._d)}",
        )

        def do(conn: sqlite3.Connection) -> set[str]:
            return {
                job_id
                for job_id, token in leases
                if conn.execute(sql, {"until": until_ms, "id": job_id, "token": token}).rowcount == 0
            }

        return await self.db.write(do) if leases else set()

    async def expired(self, *, now_ms: int, limit: int) -> list[JobRecord]:
        sql = self._q("expired", lambda: q.expired_query(self._d))
        return self._records(
            await self.db.read(lambda c: c.execute(sql, {"now": now_ms, "limit": limit}).fetchall())
        )

    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        where, key, values = q.filters(self._d, queues)
        sql = self._q(
            ("peek", key), lambda: q.due(self._d, COLUMNS, where, limit="1", index=self._ready_index(queues))
        )
        rows = await self.db.read(lambda c: c.execute(sql, {**values, "now": now_ms}).fetchall())
        return JobRecord(*rows[0]) if rows else None

    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        where, key, values = q.filters(self._d, queues)
        sql = self._q(("count_ready", key), lambda: q.count_ready_query(self._d, where))
        return int(await self.db.read(lambda c: c.execute(sql, {**values, "now": now_ms}).fetchone()[0]))

    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        where, key, values = q.filters(self._d, queues)
        sql = self._q(("next_due", key), lambda: q.next_due_query(self._d, where))
        return await self.db.read(lambda c: c.execute(sql, {**values, "now": None}).fetchone()[0])

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.db.read(lambda c: self._get(c, job_id))

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        sql = self._q("cancel_requested", lambda: q.cancel_requested_query(self._d))
        rows = await self.db.read(lambda c: c.execute(sql, {"ids": json.dumps(list(job_ids))}).fetchall())
        return {row[0] for row in rows}

    async def set_progress(
        self, job_id: str, *, token: str | None, progress: float, message: str | None
    ) -> None:
        fenced = token is not None
        sql = self._q(("progress", fenced), lambda: q.progress_query(self._d, fenced=fenced))
        values = {"progress": progress, "message": message, "id": job_id, "token": token}

        def do(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, values).rowcount == 0:
                raise self._missing(conn, job_id)

        await self.db.write(do)

    async def insert_unique(self, records: Sequence[JobRecord]) -> list[JobRecord | None]:
        plain = self._insert_sql
        # A unique key held by an unfinished job trips the partial unique
        # index; DO NOTHING then leaves the holder to be read back.
        keyed = plain + " ON CONFLICT DO NOTHING"
        holder = self._q("unique_holder", lambda: q.unique_holder_query(self._d))
        rows = list(map(record_values, records))

        def do(conn: sqlite3.Connection) -> list[JobRecord | None]:
            answer: list[JobRecord | None] = []
            for record, row in zip(records, rows, strict=True):
                if record.unique_key is None:
                    conn.execute(plain, row)
                    answer.append(None)
                    continue
                if conn.execute(keyed, row).rowcount == 1:
                    answer.append(None)
                    continue
                found = conn.execute(holder, {"key": record.unique_key}).fetchone()
                if found is None:
                    raise StoreUnavailable(f"job id {record.id!r} already exists")
                answer.append(JobRecord(*found))
            return answer

        answer: list[JobRecord | None] = await self.db.write(do)
        if any(held is None for held in answer):
            self._wake_file.touch()
        return answer

    async def claim_cron_slot(self, name: str, slot_ms: int, job: JobRecord) -> bool:
        """One ``BEGIN IMMEDIATE`` transaction: read the schedule's last slot,
        move it forward and insert the job, or change nothing. The
        ``jobq_cron`` table is created here on first use (additively, beside
        the versioned job table)."""
        advance = self._q("cron_advance", lambda: q.cron_advance_query(self._d))
        schedule = {"tbl": self.table, "name": name, "slot": slot_ms}

        def do(conn: sqlite3.Connection) -> bool:
            conn.execute(CRON_TABLE)
            found = conn.execute(
                "SELECT last_slot FROM jobq_cron WHERE tbl = :tbl AND name = :name", schedule
            ).fetchone()
            if found is not None and found[0] >= slot_ms:
                return False
            conn.execute(advance, schedule)
            if found is None:
                return False
            conn.execute(self._insert_sql, record_values(job))
            return True

        inserted: bool = await self.db.write(do)
        if inserted:
            self._wake_file.touch()
        return inserted

    async def wait_for_change(self, timeout: float) -> bool:
        """Returns when another connection committed: ``True`` when a jobq
        writer announced it by touching the wake file, ``False`` when a poll
        saw it or ``timeout`` passed (see :class:`.wake.ChangeWatch`)."""
        return await self._changes.wait(timeout)

    async def close(self) -> None:
        if self.db.closed:
            return
        await self.db.close()
        self._changes.close()

    def close_sync(self) -> None:
        """Closes from code that has no event loop."""
        if self.db.closed:
            return
        self.db.close_sync()
        self._changes.close()

    # -- the operators' verbs -----------------------------------------------

    async def cancel(self, job_id: str, *, now_ms: int) -> tuple[bool, JobRecord]:
        sql = self._q("cancel", lambda: q.cancel_query(self._d))

        def do(conn: sqlite3.Connection) -> tuple[bool, JobRecord]:
            row = conn.execute(sql, {"id": job_id, "now": now_ms}).fetchone()
            if row is not None:
                return True, JobRecord(*row)
            record = self._get(conn, job_id)
            if record is None:
                raise missing(job_id, None)
            return False, record

        return await self.db.write(do)

    async def retry(self, job_id: str, *, now_ms: int) -> JobRecord:
        sql = self._q("retry", lambda: q.retry_query(self._d))

        def do(conn: sqlite3.Connection) -> JobRecord:
            try:
                row = conn.execute(sql, {"id": job_id, "now": now_ms}).fetchone()
            except sqlite3.IntegrityError:
                raise unique_key_taken(job_id) from None
            if row is None:
                raise not_retryable(job_id, self._get(conn, job_id))
            return JobRecord(*row)

        record: JobRecord = await self.db.write(do)
        self._wake_file.touch()
        return record

    async def remove(self, job_id: str) -> bool:
        sql = self._q("remove", lambda: q.remove_query(self._d))
        return await self.db.write(lambda c: c.execute(sql, {"id": job_id}).rowcount > 0)

    async def clear(self) -> None:
        await self.db.write(lambda c: c.execute(f"DELETE FROM {self.table}"))

    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        if not statuses:
            return 0
        sql = self._q(
            ("delete_terminal", before_ms is None),
            lambda: q.delete_terminal_query(self._d, None if before_ms is None else ":before"),
        )
        values = {"statuses": json.dumps(list(statuses)), "before": before_ms}
        return await self.db.write(lambda c: c.execute(sql, values).rowcount)

    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        sql = self._q("count_by_status", lambda: q.count_by_status_query(self._d))
        rows = await self.db.read(lambda c: c.execute(sql, {"now": now_ms}).fetchall())
        return {status: count for status, count in rows}

    async def list_jobs(
        self,
        *,
        statuses: Collection[str] | None,
        types: Collection[str] | None,
        queues: Collection[str] | None,
        limit: int,
        offset: int,
        newest_first: bool,
        now_ms: int,
    ) -> tuple[list[JobRecord], int]:
        page, count, values = q.list_jobs_queries(
            self._d, statuses=statuses, types=types, queues=queues, newest_first=newest_first
        )
        values.update(now=now_ms, limit=limit, offset=offset)

        def do(conn: sqlite3.Connection) -> tuple[list[JobRecord], int]:
            rows = conn.execute(page, values).fetchall()
            return self._records(rows), int(conn.execute(count, values).fetchone()[0])

        return await self.db.read(do)

    async def summary(self, *, now_ms: int) -> list[tuple[str, str, str, int]]:
        sql = self._q("summary", lambda: q.summary_query(self._d))
        rows = await self.db.read(lambda c: c.execute(sql, {"now": now_ms}).fetchall())
        return [(queue, job_type, status, int(n)) for queue, job_type, status, n in rows]

    async def throughput(self, *, since_ms: int) -> list[tuple[int, int, int]]:
        sql = self._q("throughput", lambda: q.throughput_query(self._d))
        rows = await self.db.read(lambda c: c.execute(sql, {"since": since_ms}).fetchall())
        return [(int(m), int(d), int(f)) for m, d, f in rows]

"""The SQLite backend: one database file shared by many worker processes.

The verbs of :class:`~jobq.store.base.Store`, each one short transaction of
SQL, most of it the text both SQL stores share (:mod:`jobq.store.sql`). The
plumbing lives beside: the connections, the database thread, busy waits and
durability in :mod:`.connection`; the schema in :mod:`.schema`; wake-ups
across processes (a touched file, ``PRAGMA data_version``) in :mod:`.wake`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ... import keylimits
from ...errors import JobNotFound, JobqError, LeaseLost, NotRetryable, StoreUnavailable
from ...job import RECORD_FIELDS, JobRecord, record_values
from ...transitions import Transition
from ..base import ClaimRequest, Settled, dequeue_order, settle_then_claim
from ..sql import (
    DUE_ORDER,
    delayed,
    public_status,
    ready,
    SETTLE_FIELDS,
    Dialect,
    check_table_name,
    expired_query,
    settle_assignments,
    settle_fence,
    settle_params,
)
from .connection import BUSY_TIMEOUT, Database, Durability
from .schema import migrate, starts_table
from .wake import ChangeWatch, WakeFile

_COLUMNS = ", ".join(RECORD_FIELDS)
#: Cron schedules' last slots (epoch ms), per job table; see ``claim_cron_slot``.
CRON_TABLE = (
    "CREATE TABLE IF NOT EXISTS jobq_cron (tbl TEXT NOT NULL, name TEXT NOT NULL,"
    " last_slot INTEGER NOT NULL, PRIMARY KEY (tbl, name))"
)


def _json_path(field: str) -> str:
    """A JSON path naming one top-level field, whatever characters it has."""
    return '$."' + field.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
        self.schema_found: int = self.db.write_blocking(lambda c: migrate(c, self.table), in_transaction=False)
        self._wake_file = WakeFile(self.path)
        self._changes = ChangeWatch(self.db.connect(), self._wake_file, closed=lambda: self.db.closed)
        self._settle_sql = self._settle_statements()
        self._insert_sql = f"INSERT INTO {self.table} ({_COLUMNS}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})"

    def _settle_statements(self) -> tuple[str, str]:
        """The settle statement (see :mod:`jobq.store.sql`), without and with
        ``RETURNING``. Parameters are numbered: the transition's fields in
        ``SETTLE_FIELDS`` order, then now."""
        number = {name: f"?{i}" for i, (name, _) in enumerate(SETTLE_FIELDS, start=1)}
        dialect = Dialect(value=number.__getitem__, column=str, now=f"?{len(SETTLE_FIELDS) + 1}")
        sql = (
            f"UPDATE {self.table} SET {settle_assignments(dialect)}"
            f" WHERE id = {number['id']} AND {settle_fence(dialect)}"
        )
        return sql, f"{sql} RETURNING {_COLUMNS}"

    @staticmethod
    def _records(rows: list[Any]) -> list[JobRecord]:
        return [JobRecord(*row) for row in rows]

    # -- the Store protocol -----------------------------------------------

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

    @staticmethod
    def _filters(queues: Sequence[str] | None, exclude_types: Collection[str]) -> tuple[str, list[Any]]:
        sql, params = "", list[Any]()
        if queues is not None and len(queues) == 1:
            sql += " AND queue = ?"  # an equality lets the queue-led index give the order
            params.extend(queues)
        elif queues is not None:
            sql += f" AND queue IN ({', '.join('?' * len(queues))})"
            params.extend(queues)
        if exclude_types:
            sql += f" AND type NOT IN ({', '.join('?' * len(exclude_types))})"
            params.extend(exclude_types)
        return sql, params

    def _ready_index(self, queues: Sequence[str] | None) -> str:
        """The partial index over waiting rows a claim must walk. Named, not
        left to the planner: without statistics it may pick the status index
        and sort every waiting row, making each claim cost grow with the backlog.
        The walk stops after ``LIMIT`` due rows."""
        if queues is not None and len(queues) == 1:
            return f"jobq_{self.table}_queue_ready"
        return f"jobq_{self.table}_ready"

    async def claim(self, request: ClaimRequest) -> list[JobRecord]:
        if request.limits:
            return await self._claim_limited(request)
        sql, args = self._claim_statement(request)
        rows = await self.db.write_unsynced(lambda c: c.execute(sql, args).fetchall())
        return self._claimed(rows)

    def _claim_statement(self, request: ClaimRequest) -> tuple[str, tuple[Any, ...]]:
        r = request
        where, params = self._filters(r.queues, r.exclude_types)
        sql = (
            f"UPDATE {self.table} SET status = 'processing', scheduled_at = process_at,"
            f" process_at = ?, lease_token = ?, lease_owner = ?, started_at = ?"
            f" WHERE id IN (SELECT id FROM {self.table} INDEXED BY {self._ready_index(r.queues)}"
            f" WHERE {ready('?')}{where} ORDER BY {DUE_ORDER} LIMIT ?)"
            f" RETURNING {_COLUMNS}"
        )
        return sql, (r.lease_until_ms, r.token, r.owner, r.now_ms, r.now_ms, *params, r.limit)

    def _claimed(self, rows: list[Any]) -> list[JobRecord]:
        records = self._records(rows)
        # RETURNING gives no order; hand the batch out in dequeue order.
        records.sort(key=dequeue_order)
        return records

    async def settle_and_claim(
        self, transitions: Sequence[Transition], request: ClaimRequest
    ) -> tuple[list[Settled], list[JobRecord]]:
        if request.limits:  # the limited claim is a transaction of its own
            return await settle_then_claim(self, transitions, request)
        settle = self._settler(transitions, request.now_ms, returning=False)
        sql, args = self._claim_statement(request)

        def do(conn: sqlite3.Connection) -> tuple[list[Settled], list[Any]]:
            return settle(conn), conn.execute(sql, args).fetchall()

        # What is settled must be synced; a claim alone need not be.
        settled, rows = await (self.db.write if transitions else self.db.write_unsynced)(do)
        self._announce(transitions, settled)
        return settled, self._claimed(rows)

    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        where, params = self._filters(queues, ())
        sql = (
            f"SELECT {_COLUMNS} FROM {self.table} INDEXED BY {self._ready_index(queues)}"
            f" WHERE {ready('?')}{where} ORDER BY {DUE_ORDER} LIMIT 1"
        )
        rows = await self.db.read(lambda c: c.execute(sql, (now_ms, *params)).fetchall())
        return JobRecord(*rows[0]) if rows else None

    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        where, params = self._filters(queues, ())
        sql = f"SELECT count(*) FROM {self.table} WHERE {ready('?')}{where}"
        return await self.db.read(lambda c: c.execute(sql, (now_ms, *params)).fetchone()[0])

    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        where, params = self._filters(queues, ())
        sql = f"SELECT min(process_at) FROM {self.table} WHERE status = 'pending'{where}"
        return await self.db.read(lambda c: c.execute(sql, params).fetchone()[0])

    def _get(self, conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM {self.table} WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else JobRecord(*row)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.db.read(lambda c: self._get(c, job_id))

    def _missing(self, conn: sqlite3.Connection, job_id: str) -> JobqError:
        """Why a fenced or unfenced update touched no row."""
        record = self._get(conn, job_id)
        if record is None:
            return JobNotFound(job_id)
        return LeaseLost(job_id, f"the job is now {record.status}")

    @staticmethod
    def _fence(token: str | None) -> tuple[str, tuple[Any, ...]]:
        if token is None:
            return "", ()
        return " AND status = 'processing' AND lease_token = ?", (token,)

    async def settle(
        self, transitions: Sequence[Transition], *, now_ms: int, returning: bool = False
    ) -> list[Settled]:
        if not transitions:
            return []
        settled: list[Settled] = await self.db.write(self._settler(transitions, now_ms, returning=returning)
        )
        self._announce(transitions, settled)
        return settled

    def _announce(self, transitions: Sequence[Transition], settled: Sequence[Settled]) -> None:
        """Touches the wake file when a job written back to waiting may run."""
        if any(
            t.wakes_workers and not isinstance(s, JobqError) for t, s in zip(transitions, settled, strict=True)
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
        sql = (
            f"UPDATE {self.table} SET process_at = ?"
            f" WHERE id = ? AND status = 'processing' AND lease_token = ?"
        )

        def do(conn: sqlite3.Connection) -> set[str]:
            return {
                job_id
                for job_id, token in leases
                if conn.execute(sql, (until_ms, job_id, token)).rowcount == 0
            }

        return await self.db.write(do) if leases else set()

    async def expired(self, *, now_ms: int, limit: int) -> list[JobRecord]:
        sql = expired_query(self.table, "?", "?", _COLUMNS)
        rows = await self.db.read(lambda c: c.execute(sql, (now_ms, limit)).fetchall())
        return self._records(rows)

    async def claim_cron_slot(self, name: str, slot_ms: int, job: JobRecord) -> bool:
        """One ``BEGIN IMMEDIATE`` transaction: read the schedule's last slot,
        move it forward and insert the job, or change nothing. The
        ``jobq_cron`` table is created here on first use (additively, beside
        the versioned job table)."""
        insert = (
            f"INSERT INTO {self.table} ({_COLUMNS}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})"
        )
        row = tuple(getattr(job, f) for f in RECORD_FIELDS)

        def do(conn: sqlite3.Connection) -> bool:
            conn.execute(CRON_TABLE)
            found = conn.execute(
                "SELECT last_slot FROM jobq_cron WHERE tbl = ? AND name = ?", (self.table, name)
            ).fetchone()
            if found is not None and found[0] >= slot_ms:
                return False
            conn.execute(
                "INSERT INTO jobq_cron (tbl, name, last_slot) VALUES (?, ?, ?)"
                " ON CONFLICT (tbl, name) DO UPDATE SET last_slot = excluded.last_slot",
                (self.table, name, slot_ms),
            )
            if found is None:
                return False
            conn.execute(insert, row)
            return True

        inserted: bool = await self.db.write(do)
        if inserted:
            self._wake_file.touch()
        return inserted

    async def remove(self, job_id: str) -> bool:
        sql = f"DELETE FROM {self.table} WHERE id = ?"
        return await self.db.write(lambda c: c.execute(sql, (job_id,)).rowcount > 0)

    async def clear(self) -> None:
        await self.db.write(lambda c: c.execute(f"DELETE FROM {self.table}"))

    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        if not statuses:
            return 0
        sql = f"DELETE FROM {self.table} WHERE status IN ({', '.join('?' * len(statuses))})"
        args: list[Any] = list(statuses)
        if before_ms is not None:
            sql += " AND COALESCE(completed_at, failed_at, cancelled_at, created_at) < ?"
            args.append(before_ms)
        return await self.db.write(lambda c: c.execute(sql, args).rowcount)

    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        sql = (
            f"SELECT {public_status('?')}"
            f" AS s, count(*) FROM {self.table} GROUP BY s"
        )
        rows = await self.db.read(lambda c: c.execute(sql, (now_ms,)).fetchall())
        return {status: count for status, count in rows}

    # -- per-key limits ------------------------------------------------------

    async def _claim_limited(self, request: ClaimRequest) -> list[JobRecord]:
        limit, now_ms, limits = request.limit, request.now_ms, request.limits
        lease_until_ms, token, owner = request.lease_until_ms, request.token, request.owner
        queues, exclude_types = request.queues, request.exclude_types
        where, params = self._filters(queues, exclude_types)
        parts: list[str] = []
        part_args: list[Any] = []
        for lim in limits:
            applies = "type = ? AND " if lim.type is not None else ""
            parts.append(f"CASE WHEN {applies}json_valid(metadata) THEN json_extract(metadata, ?) END")
            part_args += ([lim.type] if lim.type is not None else []) + [_json_path(lim.key)]
        # The first waiting jobs of each key combination, round-robin.
        candidates_sql = (
            f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS}, row_number() OVER"
            f" (PARTITION BY {', '.join(parts)} ORDER BY {DUE_ORDER}) AS jobq_rank"
            f" FROM {self.table} WHERE {ready('?')}{where})"
            f" WHERE jobq_rank <= ? ORDER BY jobq_rank, {DUE_ORDER} LIMIT ?"
        )
        candidates_args = (*part_args, now_ms, *params, limit, keylimits.candidate_cap(limit))
        starts = starts_table(self.table)
        rated = keylimits.rate_limits(limits)
        take = (
            f"UPDATE {self.table} SET status = 'processing', scheduled_at = process_at,"
            f" process_at = ?, lease_token = ?, lease_owner = ?, started_at = ?"
            f" WHERE id = ? AND status = 'pending' RETURNING {_COLUMNS}"
        )

        def do(conn: sqlite3.Connection) -> list[JobRecord]:
            candidates = self._records(conn.execute(candidates_sql, candidates_args).fetchall())
            if not candidates:
                return []
            running: list[tuple[str, Any]] = []
            if any(lim.concurrency is not None for lim in limits):
                running = conn.execute(
                    f"SELECT type, metadata FROM {self.table} WHERE status = 'processing'"
                ).fetchall()
            recent: list[tuple[str, str]] = []
            for lim in rated:
                conn.execute(f"DELETE FROM {starts} WHERE name = ? AND at_ms <= ?", (lim.name, now_ms - lim.per_ms))
                recent += conn.execute(f"SELECT name, key FROM {starts} WHERE name = ?", (lim.name,)).fetchall()
            chosen, new_starts = keylimits.choose(
                candidates, limit, limits, keylimits.usage(limits, running, recent)
            )
            claimed = []
            for record in chosen:
                row = conn.execute(take, (lease_until_ms, token, owner, now_ms, record.id)).fetchone()
                if row is not None:
                    claimed.append(JobRecord(*row))
            if new_starts:
                conn.executemany(
                    f"INSERT INTO {starts} (name, key, at_ms) VALUES (?, ?, ?)",
                    [(name, key, now_ms) for name, key in new_starts],
                )
            return claimed

        return await self.db.write(do)

    # -- unique jobs, cancellation, progress, inspection ---------------------

    async def insert_unique(self, records: Sequence[JobRecord]) -> list[JobRecord | None]:
        placeholders = ", ".join("?" * len(RECORD_FIELDS))
        plain = f"INSERT INTO {self.table} ({_COLUMNS}) VALUES ({placeholders})"
        # A unique key held by an unfinished job trips the partial unique
        # index; DO NOTHING then leaves the holder to be read back.
        keyed = plain + " ON CONFLICT DO NOTHING"
        holder = (
            f"SELECT {_COLUMNS} FROM {self.table}"
            f" WHERE unique_key = ? AND status IN ('pending', 'processing')"
        )
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
                found = conn.execute(holder, (record.unique_key,)).fetchone()
                if found is None:
                    raise StoreUnavailable(f"job id {record.id!r} already exists")
                answer.append(JobRecord(*found))
            return answer

        answer: list[JobRecord | None] = await self.db.write(do)
        if any(held is None for held in answer):
            self._wake_file.touch()
        return answer

    async def cancel(self, job_id: str, *, now_ms: int) -> tuple[bool, JobRecord]:
        stop = f"UPDATE {self.table} SET status = 'cancelled', cancelled_at = ? WHERE id = ?"
        request = (
            f"UPDATE {self.table} SET cancel_requested_at = COALESCE(cancel_requested_at, ?) WHERE id = ?"
        )

        def do(conn: sqlite3.Connection) -> tuple[bool, JobRecord]:
            record = self._get(conn, job_id)
            if record is None:
                raise JobNotFound(job_id)
            if record.status == "pending":
                conn.execute(stop, (now_ms, job_id))
            elif record.status == "processing":
                conn.execute(request, (now_ms, job_id))
            else:
                return False, record
            after = self._get(conn, job_id)
            assert after is not None
            return True, after

        return await self.db.write(do)

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        sql = (
            f"SELECT id FROM {self.table} WHERE id IN ({', '.join('?' * len(job_ids))})"
            f" AND status = 'processing' AND cancel_requested_at IS NOT NULL"
        )
        rows = await self.db.read(lambda c: c.execute(sql, tuple(job_ids)).fetchall())
        return {row[0] for row in rows}

    async def retry(self, job_id: str, *, now_ms: int) -> JobRecord:
        sql = (
            f"UPDATE {self.table} SET status = 'pending', attempts = 0, process_at = ?,"
            f" failed_at = NULL, cancelled_at = NULL, cancel_requested_at = NULL"
            f" WHERE id = ? AND status IN ('failed', 'cancelled') RETURNING {_COLUMNS}"
        )

        def do(conn: sqlite3.Connection) -> JobRecord:
            try:
                row = conn.execute(sql, (now_ms, job_id)).fetchone()
            except sqlite3.IntegrityError:
                raise NotRetryable(
                    f"job {job_id!r} cannot be retried: another unfinished job holds its unique key"
                ) from None
            if row is not None:
                return JobRecord(*row)
            record = self._get(conn, job_id)
            if record is None:
                raise JobNotFound(job_id)
            raise NotRetryable(f"job {job_id!r} is {record.status}; only failed or cancelled jobs can be retried")

        record: JobRecord = await self.db.write(do)
        self._wake_file.touch()
        return record

    async def set_progress(
        self, job_id: str, *, token: str | None, progress: float, message: str | None
    ) -> None:
        fence, fence_args = self._fence(token)
        sql = f"UPDATE {self.table} SET progress = ?, progress_message = ? WHERE id = ?{fence}"

        def do(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, (progress, message, job_id, *fence_args)).rowcount == 0:
                raise self._missing(conn, job_id)

        await self.db.write(do)

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
        clauses: list[str] = []
        args: list[Any] = []
        if statuses is not None:
            either: list[str] = []
            for status in sorted(statuses):
                if status == "pending":
                    either.append(f"({ready('?')})")
                    args.append(now_ms)
                elif status == "delayed":
                    either.append(f"({delayed('?')})")
                    args.append(now_ms)
                else:
                    either.append("status = ?")
                    args.append(status)
            clauses.append("(" + (" OR ".join(either) or "0") + ")")
        for column, values in (("type", types), ("queue", queues)):
            if values is not None:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
                args.extend(values)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        direction = "DESC" if newest_first else "ASC"
        page = (
            f"SELECT {_COLUMNS} FROM {self.table}{where}"
            f" ORDER BY created_at {direction}, id {direction} LIMIT ? OFFSET ?"
        )
        count = f"SELECT count(*) FROM {self.table}{where}"

        def do(conn: sqlite3.Connection) -> tuple[list[JobRecord], int]:
            rows = conn.execute(page, (*args, limit, offset)).fetchall()
            return self._records(rows), int(conn.execute(count, args).fetchone()[0])

        return await self.db.read(do)

    async def summary(self, *, now_ms: int) -> list[tuple[str, str, str, int]]:
        sql = (
            f"SELECT queue, type, {public_status('?')}"
            f" AS s, count(*) FROM {self.table} GROUP BY queue, type, s"
            f" ORDER BY queue, type, s"
        )
        rows = await self.db.read(lambda c: c.execute(sql, (now_ms,)).fetchall())
        return [(q, t, st, int(n)) for q, t, st, n in rows]

    async def throughput(self, *, since_ms: int) -> list[tuple[int, int, int]]:
        sql = (
            f"SELECT minute, sum(done), sum(failed) FROM ("
            f"SELECT completed_at / 60000 * 60000 AS minute, 1 AS done, 0 AS failed FROM {self.table}"
            f" WHERE status = 'completed' AND completed_at >= ?"
            f" UNION ALL SELECT failed_at / 60000 * 60000, 0, 1 FROM {self.table}"
            f" WHERE status = 'failed' AND failed_at >= ?) GROUP BY minute ORDER BY minute"
        )
        rows = await self.db.read(lambda c: c.execute(sql, (since_ms, since_ms)).fetchall())
        return [(int(m), int(d), int(f)) for m, d, f in rows]
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

"""The SQLite backend: one database file shared by many worker processes.

Every verb is one short transaction of SQL, most of it the text both SQL
stores share (:mod:`jobq.store.sql`, spelled here with named ``:value``
parameters, lists as JSON). This module holds the worker's verbs
(:class:`~jobq.store.base.WorkerStore`); the operators' verbs are in
:mod:`.admin`, and what both stand on (opening, shared helpers) in
:mod:`.core`. The plumbing lives beside: the connections, the database
thread, busy waits and durability in :mod:`.connection`; the schema in
:mod:`.schema`; wake-ups across processes (a touched file, ``PRAGMA
data_version``) in :mod:`.wake`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from ...errors import JobqError, StoreUnavailable
from ...history import WorkerRecord
from ...job import JobRecord, record_values
from ...transitions import Transition
from .. import history_sql as hq
from .. import sql as q
from ..base import ClaimRequest, Settled, claimed, settle_then_claim
from ..group import GroupCommit, Outcomes
from ..history_sql import attempt_values
from ..limited import limited_claim
from ..sql import COLUMNS, settle_params, settle_shape
from .admin import AdminVerbs
from .connection import is_busy
from .core import run_steps
from .schema import starts_table

#: Cron schedules' last slots (epoch ms), per job table; see ``claim_cron_slot``.
CRON_TABLE = q.cron_table("INTEGER")

FINISH_POLL = 0.01  # seconds between reads of PRAGMA data_version while a result is awaited


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


class SQLiteStore(AdminVerbs):
    """A job table in one SQLite file: a :class:`~jobq.store.base.Store`."""

    name = "sqlite"

    # -- the worker's verbs -----------------------------------------------

    async def insert(self, records: Sequence[JobRecord]) -> None:
        """At durability "full", concurrent inserts share one commit
        (:mod:`jobq.store.group`), synced once the write lock is released
        (:meth:`~.connection.Database.write_then_sync`), so producers in other
        processes write meanwhile; each returns once its rows are synced."""
        rows = list(map(record_values, records))
        if self.durability == "full":
            await self._inserts.submit(rows)
            return
        await self.db.write(lambda conn: self._insert_rows(conn, rows))
        self._wake_file.touch()

    @functools.cached_property
    def _inserts(self) -> GroupCommit[list[tuple[Any, ...]]]:
        """Concurrent inserts' shared commits (made on first use)."""
        return GroupCommit(self._commit_inserts)

    def _insert_rows(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) == 1:
            conn.execute(self._insert_sql, rows[0])
        else:
            conn.executemany(self._insert_sql, rows)

    async def _commit_inserts(self, batch: Sequence[list[tuple[Any, ...]]]) -> Outcomes:
        """One transaction, one sync, for the inserts of a batch, each inside
        a savepoint of its own: an insert that fails is rolled back alone
        and reported to its caller, the others commit."""

        def alone(conn: sqlite3.Connection) -> Outcomes:
            self._insert_rows(conn, batch[0])
            return [None]

        def together(conn: sqlite3.Connection) -> Outcomes:
            outcomes: Outcomes = []
            for rows in batch:
                conn.execute("SAVEPOINT jobq_insert")
                try:
                    self._insert_rows(conn, rows)
                except sqlite3.Error as exc:
                    if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                        raise  # the whole transaction is retried
                    conn.execute("ROLLBACK TO jobq_insert")
                    outcomes.append(self.db.failure(exc))
                else:
                    outcomes.append(None)
                conn.execute("RELEASE jobq_insert")
            return outcomes

        outcomes = await self.db.write_then_sync(alone if len(batch) == 1 else together)
        if None in outcomes:
            self._wake_file.touch()
        return outcomes

    async def claim(self, request: ClaimRequest) -> list[JobRecord]:
        if request.limits:
            return await self._claim_limited(request)
        sql, values = self._claim_statement(request)
        rows = await self.db.write_unsynced(lambda c: c.execute(sql, values).fetchall())
        return claimed(rows)

    def _claim_statement(self, request: ClaimRequest) -> tuple[str, dict[str, Any]]:
        r, d = request, self._d
        where, key, values = q.claim_filters(d, r)
        sql = self._q(
            ("claim", key),
            lambda: (
                f"UPDATE {self.table} SET {q.lease_assignments(d)} WHERE id IN"
                f" ({q.due(d, 'id', where, limit=':limit', **self._ready_walk(r.queues))}) RETURNING {COLUMNS}"
            ),
        )
        values.update(q.lease_params(r), now=r.now_ms)
        return sql, values

    async def _claim_limited(self, request: ClaimRequest) -> list[JobRecord]:
        where, _, values = q.claim_filters(self._d, request)
        values["now"] = request.now_ms
        starts = starts_table(self.table)

        def do(conn: sqlite3.Connection) -> list[JobRecord]:
            steps = limited_claim(
                self._d, request, where=where, values=values, starts=starts, starts_now=request.now_ms
            )
            return run_steps(conn, steps)

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

        # What is settled must be synced; a claim alone need not be. Left
        # to the caller (settle_synced false), the sync runs apart while the
        # claimed jobs start, and the commit holds the write lock for no
        # sync; it runs on the database thread, whose commits checkpoint.
        if not transitions:
            settled, rows = await self.db.write_unsynced(do)
        elif not request.settle_synced:
            settled, rows = await self.db.write_unsynced(do, inline=False)
        else:
            settled, rows = await self.db.write(do)
        self._announce(transitions, settled)
        return settled, claimed(rows)

    @property
    def syncs_apart(self) -> bool:
        return self.durability == "full"

    async def sync(self) -> None:
        if self.durability == "full":
            await self.db.sync()

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
        values = [(now_ms, *settle_params(t)) for t in transitions]
        shape = settle_shape(list(zip(*values, strict=True))[1:]) if values else ()
        sql, returning_sql, pick = self._settle_statements(shape)
        rows = list(map(pick, values))
        record_attempts = self._attempts_sql

        def history(conn: sqlite3.Connection, written: Sequence[Transition]) -> None:
            # Each attempt's row goes in the transaction of its outcome: one
            # executemany for the batch.
            attempts = [attempt_values(t, now_ms) for t in written if t.outcome is not None]
            if attempts:
                conn.executemany(record_attempts, attempts)

        def one_by_one(conn: sqlite3.Connection) -> list[Settled]:
            settled: list[Settled] = []
            for transition, row in zip(transitions, rows, strict=True):
                if returning:
                    found = conn.execute(returning_sql, row).fetchone()
                    settled.append(JobRecord(*found) if found else self._missing(conn, transition.job_id))
                else:
                    changed = conn.execute(sql, row).rowcount
                    settled.append(None if changed else self._missing(conn, transition.job_id))
            history(conn, [t for t, s in zip(transitions, settled, strict=True) if not isinstance(s, JobqError)])
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
            history(conn, transitions)
            return [None] * len(rows)

        return do

    async def heartbeat(self, worker: WorkerRecord, *, forget_before_ms: int) -> None:
        upsert = self._q("heartbeat", lambda: hq.heartbeat_query(self._d, self._workers_table))
        forget = self._q("forget_workers", lambda: hq.forget_workers_query(self._d, self._workers_table))

        def do(conn: sqlite3.Connection) -> None:
            conn.execute(upsert, worker._asdict())
            conn.execute(forget, {"before": forget_before_ms})

        await self.db.write(do)

    async def unregister(self, worker_id: str) -> None:
        sql = self._q("unregister", lambda: hq.unregister_query(self._d, self._workers_table))
        await self.db.write(lambda c: c.execute(sql, {"id": worker_id}))

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

    async def expired(self, *, now_ms: int, limit: int, foreign_timeout_ms: int) -> list[JobRecord]:
        sql = self._q("expired", lambda: q.expired_query(self._d))
        unseen = self._q("unseen_foreign", lambda: q.unseen_foreign_query(self._d))
        values = {"now": now_ms, "limit": limit, "foreign": foreign_timeout_ms}

        def read(conn: sqlite3.Connection) -> tuple[list[Any], list[str]]:
            return conn.execute(sql, values).fetchall(), [row[0] for row in conn.execute(unseen)]

        # A read takes no lock. The write lock is taken only to mark new
        # foreign claims seen, those the read found (made before now_ms was
        # read, or moments after: a mark is never much earlier than its claim).
        rows, new_foreign = await self.db.read(read)
        if new_foreign:
            see = self._q("see_foreign", lambda: q.see_foreign_query(self._d, among=True))
            await self.db.write(lambda c: c.execute(see, {"now": now_ms, "ids": json.dumps(new_foreign)}))
        return self._records(rows)

    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        where, key, values = q.filters(self._d, queues)
        sql = self._q(
            ("peek", key), lambda: q.due(self._d, COLUMNS, where, limit="1", **self._ready_walk(queues))
        )
        rows = await self.db.read(lambda c: c.execute(sql, {**values, "now": now_ms}).fetchall())
        return JobRecord(*rows[0]) if rows else None

    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        where, key, values = q.filters(self._d, queues)
        sql = self._q(("count_ready", key), lambda: q.count_ready_query(self._d, where, **self._ready_walk(queues)))
        return int(await self.db.read(lambda c: c.execute(sql, {**values, "now": now_ms}).fetchone()[0]))

    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        where, key, values = q.filters(self._d, queues)
        sql = self._q(("next_due", key), lambda: q.next_due_query(self._d, where, **self._ready_walk(queues)))
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

    async def wait_for_finish(self, timeout: float) -> bool:
        """Returns ``True`` when any connection committed since the previous
        call (``PRAGMA data_version`` on a connection of its own, read every
        :data:`FINISH_POLL` seconds: completions are not announced through
        the wake file, which is for new work), ``False`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._finish_watch is None:
            self._finish_watch = self.db.connect()
            self._finish_version = _data_version(self._finish_watch)
        while not self.db.closed:
            version = _data_version(self._finish_watch)
            if version != self._finish_version:
                self._finish_version = version
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(FINISH_POLL, remaining))
        return False

    def _close_watches(self) -> None:
        self._changes.close()
        if self._finish_watch is not None:
            self._finish_watch.close()
            self._finish_watch = None

    def twin(self) -> SQLiteStore:
        """The same file through connections and a database thread of its own."""
        return SQLiteStore(
            self.path, table=self.table, durability=self.durability, busy_timeout=self.busy_timeout
        )

    async def close(self) -> None:
        if self.db.closed:
            return
        await self.db.close()
        self._close_watches()

    def close_sync(self) -> None:
        """Closes from code that has no event loop."""
        if self.db.closed:
            return
        self.db.close_sync()
        self._close_watches()

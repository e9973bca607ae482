"""The SQLite backend: one database file shared by many worker processes.

- WAL journal, so readers never wait for the writer.
- Every write is one short ``BEGIN IMMEDIATE`` transaction: it takes the write
  lock up front, so two writers never deadlock upgrading read locks. Waits for
  the lock go through SQLite's busy handler, then a bounded retry; a caller
  sees :class:`~jobq.errors.StoreUnavailable` only after ``busy_timeout``
  seconds, never "database is locked".
- Durability: ``"full"`` (the default) syncs the WAL on every commit that
  records something a power loss must not undo: enqueues, completions,
  failures, cancellations. A claim alone is not synced: if a power loss undoes
  it, the job is waiting again, which is what its lease expiring would have
  made it (the worker went down with the machine); the next synced commit
  makes it durable anyway. ``"fast"`` (``synchronous=NORMAL``) syncs only at
  checkpoints: an application or worker crash still loses nothing, but a
  power loss or OS crash can lose the last transactions committed before it
  (enqueues, completions; a lost completion means the job runs again).
- Statements run on one thread per store, so the event loop never blocks on
  the file, except those that cannot wait (reads, and writes that need no
  sync while the lock is free), which run on the caller's thread.
- Cross-process wake-ups: writers touch a wake file after committing work,
  which idle workers watch (:mod:`jobq.store.sqlite_wake`); ``PRAGMA
  data_version``, read from a connection of its own, tells whether another
  connection committed.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar, cast

from .. import keylimits
from ..errors import (
    InvalidOption,
    JobNotFound,
    JobqError,
    LeaseLost,
    NotRetryable,
    QueueClosed,
    StoreUnavailable,
)
from ..job import RECORD_FIELDS, JobRecord, record_values
from ..transitions import Transition
from .base import ClaimRequest, Settled, dequeue_order, settle_then_claim
from .sql import (
    DUE_ORDER,
    SETTLE_FIELDS,
    Dialect,
    check_table_name,
    delayed,
    expired_query,
    public_status,
    ready,
    settle_assignments,
    settle_fence,
    settle_params,
)
from .sqlite_schema import migrate, starts_table
from .sqlite_wake import WakeFile

R = TypeVar("R")

Durability = Literal["full", "fast"]
DURABILITY_MODES: dict[str, str] = {"full": "FULL", "fast": "NORMAL"}

BUSY_TIMEOUT = 30.0  # seconds a write may wait for the lock before giving up
_BUSY_HANDLER_MS = 5_000  # one wait inside SQLite's busy handler, in milliseconds
WAKE_POLL_MIN = 0.001  # seconds between data_version checks while the file is busy
WAKE_POLL_MAX = 0.010  # seconds between checks once idle: bounds cross-process wake-up delay
WAKE_BUSY_SPAN = 1.0  # seconds after the last change seen during which the file counts as busy

_COLUMNS = ", ".join(RECORD_FIELDS)
#: Cron schedules' last slots (epoch ms), per job table; see ``claim_cron_slot``.
CRON_TABLE = (
    "CREATE TABLE IF NOT EXISTS jobq_cron (tbl TEXT NOT NULL, name TEXT NOT NULL,"
    " last_slot INTEGER NOT NULL, PRIMARY KEY (tbl, name))"
)


def _json_path(field: str) -> str:
    """A JSON path naming one top-level field, whatever characters it has."""
    return '$."' + field.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _lenient_text(raw: bytes) -> str:
    """Text that is not UTF-8 (written by another program) read with its bad
    bytes as lone surrogates, which the job decoder then reports as corrupt,
    instead of an error that would stop every claim meeting the row."""
    return raw.decode("utf-8", "surrogateescape")


def _roll_back(conn: sqlite3.Connection) -> None:
    """Ends a failed write transaction. SQLite may have rolled it back
    already (after SQLITE_FULL, for one), when a ROLLBACK would fail and hide
    the error that matters."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _is_undecodable(exc: sqlite3.OperationalError) -> bool:
    return "could not decode to utf-8" in str(exc).lower()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


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
        if durability not in DURABILITY_MODES:
            raise InvalidOption(
                f"durability {durability!r} is not one of {', '.join(map(repr, DURABILITY_MODES))}"
            )
        self.path = os.fspath(path)
        self.table = check_table_name(table)
        self.durability = durability
        self.busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobq-sqlite")
        self._closed = False
        self._conn = self._connect()
        self.schema_found: int = self._write(lambda c: migrate(c, self.table), in_transaction=False)
        self._watch = self._connect()
        self._last_version = self._data_version()
        self._changed_at = float("-inf")  # event-loop time of the last change wait_for_change saw
        # Statements that cannot wait run on the caller's thread, saving the
        # hand-off to the database thread (see _run_now). Its writes are the
        # ones that need no sync, so it never syncs; under "full" it also
        # leaves checkpoints (which sync the database file) to the database
        # thread, whose synced commits run them.
        self._now_conn = self._connect(busy_ms=0, synchronous="NORMAL")
        self._wake_file = WakeFile(self.path)
        # What may run on the caller's thread: reads, and writes that need no
        # sync (all of them under "fast"); see _run_now.
        self._inline = (self._read, self._write_unsynced) + ((self._write,) if durability == "fast" else ())
        self._settle_sql = self._settle_statements()
        self._insert_sql = f"INSERT INTO {self.table} ({_COLUMNS}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})"
        if durability == "full":
            self._now_conn.execute("PRAGMA wal_autocheckpoint = 0")

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

    # -- connection plumbing ----------------------------------------------

    def _connect(self, busy_ms: int = _BUSY_HANDLER_MS, synchronous: str | None = None) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from None
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute(f"PRAGMA synchronous = {synchronous or DURABILITY_MODES[self.durability]}")
        return conn

    def _retry_busy(self, fn: Callable[[], R], conn: sqlite3.Connection | None = None) -> R:
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if conn is not None and _is_undecodable(exc) and conn.text_factory is str:
                    # Rare (a row another program wrote), so the lenient
                    # reading is paid for only by the statement that met it.
                    conn.text_factory = _lenient_text
                    try:
                        return self._retry_busy(fn, conn)
                    finally:
                        conn.text_factory = str
                if not _is_busy(exc):
                    raise StoreUnavailable(f"SQLite error on {self.path!r}: {exc}") from None
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"SQLite database {self.path!r} stayed locked for {self.busy_timeout:g} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def _write(self, fn: Callable[[sqlite3.Connection], R], *, in_transaction: bool = True) -> R:
        """Runs ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retrying while busy."""
        conn = self._conn

        def attempt() -> R:
            if not in_transaction:
                return fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                _roll_back(conn)
                raise
            return result

        return self._retry_busy(attempt, conn)

    def _write_unsynced(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        """:meth:`_write` for a transaction a power loss may undo without
        losing anything (a claim): under "full", committed without a sync."""
        if self.durability != "full":
            return self._write(fn)
        self._conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return self._write(fn)
        finally:
            self._conn.execute("PRAGMA synchronous = FULL")

    def _read(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        return self._retry_busy(lambda: fn(self._conn), self._conn)

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        if self._closed:
            raise QueueClosed()
        if len(args) == 1 and fn in self._inline:
            done, result = self._run_now(args[0], write=fn != self._read)
            if done:
                return cast(R, result)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _run_now(self, do: Callable[[sqlite3.Connection], R], *, write: bool) -> tuple[bool, Any]:
        """Runs ``do`` on the calling thread if it need not wait: a read (WAL
        readers never wait), or a write while nobody holds the write lock.
        This connection's busy timeout is 0, so a held lock answers at once,
        and the statement goes to the database thread, which waits for it.
        Synced writes (durability "full") always go there: their commit waits
        for the disk, which must not stall the event loop."""
        conn = self._now_conn
        try:
            if not write:
                return True, do(conn)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc) or _is_undecodable(exc):
                return False, None
            raise StoreUnavailable(f"SQLite error on {self.path!r}: {exc}") from None
        try:
            result = do(conn)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _roll_back(conn)
            if _is_busy(exc) or _is_undecodable(exc):
                return False, None
            raise StoreUnavailable(f"SQLite error on {self.path!r}: {exc}") from None
        except BaseException:
            _roll_back(conn)
            raise
        return True, result

    def _data_version(self) -> int:
        return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

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

        await self._run(self._write, do)
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
        rows = await self._run(self._write_unsynced, lambda c: c.execute(sql, args).fetchall())
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
        settled, rows = await self._run(self._write if transitions else self._write_unsynced, do)
        self._announce(transitions, settled)
        return settled, self._claimed(rows)

    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        where, params = self._filters(queues, ())
        sql = (
            f"SELECT {_COLUMNS} FROM {self.table} INDEXED BY {self._ready_index(queues)}"
            f" WHERE {ready('?')}{where} ORDER BY {DUE_ORDER} LIMIT 1"
        )
        rows = await self._run(self._read, lambda c: c.execute(sql, (now_ms, *params)).fetchall())
        return JobRecord(*rows[0]) if rows else None

    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        where, params = self._filters(queues, ())
        sql = f"SELECT count(*) FROM {self.table} WHERE {ready('?')}{where}"
        return await self._run(self._read, lambda c: c.execute(sql, (now_ms, *params)).fetchone()[0])

    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        where, params = self._filters(queues, ())
        sql = f"SELECT min(process_at) FROM {self.table} WHERE status = 'pending'{where}"
        return await self._run(self._read, lambda c: c.execute(sql, params).fetchone()[0])

    def _get(self, conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM {self.table} WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else JobRecord(*row)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._run(self._read, lambda c: self._get(c, job_id))

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
        settled: list[Settled] = await self._run(
            self._write, self._settler(transitions, now_ms, returning=returning)
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

        return await self._run(self._write, do) if leases else set()

    async def expired(self, *, now_ms: int, limit: int) -> list[JobRecord]:
        sql = expired_query(self.table, "?", "?", _COLUMNS)
        rows = await self._run(self._read, lambda c: c.execute(sql, (now_ms, limit)).fetchall())
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

        inserted: bool = await self._run(self._write, do)
        if inserted:
            self._wake_file.touch()
        return inserted

    async def remove(self, job_id: str) -> bool:
        sql = f"DELETE FROM {self.table} WHERE id = ?"
        return await self._run(self._write, lambda c: c.execute(sql, (job_id,)).rowcount > 0)

    async def clear(self) -> None:
        await self._run(self._write, lambda c: c.execute(f"DELETE FROM {self.table}"))

    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        if not statuses:
            return 0
        sql = f"DELETE FROM {self.table} WHERE status IN ({', '.join('?' * len(statuses))})"
        args: list[Any] = list(statuses)
        if before_ms is not None:
            sql += " AND COALESCE(completed_at, failed_at, cancelled_at, created_at) < ?"
            args.append(before_ms)
        return await self._run(self._write, lambda c: c.execute(sql, args).rowcount)

    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        sql = (
            f"SELECT {public_status('?')}"
            f" AS s, count(*) FROM {self.table} GROUP BY s"
        )
        rows = await self._run(self._read, lambda c: c.execute(sql, (now_ms,)).fetchall())
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

        return await self._run(self._write, do)

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

        answer: list[JobRecord | None] = await self._run(self._write, do)
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

        return await self._run(self._write, do)

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        sql = (
            f"SELECT id FROM {self.table} WHERE id IN ({', '.join('?' * len(job_ids))})"
            f" AND status = 'processing' AND cancel_requested_at IS NOT NULL"
        )
        rows = await self._run(self._read, lambda c: c.execute(sql, tuple(job_ids)).fetchall())
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

        record: JobRecord = await self._run(self._write, do)
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

        await self._run(self._write, do)

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

        return await self._run(self._read, do)

    async def summary(self, *, now_ms: int) -> list[tuple[str, str, str, int]]:
        sql = (
            f"SELECT queue, type, {public_status('?')}"
            f" AS s, count(*) FROM {self.table} GROUP BY queue, type, s"
            f" ORDER BY queue, type, s"
        )
        rows = await self._run(self._read, lambda c: c.execute(sql, (now_ms,)).fetchall())
        return [(q, t, st, int(n)) for q, t, st, n in rows]

    async def throughput(self, *, since_ms: int) -> list[tuple[int, int, int]]:
        sql = (
            f"SELECT minute, sum(done), sum(failed) FROM ("
            f"SELECT completed_at / 60000 * 60000 AS minute, 1 AS done, 0 AS failed FROM {self.table}"
            f" WHERE status = 'completed' AND completed_at >= ?"
            f" UNION ALL SELECT failed_at / 60000 * 60000, 0, 1 FROM {self.table}"
            f" WHERE status = 'failed' AND failed_at >= ?) GROUP BY minute ORDER BY minute"
        )
        rows = await self._run(self._read, lambda c: c.execute(sql, (since_ms, since_ms)).fetchall())
        return [(int(m), int(d), int(f)) for m, d, f in rows]

    async def wait_for_change(self, timeout: float) -> bool:
        """Returns when another connection committed (``PRAGMA data_version``
        moved): ``True`` when a jobq writer announced it by touching the wake
        file (see :mod:`jobq.store.sqlite_wake`), ``False`` when a poll saw it
        or ``timeout`` passed. Where touches are watched, the poll runs every
        10 ms, for writers that do not touch the file; elsewhere every
        millisecond while the file is busy and every 10 ms once it is quiet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        touched = self._wake_file.event()
        announced = False
        while not self._closed:
            if touched is not None:
                touched.clear()  # before the check: a touch after it ends the wait
            version = self._data_version()
            now = loop.time()
            if version != self._last_version:
                self._last_version = version
                self._changed_at = now
                return announced
            remaining = deadline - now
            if remaining <= 0:
                return False
            if touched is not None:
                try:
                    await asyncio.wait_for(touched.wait(), min(WAKE_POLL_MAX, remaining))
                    announced = True
                except TimeoutError:
                    pass
                continue
            # Every millisecond while jobs are flowing (a wake-up then costs
            # at most about 1 ms); every 10 ms once the file has been quiet
            # for a second, so an idle worker costs next to nothing.
            busy = now - self._changed_at < WAKE_BUSY_SPAN
            await asyncio.sleep(min(WAKE_POLL_MIN if busy else WAKE_POLL_MAX, remaining))
        return False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)
        self._watch.close()
        self._now_conn.close()
        self._wake_file.close()

    def close_sync(self) -> None:
        """Closes from code that has no event loop."""
        if self._closed:
            return
        self._closed = True
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown(wait=True)
        self._watch.close()
        self._now_conn.close()
        self._wake_file.close()

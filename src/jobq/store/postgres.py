"""The PostgreSQL backend: one table shared by workers on many machines.

- psycopg 3 (async) over a :class:`psycopg_pool.AsyncConnectionPool`, opened
  on first use in the caller's event loop. Connections run in autocommit;
  a verb that needs more than one statement wraps them in one transaction.
- Claims take a batch of ready rows with ``FOR UPDATE SKIP LOCKED`` and move
  them to ``processing`` in the same statement, so concurrent claimers never
  wait on each other and never get the same job. The rescuer skips locked
  rows the same way.
- Leases, heartbeats, rescue and fencing are those of the SQLite backend,
  statement for statement: a processing row keeps its lease end in
  ``process_at`` and the time it was due in ``scheduled_at``.
- The clock: with the system clock (the default), every time that decides
  ordering, readiness or leases is the database's (``transaction_timestamp()``
  in epoch ms), so workers whose clocks disagree still agree on "now"; the
  caller's times are used only as offsets (a lease of 30 s, a retry in 5 s).
  With any other clock (:class:`~jobq.clock.FakeClock` in tests) the caller's
  times are stored as given, exactly as on SQLite. Every statement takes
  ``now`` as a parameter and reads ``COALESCE(now, <database now>)``.
- Wake-ups: enqueue, release, a retry and a rescue send ``pg_notify`` on the
  table's channel in their own transaction, so the notification is delivered
  only if the change commits. :meth:`PostgresStore.wait_for_change` listens on
  a dedicated connection; while that connection is down it polls instead
  (returns every :data:`LISTEN_FALLBACK_POLL` seconds) and reconnects in the
  background.
- The schema is created or upgraded when the store is built, on a short-lived
  synchronous connection (see :mod:`jobq.store.postgres_schema`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..clock import SYSTEM_CLOCK, Clock, SystemClock, to_ms
from ..errors import (
    InvalidJob,
    InvalidOption,
    InvalidURL,
    JobNotFound,
    LeaseLost,
    QueueClosed,
    StoreUnavailable,
)
from ..job import RECORD_FIELDS, JobRecord
from .postgres_schema import DEFAULT_TABLE, migrate, notify_channel
from .sqlite_schema import check_table_name

log = logging.getLogger(__name__)

POOL_SIZE = 10  # most connections the pool opens
POOL_TIMEOUT = 30.0  # seconds a verb waits for a pooled connection before StoreUnavailable
CONNECT_TIMEOUT = 10  # seconds to establish one connection, unless the DSN says otherwise
LISTEN_FALLBACK_POLL = 1.0  # seconds between wake-ups while the listening connection is down
LISTEN_RETRY_MIN = 0.1  # seconds before the first attempt to re-listen
LISTEN_RETRY_MAX = 5.0  # seconds between attempts to re-listen, at most
# TCP keepalives on the listening connection, which is otherwise silent for
# long stretches: a dead peer is noticed in about idle + interval * count s.
LISTEN_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}

# "now" in every statement: the caller's time, or the database's in epoch ms.
_NOW = "COALESCE(%(now)s::bigint, (extract(epoch FROM transaction_timestamp()) * 1000)::bigint)"
_COLUMNS = ", ".join(RECORD_FIELDS)
_J_COLUMNS = ", ".join(f"j.{name}" for name in RECORD_FIELDS)
_DUE_ORDER = "priority DESC, process_at ASC, created_at ASC"
_FENCE = " AND status = 'processing' AND lease_token = %(token)s"
# Clearing a claim: a processing row's process_at holds its lease end, and the
# time it was due goes back in place.
_UNLEASE = (
    "process_at = CASE WHEN status = 'processing' THEN COALESCE(scheduled_at, process_at)"
    " ELSE process_at END, lease_token = NULL, lease_owner = NULL, scheduled_at = NULL"
)


def _describe(params: dict[str, Any]) -> str:
    """Where a DSN points, for messages (never the password)."""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


def _no_nul(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters; an error message keeps the rest."""
    return text.replace("\x00", "\ufffd")


class PostgresStore:
    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        table: str = DEFAULT_TABLE,
        pool_size: int = POOL_SIZE,
        pool_timeout: float = POOL_TIMEOUT,
    ) -> None:
        self.table = check_table_name(table)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InvalidOption(f"pool_size must be an int >= 1, not {pool_size!r}")
        if isinstance(pool_timeout, bool) or not isinstance(pool_timeout, (int, float)) or pool_timeout <= 0:
            raise InvalidOption(f"pool_timeout must be a positive number of seconds, not {pool_timeout!r}")
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise InvalidURL(f"not a PostgreSQL connection string: {str(exc).strip()}") from None
        extra = {} if "connect_timeout" in params else {"connect_timeout": CONNECT_TIMEOUT}
        self.dsn = make_conninfo(dsn, **extra)
        self.where = _describe(params)
        self.channel = notify_channel(self.table)
        self.pool_size = pool_size
        self.pool_timeout = float(pool_timeout)
        self._clock: Clock = SYSTEM_CLOCK
        self._db_clock = True
        self._closed = False
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pool_lock: asyncio.Lock | None = None
        self._changed: asyncio.Event | None = None
        self._listen_ready: asyncio.Event | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = False
        self.listener_pid: int | None = None
        """Server process id of the listening connection while it is up."""
        self._sql: dict[str, str] = {}
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                migrate(conn, self.table)
                self._ident = sql.Identifier(self.table).as_string(conn)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot open PostgreSQL at {self.where}: {exc}".strip()) from None

    # -- the clock -----------------------------------------------------------

    def use_clock(self, clock: Clock) -> None:
        """Called by :class:`~jobq.queue.Queue`: the system clock means "use the
        database's clock"; any other clock's times are stored as given."""
        self._clock = clock
        self._db_clock = isinstance(clock, SystemClock)

    def _now(self, now_ms: int) -> int | None:
        return None if self._db_clock else now_ms

    def _caller_now(self) -> int:
        """The caller's "now", for verbs that are given only an absolute time."""
        return to_ms(self._clock.now())

    # -- plumbing --------------------------------------------------------------

    def _q(self, key: str, text: str) -> str:
        """``text`` with ``{t}`` as the quoted table and ``{now}`` as the time
        expression, built once per key."""
        query = self._sql.get(key)
        if query is None:
            query = self._sql[key] = text.replace("{t}", self._ident).replace("{now}", _NOW)
        return query

    async def _get_pool(self) -> AsyncConnectionPool[Any]:
        if self._closed:
            raise QueueClosed()
        if self._pool is not None:
            return self._pool
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            if self._pool is None:
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self.dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=self.pool_timeout,
                    kwargs={"autocommit": True},
                    name=f"jobq-{self.table}",
                    open=False,
                )
                await pool.open()
                self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = await self._get_pool()
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise StoreUnavailable(
                f"no connection to PostgreSQL at {self.where} within {self.pool_timeout:g} s"
            ) from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.where}: {exc}".strip()) from None

    async def _fetchall(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        async with self._conn() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def _notify(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    @staticmethod
    def _records(rows: list[tuple[Any, ...]]) -> list[JobRecord]:
        return [JobRecord(*row) for row in rows]

    @staticmethod
    def _filters(queues: Sequence[str] | None, exclude_types: Collection[str] = ()) -> tuple[str, str]:
        """SQL for the optional filters, and a key naming the variant."""
        where, key = "", ""
        if queues is not None:
            where += " AND queue = ANY(%(queues)s::text[])"
            key += "q"
        if exclude_types:
            where += " AND NOT (type = ANY(%(exclude)s::text[]))"
            key += "x"
        return where, key

    async def _get(self, conn: psycopg.AsyncConnection[Any], job_id: str) -> JobRecord | None:
        query = self._q("get", f"SELECT {_COLUMNS} FROM {{t}} WHERE id = %(id)s")
        cur = await conn.execute(query, {"id": job_id})
        row = await cur.fetchone()
        return None if row is None else JobRecord(*row)

    async def _missing(self, conn: psycopg.AsyncConnection[Any], job_id: str) -> Exception:
        """Why a fenced or unfenced update touched no row."""
        record = await self._get(conn, job_id)
        if record is None:
            return JobNotFound(job_id)
        return LeaseLost(job_id, f"the job is now {record.status}")

    # -- the Store protocol -----------------------------------------------------

    async def insert(self, records: Sequence[JobRecord]) -> None:
        """Stores the jobs in one transaction. On the database clock, the
        database's "now" replaces the caller's: each record's ``created_at``
        and ``process_at`` are rewritten in place to the times stored."""
        query = self._q(
            "insert",
            f"INSERT INTO {{t}} ({_COLUMNS}) VALUES ({', '.join(f'%({f})s' for f in RECORD_FIELDS)})",
        )
        # The notification goes out at commit; the same statement reads the
        # transaction's time.
        stamp = self._q("insert_stamp", "SELECT pg_notify(%(channel)s, ''), {now}")
        try:
            async with self._conn() as conn, conn.transaction():
                cur = await conn.execute(stamp, {"channel": self.channel, "now": None})
                row = await cur.fetchone()
                assert row is not None
                if self._db_clock:
                    db_now = int(row[1])
                    for record in records:
                        record.process_at = db_now + (record.process_at - record.created_at)
                        record.created_at = db_now
                async with conn.cursor() as cur:
                    await cur.executemany(query, [{f: getattr(r, f) for f in RECORD_FIELDS} for r in records])
        except psycopg.DataError as exc:
            raise InvalidJob(f"PostgreSQL cannot store this job: {exc}") from None

    async def claim(
        self,
        *,
        limit: int,
        now_ms: int,
        lease_until_ms: int,
        token: str,
        owner: str,
        queues: Sequence[str] | None = None,
        exclude_types: Collection[str] = (),
    ) -> list[JobRecord]:
        where, key = self._filters(queues, exclude_types)
        query = self._q(
            "claim" + key,
            f"WITH picked AS (SELECT id FROM {{t}} WHERE status = 'pending' AND process_at <= {{now}}{where}"
            f" ORDER BY {_DUE_ORDER} LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
            f" UPDATE {{t}} AS j SET status = 'processing', scheduled_at = j.process_at,"
            f" process_at = {{now}} + %(lease)s::bigint, lease_token = %(token)s,"
            f" lease_owner = %(owner)s, started_at = {{now}}"
            f" FROM picked WHERE j.id = picked.id RETURNING {_J_COLUMNS}",
        )
        params = {
            "now": self._now(now_ms),
            "lease": lease_until_ms - now_ms,
            "token": token,
            "owner": owner,
            "limit": limit,
            "queues": list(queues) if queues is not None else None,
            "exclude": list(exclude_types),
        }
        records = self._records(await self._fetchall(query, params))
        # RETURNING gives no order; hand the batch out in dequeue order.
        records.sort(key=lambda r: (-r.priority, r.scheduled_at or 0, r.created_at))
        return records

    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        where, key = self._filters(queues)
        query = self._q(
            "peek" + key,
            f"SELECT {_COLUMNS} FROM {{t}} WHERE status = 'pending' AND process_at <= {{now}}{where}"
            f" ORDER BY {_DUE_ORDER} LIMIT 1",
        )
        params = {"now": self._now(now_ms), "queues": list(queues) if queues is not None else None}
        rows = await self._fetchall(query, params)
        return JobRecord(*rows[0]) if rows else None

    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        where, key = self._filters(queues)
        query = self._q(
            "count_ready" + key,
            f"SELECT count(*) FROM {{t}} WHERE status = 'pending' AND process_at <= {{now}}{where}",
        )
        params = {"now": self._now(now_ms), "queues": list(queues) if queues is not None else None}
        return int((await self._fetchall(query, params))[0][0])

    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        where, key = self._filters(queues)
        query = self._q(
            "next_due" + key,
            f"SELECT min(process_at), {{now}} FROM {{t}} WHERE status = 'pending'{where}",
        )
        caller_now = self._caller_now()
        params = {"now": self._now(caller_now), "queues": list(queues) if queues is not None else None}
        due, db_now = (await self._fetchall(query, params))[0]
        if due is None:
            return None
        # On the database clock, report the due time on the caller's clock.
        return int(due) - int(db_now) + caller_now if self._db_clock else int(due)

    async def get(self, job_id: str) -> JobRecord | None:
        async with self._conn() as conn:
            return await self._get(conn, job_id)

    async def complete(self, job_id: str, *, token: str | None, result: str | None, now_ms: int) -> None:
        fence = "" if token is None else _FENCE
        query = self._q(
            "complete" + ("f" if fence else ""),
            f"UPDATE {{t}} SET {_UNLEASE}, status = 'completed', completed_at = {{now}}, result = %(result)s"
            f" WHERE id = %(id)s{fence}",
        )
        params = {"now": self._now(now_ms), "result": result, "id": job_id, "token": token}
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(query, params)
            if cur.rowcount == 0:
                raise await self._missing(conn, job_id)

    async def fail(
        self, job_id: str, *, token: str | None, error: str, retry_at_ms: int | None, now_ms: int
    ) -> JobRecord:
        fence = "" if token is None else _FENCE
        retry = "(%(retry_in)s::bigint IS NOT NULL AND attempts + 1 < max_attempts)"
        query = self._q(
            "fail" + ("f" if fence else ""),
            f"UPDATE {{t}} SET"
            f" process_at = CASE WHEN {retry} THEN {{now}} + %(retry_in)s::bigint"
            f" WHEN status = 'processing' THEN COALESCE(scheduled_at, process_at) ELSE process_at END,"
            f" status = CASE WHEN {retry} THEN 'pending' ELSE 'failed' END,"
            f" failed_at = CASE WHEN {retry} THEN failed_at ELSE {{now}} END,"
            f" lease_token = NULL, lease_owner = NULL, scheduled_at = NULL,"
            f" attempts = attempts + 1, error = %(error)s"
            f" WHERE id = %(id)s AND status <> 'completed'{fence} RETURNING {_COLUMNS}",
        )
        params = {
            "now": self._now(now_ms),
            "retry_in": None if retry_at_ms is None else retry_at_ms - now_ms,
            "error": _no_nul(error),
            "id": job_id,
            "token": token,
        }
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
            if row is not None:
                record = JobRecord(*row)
                if record.status == "pending":
                    await self._notify(conn)
                return record
            current = await self._get(conn, job_id)
            if current is not None and token is None:
                return current  # a completed job stays completed
            raise await self._missing(conn, job_id)

    async def release(self, job_id: str, *, token: str, process_at_ms: int | None, now_ms: int) -> None:
        query = self._q(
            "release",
            "UPDATE {t} SET process_at = COALESCE({now} + %(due_in)s::bigint, scheduled_at, process_at),"
            " status = 'pending', lease_token = NULL, lease_owner = NULL, scheduled_at = NULL"
            " WHERE id = %(id)s AND status = 'processing' AND lease_token = %(token)s",
        )
        params = {
            "now": self._now(now_ms),
            "due_in": None if process_at_ms is None else process_at_ms - now_ms,
            "id": job_id,
            "token": token,
        }
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(query, params)
            if cur.rowcount == 0:
                raise await self._missing(conn, job_id)
            await self._notify(conn)

    async def extend_leases(self, leases: Sequence[tuple[str, str]], *, until_ms: int) -> set[str]:
        if not leases:
            return set()
        query = self._q(
            "extend",
            "UPDATE {t} AS j SET process_at = {now} + %(lease)s::bigint"
            " FROM unnest(%(ids)s::text[], %(tokens)s::text[]) AS l(id, token)"
            " WHERE j.id = l.id AND j.status = 'processing' AND j.lease_token = l.token RETURNING j.id",
        )
        caller_now = self._caller_now()
        params = {
            "now": self._now(caller_now),
            "lease": until_ms - caller_now,
            "ids": [job_id for job_id, _ in leases],
            "tokens": [token for _, token in leases],
        }
        kept = {row[0] for row in await self._fetchall(query, params)}
        return {job_id for job_id, _ in leases} - kept

    async def rescue_expired(self, *, now_ms: int, max_lost: int, error: str) -> list[JobRecord]:
        again = "(j.attempts + 1 < j.max_attempts AND j.lost_count + 1 < %(max_lost)s)"
        query = self._q(
            "rescue",
            f"WITH expired AS (SELECT id FROM {{t}} WHERE status = 'processing' AND process_at <= {{now}}"
            f" FOR UPDATE SKIP LOCKED)"
            f" UPDATE {{t}} AS j SET"
            f" status = CASE WHEN {again} THEN 'pending' ELSE 'failed' END,"
            f" failed_at = CASE WHEN {again} THEN j.failed_at ELSE {{now}} END,"
            f" process_at = CASE WHEN {again} THEN {{now}} ELSE COALESCE(j.scheduled_at, j.process_at) END,"
            f" error = replace(%(error)s, %(owner_field)s, COALESCE(j.lease_owner, 'unknown')),"
            f" attempts = j.attempts + 1, lost_count = j.lost_count + 1,"
            f" lease_token = NULL, lease_owner = NULL, scheduled_at = NULL"
            f" FROM expired WHERE j.id = expired.id RETURNING {_J_COLUMNS}",
        )
        params = {
            "now": self._now(now_ms),
            "max_lost": max_lost,
            "error": _no_nul(error),
            "owner_field": "{owner}",
        }
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(query, params)
            records = self._records(await cur.fetchall())
            if any(r.status == "pending" for r in records):
                await self._notify(conn)
        return records

    async def remove(self, job_id: str) -> bool:
        query = self._q("remove", "DELETE FROM {t} WHERE id = %(id)s")
        async with self._conn() as conn:
            cur = await conn.execute(query, {"id": job_id})
            return cur.rowcount > 0

    async def clear(self) -> None:
        async with self._conn() as conn:
            await conn.execute(self._q("clear", "DELETE FROM {t}"))

    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        if not statuses:
            return 0
        params: dict[str, Any] = {"statuses": list(statuses)}
        if before_ms is None:
            query = self._q("delete_terminal", "DELETE FROM {t} WHERE status = ANY(%(statuses)s::text[])")
        else:
            query = self._q(
                "delete_terminal_before",
                "DELETE FROM {t} WHERE status = ANY(%(statuses)s::text[])"
                " AND COALESCE(completed_at, failed_at, created_at) < {now} + %(before_in)s::bigint",
            )
            caller_now = self._caller_now()
            params.update(now=self._now(caller_now), before_in=before_ms - caller_now)
        async with self._conn() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount

    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        query = self._q(
            "count_by_status",
            "SELECT CASE WHEN status = 'pending' AND process_at > {now} THEN 'delayed' ELSE status END"
            " AS s, count(*) FROM {t} GROUP BY s",
        )
        rows = await self._fetchall(query, {"now": self._now(now_ms)})
        return {status: int(count) for status, count in rows}

    # -- wake-ups ----------------------------------------------------------------

    async def _listen(self) -> None:
        """Keeps a connection listening on the channel, reconnecting with
        backoff whenever it drops; each notification sets ``_changed``."""
        assert self._changed is not None and self._listen_ready is not None
        pause = LISTEN_RETRY_MIN
        first = True
        while not self._closed:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conninfo = make_conninfo(self.dsn, **LISTEN_KEEPALIVES)
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                self._listening = True
                self.listener_pid = conn.info.backend_pid
                self._listen_ready.set()
                if not first:
                    self._changed.set()  # notifications may have been missed meanwhile
                first = False
                pause = LISTEN_RETRY_MIN
                async for _ in conn.notifies():
                    self._changed.set()
            except psycopg.Error as exc:
                if not self._closed:
                    log.warning("jobq: listening on PostgreSQL at %s failed (%s); polling", self.where, exc)
            finally:
                was_listening, self._listening, self.listener_pid = self._listening, False, None
                self._listen_ready.set()
                if was_listening:
                    self._changed.set()  # waiters go back to check, then poll
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            if self._closed:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, LISTEN_RETRY_MAX)

    async def _start_listening(self, timeout: float) -> None:
        if self._listener is not None:
            return
        self._changed = asyncio.Event()
        self._listen_ready = asyncio.Event()
        self._listener = asyncio.get_running_loop().create_task(self._listen(), name="jobq-pg-listen")
        # The first wait starts listening before it waits, so a change made
        # right after this call is not missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listen_ready.wait(), timeout)

    @property
    def listening(self) -> bool:
        """Whether wake-ups currently come from LISTEN (else from polling)."""
        return self._listening

    async def wait_for_change(self, timeout: float) -> None:
        """Returns when a notification arrives on the table's channel, or
        after ``timeout`` seconds (at most :data:`LISTEN_FALLBACK_POLL` while
        the listening connection is down)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._start_listening(timeout)
        changed = self._changed
        assert changed is not None
        if changed.is_set():
            changed.clear()
            return
        remaining = deadline - loop.time()
        if not self._listening:
            remaining = min(remaining, LISTEN_FALLBACK_POLL)
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            return
        changed.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._changed is not None:
            self._changed.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pool is not None:
            await self._pool.close()

"""The PostgreSQL backend: one table shared by workers on many machines.

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
- The plumbing lives beside: the pool and the retries through outages in
  :mod:`.resilience`, wake-ups (``LISTEN``) in :mod:`.listen`, the schema
  (created or upgraded when the store is built, on a short-lived synchronous
  connection) in :mod:`.schema`, statement builders in :mod:`.sql`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ... import keylimits
from ...clock import SYSTEM_CLOCK, Clock, SystemClock, to_ms
from ...errors import (
    InvalidJob,
    InvalidOption,
    InvalidURL,
    JobNotFound,
    JobqError,
    LeaseLost,
    NotRetryable,
    StoreUnavailable,
)
from ...job import RECORD_FIELDS, JobRecord
from ...transitions import Transition
from ..base import ClaimRequest, Settled, dequeue_order, settle_then_claim
from ..sql import DUE_ORDER, check_table_name, delayed, expired_query, public_status, ready
from .listen import Listener
from .resilience import CONNECT_TIMEOUT, POOL_SIZE, POOL_TIMEOUT, Connections, describe, resilient, retried
from .schema import DEFAULT_TABLE, LATEST_VERSION, migrate, notify_channel, starts_table
from .sql import (
    COLUMNS,
    FENCE,
    J_COLUMNS,
    NOW,
    claim_ctes,
    insert_many_params,
    insert_many_query,
    settle_and_claim_query,
    settle_batch_params,
    settle_query,
)

LIMITS_LOCK_SPACE = 0x6A6F6271  # "jobq": advisory locks serialising per-key limited claims, per table
UNIQUE_INSERT_TRIES = 5  # a unique key whose holder keeps finishing mid-insert: attempts before giving up
#: Cron schedules' last slots (epoch ms), per job table; see ``claim_cron_slot``.
CRON_TABLE = (
    "CREATE TABLE IF NOT EXISTS jobq_cron (tbl TEXT NOT NULL, name TEXT NOT NULL,"
    " last_slot BIGINT NOT NULL, PRIMARY KEY (tbl, name))"
)
CRON_LOCK_KEY = 0x6A6F6271_0002  # advisory lock serialising the creation of jobq_cron

def _repeatable(transitions: Sequence[Transition]) -> bool:
    """Whether a batch of transitions may be written again after a lost
    reply: each is fenced by its claim (a repeat meets ``LeaseLost`` and
    changes nothing) or an unfenced completion (a repeat writes the same).
    A compare-and-set on a read is not: its caller reads and decides again."""
    return all(t.token is not None or (t.status == "completed" and not t.fenced) for t in transitions)


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
        self.where = describe(params)
        self.channel = notify_channel(self.table)
        self.pool_size = pool_size
        self.pool_timeout = float(pool_timeout)
        self._clock: Clock = SYSTEM_CLOCK
        self._db_clock = True
        self._sql: dict[Any, str] = {}  # query texts by key, each built once
        self._cron_ready = False  # jobq_cron exists (created on first claim_cron_slot)
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                self.schema_found = migrate(conn, self.table)
                """The schema version found on open (``jobq migrate`` reports it)."""
                self.schema_version = LATEST_VERSION
                self._ident = sql.Identifier(self.table).as_string(conn)
                # The schema the table lives in: transactional enqueues run on
                # the application's connection, whose search_path may differ.
                row = conn.execute("SELECT current_schema()").fetchone()
                schema = row[0] if row and row[0] else "public"
                self._qualified = sql.Identifier(schema, self.table).as_string(conn)
                self.channel = notify_channel(self.table, schema)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot open PostgreSQL at {self.where}: {exc}".strip()) from None
        self.connections = Connections(
            self.dsn, where=self.where, name=f"jobq-{self.table}", size=pool_size, timeout=self.pool_timeout
        )
        self.listener = Listener(self.dsn, self.channel, where=self.where)

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

    def _q(self, key: Any, text: str | Callable[[], str]) -> str:
        """``text`` (or what it returns) with ``{t}`` as the quoted table and
        ``{now}`` as the time expression, built once per key."""
        query = self._sql.get(key)
        if query is None:
            template = text if isinstance(text, str) else text()
            query = self._sql[key] = template.replace("{t}", self._ident).replace("{now}", NOW)
        return query
    async def _settle_insert(
        self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, None]:
        """A repeated insert that meets its own ids: the first attempt committed."""
        if not isinstance(exc, psycopg.errors.UniqueViolation):
            return False, None
        records: Sequence[JobRecord] = args[0] if args else kwargs["records"]
        query = self._q("count_ids", "SELECT count(*) FROM {t} WHERE id = ANY(%(ids)s::text[])")
        rows = await self.connections.fetchall(query, {"ids": [r.id for r in records]})
        return int(rows[0][0]) == len(records), None

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
        query = self._q("get", f"SELECT {COLUMNS} FROM {{t}} WHERE id = %(id)s")
        cur = await conn.execute(query, {"id": job_id})
        row = await cur.fetchone()
        return None if row is None else JobRecord(*row)

    async def _missing(self, conn: psycopg.AsyncConnection[Any], job_id: str) -> JobqError:
        """Why a fenced or unfenced update touched no row."""
        record = await self._get(conn, job_id)
        if record is None:
            return JobNotFound(job_id)
        return LeaseLost(job_id, f"the job is now {record.status}")

    # -- the Store protocol -----------------------------------------------------

    @resilient(settle="_settle_insert")
    async def insert(self, records: Sequence[JobRecord]) -> None:
        """Stores the jobs in one statement, so one round trip and one
        transaction (the connection is in autocommit). On the database clock,
        the database's "now" replaces the caller's: each record's
        ``created_at`` and ``process_at`` are rewritten in place to the times
        stored."""
        try:
            if len(records) == 1:
                await self._insert_one(records[0])
            else:
                await self._insert_many(records)
        except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
            raise InvalidJob(f"PostgreSQL cannot store this job: {exc}") from None

    async def _insert_many(self, records: Sequence[JobRecord]) -> None:
        """Many jobs as one ``INSERT ... SELECT FROM unnest(...)`` with an
        array per column: one round trip and one short statement whatever the
        count, where ``executemany`` sends a statement per row. The wake-up
        and the time stamp come from a CTE, as in :meth:`_insert_one`."""
        constant, params = insert_many_params(records, db_clock=self._db_clock)
        params.update(jobq_channel=self.channel, now=None)
        query = self._q(("insert_many", constant), lambda: insert_many_query(constant))
        async with self.connections.connection() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        assert row is not None
        self._stamp(records, int(row[0]))

    async def _insert_one(self, record: JobRecord) -> None:
        """One job in one statement, so one round trip (the connection is in
        autocommit): the wake-up and the time stamp of :meth:`_announce` come
        from a CTE the row's times read, and the notification is sent when
        the statement commits."""
        values = []
        for f in RECORD_FIELDS:
            if f == "created_at":
                values.append("(SELECT ms FROM n)")
            elif f == "process_at":
                values.append("(SELECT ms FROM n) + %(jobq_span)s::bigint")
            else:
                values.append(f"%({f})s")
        query = self._q(
            "insert_one",
            f"WITH n AS (SELECT {{now}} AS ms, pg_notify(%(jobq_channel)s, '') AS notified)"
            f" INSERT INTO {{t}} ({COLUMNS}) VALUES ({', '.join(values)}) RETURNING created_at",
        )
        params = {f: getattr(record, f) for f in RECORD_FIELDS}
        params.update(
            jobq_span=record.process_at - record.created_at,
            jobq_channel=self.channel,
            now=None if self._db_clock else record.created_at,
        )
        async with self.connections.connection() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        assert row is not None
        self._stamp([record], int(row[0]))

    @resilient()
    async def claim(self, request: ClaimRequest) -> list[JobRecord]:
        if request.limits:
            return await self._claim_limited(request)
        query, params = self._claim_query(request)
        return self._claimed(await self.connections.fetchall(query, params))

    def _claim_query(self, request: ClaimRequest) -> tuple[str, dict[str, Any]]:
        r = request
        where, key = self._filters(r.queues, r.exclude_types)
        query = self._q("claim" + key, lambda: f"WITH {claim_ctes(where)} SELECT * FROM claimed")
        params = {
            "now": self._now(r.now_ms),
            "lease": r.lease_until_ms - r.now_ms,
            "token": r.token,
            "owner": r.owner,
            "limit": r.limit,
            "queues": list(r.queues) if r.queues is not None else None,
            "exclude": list(r.exclude_types),
        }
        return query, params

    def _claimed(self, rows: list[tuple[Any, ...]]) -> list[JobRecord]:
        records = self._records(rows)
        # RETURNING gives no order; hand the batch out in dequeue order.
        records.sort(key=dequeue_order)
        return records

    async def settle_and_claim(
        self, transitions: Sequence[Transition], request: ClaimRequest
    ) -> tuple[list[Settled], list[JobRecord]]:
        """One statement when there are transitions and no per-key limits:
        one round trip where a transaction of two statements takes four.
        Retried whole after a transient error when every transition is
        fenced by its claim (see :func:`_resilient`: a retry after a lost
        reply reports ``LeaseLost`` for the jobs the first attempt settled,
        and that attempt's claim expires)."""
        if transitions and not request.limits:
            return await self._settle_and_claim(transitions=transitions, request=request)
        return await settle_then_claim(self, transitions, request)

    @resilient(retry_if=lambda kwargs: _repeatable(kwargs["transitions"]))
    async def _settle_and_claim(
        self, *, transitions: Sequence[Transition], request: ClaimRequest
    ) -> tuple[list[Settled], list[JobRecord]]:
        query, params = self._claim_query(request)
        where, key = self._filters(request.queues, request.exclude_types)
        combined = self._q("settle_and_claim" + key, lambda: settle_and_claim_query(where, "j.id"))
        params.update(settle_batch_params(transitions))
        async with self.connections.connection() as conn:
            cur = await conn.execute(combined, params)
            rows = await cur.fetchall()
            done = {row[0] for row in rows if row[0] is not None}
            settled: list[Settled] = [
                None if t.job_id in done else await self._missing(conn, t.job_id) for t in transitions
            ]
            if any(t.wakes_workers and t.job_id in done for t in transitions):
                await self._notify(conn)
        return settled, self._claimed([row[1:] for row in rows if row[0] is None])

    @resilient()
    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        where, key = self._filters(queues)
        query = self._q(
            "peek" + key,
            f"SELECT {COLUMNS} FROM {{t}} WHERE {ready('{now}')}{where}"
            f" ORDER BY {DUE_ORDER} LIMIT 1",
        )
        params = {"now": self._now(now_ms), "queues": list(queues) if queues is not None else None}
        rows = await self.connections.fetchall(query, params)
        return JobRecord(*rows[0]) if rows else None

    @resilient()
    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        where, key = self._filters(queues)
        query = self._q(
            "count_ready" + key,
            f"SELECT count(*) FROM {{t}} WHERE {ready('{now}')}{where}",
        )
        params = {"now": self._now(now_ms), "queues": list(queues) if queues is not None else None}
        return int((await self.connections.fetchall(query, params))[0][0])

    @resilient()
    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        where, key = self._filters(queues)
        query = self._q(
            "next_due" + key,
            f"SELECT min(process_at), {{now}} FROM {{t}} WHERE status = 'pending'{where}",
        )
        caller_now = self._caller_now()
        params = {"now": self._now(caller_now), "queues": list(queues) if queues is not None else None}
        due, db_now = (await self.connections.fetchall(query, params))[0]
        if due is None:
            return None
        # On the database clock, report the due time on the caller's clock.
        return int(due) - int(db_now) + caller_now if self._db_clock else int(due)

    @resilient()
    async def get(self, job_id: str) -> JobRecord | None:
        async with self.connections.connection() as conn:
            return await self._get(conn, job_id)

    async def settle(
        self, transitions: Sequence[Transition], *, now_ms: int, returning: bool = False
    ) -> list[Settled]:
        if not transitions:
            return []
        return await self._settle(transitions=transitions, now_ms=now_ms, returning=returning)

    @resilient(retry_if=lambda kwargs: _repeatable(kwargs["transitions"]))
    async def _settle(
        self, *, transitions: Sequence[Transition], now_ms: int, returning: bool
    ) -> list[Settled]:
        """One statement joined to the batch (``unnest``); in a transaction
        with the notification when a job waits to run again. After a reply
        lost mid-outage the retried batch reports ``LeaseLost`` for jobs its
        first attempt settled: they are settled all the same."""
        query = self._q(("settle", returning), lambda: settle_query(f"j.id, {J_COLUMNS}" if returning else "j.id"))
        params = {"now": self._now(now_ms), **settle_batch_params(transitions)}
        wakes = any(t.wakes_workers for t in transitions)
        async with self.connections.connection() as conn, (conn.transaction() if wakes else contextlib.nullcontext()):
            cur = await conn.execute(query, params)
            done = {row[0]: row[1:] for row in await cur.fetchall()}
            settled: list[Settled] = []
            for t in transitions:
                if t.job_id not in done:
                    settled.append(await self._missing(conn, t.job_id))
                else:
                    settled.append(JobRecord(*done[t.job_id]) if returning else None)
            if wakes and any(t.wakes_workers and t.job_id in done for t in transitions):
                await self._notify(conn)
        if retried():
            await self._settle_retried(transitions, settled)
        return settled

    async def _settle_retried(self, transitions: Sequence[Transition], settled: list[Settled]) -> None:
        """After a retry, a fenced completion that finds its job completed was
        written by the first attempt, whose reply was lost (or, after a lost
        lease, another worker finished it; either way the job is done)."""
        for i, (t, outcome) in enumerate(zip(transitions, settled, strict=True)):
            if isinstance(outcome, LeaseLost) and t.status == "completed":
                record = await self.get(t.job_id)
                if record is not None and record.status == "completed":
                    settled[i] = None

    @resilient()
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
        kept = {row[0] for row in await self.connections.fetchall(query, params)}
        return {job_id for job_id, _ in leases} - kept

    @resilient()
    async def expired(self, *, now_ms: int, limit: int) -> list[JobRecord]:
        query = self._q("expired", expired_query("{t}", "{now}", "%(limit)s", COLUMNS))
        return self._records(await self.connections.fetchall(query, {"now": self._now(now_ms), "limit": limit}))

    async def claim_cron_slot(self, name: str, slot_ms: int, job: JobRecord) -> bool:
        """One transaction: an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``
        moves the schedule's last slot forward only if it is older (the row
        lock makes racing processes queue up and re-check), then the job is
        inserted and workers notified at commit. The ``jobq_cron`` table is
        created on first use (additively, beside the versioned job table)."""
        upsert = (
            "INSERT INTO jobq_cron (tbl, name, last_slot) VALUES (%(tbl)s, %(name)s, %(slot)s)"
            " ON CONFLICT (tbl, name) DO UPDATE SET last_slot = EXCLUDED.last_slot"
            " WHERE jobq_cron.last_slot < EXCLUDED.last_slot RETURNING (xmax = 0) AS inserted"
        )
        insert = self._q(
            "insert",
            f"INSERT INTO {{t}} ({COLUMNS}) VALUES ({', '.join(f'%({f})s' for f in RECORD_FIELDS)})",
        )
        try:
            async with self.connections.connection() as conn, conn.transaction():
                if not self._cron_ready:
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CRON_LOCK_KEY,))
                    await conn.execute(CRON_TABLE)
                cur = await conn.execute(upsert, {"tbl": self.table, "name": name, "slot": slot_ms})
                found = await cur.fetchone()
                # No row: the stored slot is not older. inserted: a new schedule.
                won = found is not None and not found[0]
                if won:
                    await self._announce(conn, [job])
                    await conn.execute(insert, {f: getattr(job, f) for f in RECORD_FIELDS})
        except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
            raise InvalidJob(f"PostgreSQL cannot store this job: {exc}") from None
        self._cron_ready = True
        return won

    @resilient()
    async def remove(self, job_id: str) -> bool:
        query = self._q("remove", "DELETE FROM {t} WHERE id = %(id)s")
        async with self.connections.connection() as conn:
            cur = await conn.execute(query, {"id": job_id})
            return cur.rowcount > 0

    @resilient()
    async def clear(self) -> None:
        async with self.connections.connection() as conn:
            await conn.execute(self._q("clear", "DELETE FROM {t}"))

    @resilient()
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
                " AND COALESCE(completed_at, failed_at, cancelled_at, created_at) < {now} + %(before_in)s::bigint",
            )
            caller_now = self._caller_now()
            params.update(now=self._now(caller_now), before_in=before_ms - caller_now)
        async with self.connections.connection() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount

    @resilient()
    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        query = self._q(
            "count_by_status",
            f"SELECT {public_status('{now}')}"
            " AS s, count(*) FROM {t} GROUP BY s",
        )
        rows = await self.connections.fetchall(query, {"now": self._now(now_ms)})
        return {status: int(count) for status, count in rows}

    # -- per-key limits ------------------------------------------------------------

    async def _claim_limited(self, request: ClaimRequest) -> list[JobRecord]:
        limit, now_ms, limits = request.limit, request.now_ms, request.limits
        lease_until_ms, token, owner = request.lease_until_ms, request.token, request.owner
        queues, exclude_types = request.queues, request.exclude_types
        where, key = self._filters(queues, exclude_types)
        parts: list[str] = []
        params: dict[str, Any] = {
            "now": self._now(now_ms),
            "lease": lease_until_ms - now_ms,
            "token": token,
            "owner": owner,
            "per_key": limit,
            "cap": keylimits.candidate_cap(limit),
            "queues": list(queues) if queues is not None else None,
            "exclude": list(exclude_types),
            "lock_space": LIMITS_LOCK_SPACE,
            "tbl": self.table,
        }
        for i, lim in enumerate(limits):
            applies = f"type = %(type{i})s" if lim.type is not None else "TRUE"
            parts.append(f"CASE WHEN {applies} THEN jobq_json_field(metadata, %(field{i})s) END")
            params[f"type{i}"], params[f"field{i}"] = lim.type, lim.key
            key += "t" if lim.type is not None else "a"
        # The first waiting jobs of each key combination, round-robin.
        candidates_sql = self._q(
            "claim_limited" + key,
            f"SELECT {COLUMNS} FROM (SELECT {COLUMNS}, row_number() OVER"
            f" (PARTITION BY {', '.join(parts)} ORDER BY {DUE_ORDER}) AS jobq_rank"
            f" FROM {{t}} WHERE {ready('{now}')}{where}) AS ranked"
            f" WHERE jobq_rank <= %(per_key)s ORDER BY jobq_rank, {DUE_ORDER} LIMIT %(cap)s",
        )
        take = self._q(
            "claim_limited_take",
            f"UPDATE {{t}} AS j SET status = 'processing', scheduled_at = j.process_at,"
            f" process_at = {{now}} + %(lease)s::bigint, lease_token = %(token)s,"
            f" lease_owner = %(owner)s, started_at = {{now}}"
            f" WHERE j.id = ANY(%(ids)s::text[]) AND j.status = 'pending' RETURNING {J_COLUMNS}",
        )
        starts = sql.Identifier(starts_table(self.table)).as_string(None)
        rated = keylimits.rate_limits(limits)
        async with self.connections.connection() as conn, conn.transaction():
            # Limited claims take turns, so each counts what the others took.
            cur = await conn.execute(
                self._q("limits_lock", "SELECT pg_advisory_xact_lock(%(lock_space)s, hashtext(%(tbl)s)), {now}"),
                params,
            )
            row = await cur.fetchone()
            assert row is not None
            db_now = int(row[1])
            cur = await conn.execute(candidates_sql, params)
            candidates = self._records(await cur.fetchall())
            if not candidates:
                return []
            running: list[tuple[str, Any]] = []
            if any(lim.concurrency is not None for lim in limits):
                cur = await conn.execute(
                    self._q("limits_running", "SELECT type, metadata FROM {t} WHERE status = 'processing'"), {}
                )
                running = [(r[0], r[1]) for r in await cur.fetchall()]
            recent: list[tuple[str, str]] = []
            for lim in rated:
                await conn.execute(
                    f"DELETE FROM {starts} WHERE name = %s AND at_ms <= %s", (lim.name, db_now - lim.per_ms)
                )
                cur = await conn.execute(f"SELECT name, key FROM {starts} WHERE name = %s", (lim.name,))
                recent += [(r[0], r[1]) for r in await cur.fetchall()]
            chosen, new_starts = keylimits.choose(
                candidates, limit, limits, keylimits.usage(limits, running, recent)
            )
            if not chosen:
                return []
            cur = await conn.execute(take, {**params, "ids": [r.id for r in chosen]})
            records = self._records(await cur.fetchall())
            taken = {r.id for r in records}
            if new_starts and taken:
                async with conn.cursor() as scur:
                    await scur.executemany(
                        f"INSERT INTO {starts} (name, key, at_ms) VALUES (%s, %s, %s)",
                        [(name, k, db_now) for name, k in new_starts],
                    )
        records.sort(key=dequeue_order)
        return records

    # -- unique jobs, cancellation, progress, inspection -------------------------

    @resilient()
    async def insert_unique(self, records: Sequence[JobRecord]) -> list[JobRecord | None]:
        """:meth:`insert`, except that a record whose ``unique_key`` an
        unfinished job holds is not stored (``INSERT ... ON CONFLICT DO
        NOTHING`` on the partial unique index); its holder is read back in
        the same transaction. A conflicting insert still in flight elsewhere
        is waited for by the database, so exactly one job is stored."""
        values = ", ".join(f"%({f})s" for f in RECORD_FIELDS)
        plain = self._q("insert", f"INSERT INTO {{t}} ({COLUMNS}) VALUES ({values})")
        keyed = self._q(
            "insert_unique", f"INSERT INTO {{t}} ({COLUMNS}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING id"
        )
        holder = self._q(
            "unique_holder",
            f"SELECT {COLUMNS} FROM {{t}} WHERE unique_key = %(key)s AND status IN ('pending', 'processing')",
        )
        answer: list[JobRecord | None] = []
        try:
            async with self.connections.connection() as conn, conn.transaction():
                await self._announce(conn, records)
                for record in records:
                    fields = {f: getattr(record, f) for f in RECORD_FIELDS}
                    if record.unique_key is None:
                        await conn.execute(plain, fields)
                        answer.append(None)
                        continue
                    for _ in range(UNIQUE_INSERT_TRIES):
                        cur = await conn.execute(keyed, fields)
                        if await cur.fetchone() is not None:
                            answer.append(None)
                            break
                        cur = await conn.execute(holder, {"key": record.unique_key})
                        found = await cur.fetchone()
                        if found is not None:
                            held = JobRecord(*found)
                            # A retried call may meet its own committed insert.
                            answer.append(None if held.id == record.id else held)
                            break
                        # The holder finished between the two statements: try again.
                    else:
                        raise StoreUnavailable(f"job id {record.id!r} already exists")
        except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
            raise InvalidJob(f"PostgreSQL cannot store this job: {exc}") from None
        return answer

    @resilient()
    async def cancel(self, job_id: str, *, now_ms: int) -> tuple[bool, JobRecord]:
        lock = self._q("cancel_lock", f"SELECT {COLUMNS} FROM {{t}} WHERE id = %(id)s FOR UPDATE")
        stop = self._q(
            "cancel_stop",
            f"UPDATE {{t}} SET status = 'cancelled', cancelled_at = {{now}} WHERE id = %(id)s RETURNING {COLUMNS}",
        )
        request = self._q(
            "cancel_request",
            f"UPDATE {{t}} SET cancel_requested_at = COALESCE(cancel_requested_at, {{now}})"
            f" WHERE id = %(id)s RETURNING {COLUMNS}",
        )
        params = {"id": job_id, "now": self._now(now_ms)}
        async with self.connections.connection() as conn, conn.transaction():
            cur = await conn.execute(lock, params)
            row = await cur.fetchone()
            if row is None:
                raise JobNotFound(job_id)
            record = JobRecord(*row)
            if record.status == "pending":
                cur = await conn.execute(stop, params)
            elif record.status == "processing":
                cur = await conn.execute(request, params)
            else:
                return False, record
            after = await cur.fetchone()
            assert after is not None
            return True, JobRecord(*after)

    @resilient()
    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        query = self._q(
            "cancel_requested",
            "SELECT id FROM {t} WHERE id = ANY(%(ids)s::text[]) AND status = 'processing'"
            " AND cancel_requested_at IS NOT NULL",
        )
        return {row[0] for row in await self.connections.fetchall(query, {"ids": list(job_ids)})}

    @resilient()
    async def retry(self, job_id: str, *, now_ms: int) -> JobRecord:
        query = self._q(
            "retry",
            f"UPDATE {{t}} SET status = 'pending', attempts = 0, process_at = {{now}},"
            f" failed_at = NULL, cancelled_at = NULL, cancel_requested_at = NULL"
            f" WHERE id = %(id)s AND status IN ('failed', 'cancelled') RETURNING {COLUMNS}",
        )
        try:
            async with self.connections.connection() as conn, conn.transaction():
                cur = await conn.execute(query, {"id": job_id, "now": self._now(now_ms)})
                row = await cur.fetchone()
                if row is not None:
                    record = JobRecord(*row)
                    await self._notify(conn)
                    return record
                current = await self._get(conn, job_id)
        except psycopg.errors.UniqueViolation:
            raise NotRetryable(
                f"job {job_id!r} cannot be retried: another unfinished job holds its unique key"
            ) from None
        if current is None:
            raise JobNotFound(job_id)
        raise NotRetryable(f"job {job_id!r} is {current.status}; only failed or cancelled jobs can be retried")

    @resilient()
    async def set_progress(
        self, job_id: str, *, token: str | None, progress: float, message: str | None
    ) -> None:
        fence = "" if token is None else FENCE
        query = self._q(
            "progress" + ("f" if fence else ""),
            f"UPDATE {{t}} SET progress = %(progress)s, progress_message = %(message)s WHERE id = %(id)s{fence}",
        )
        params = {
            "progress": progress,
            "message": None if message is None else _no_nul(message),
            "id": job_id,
            "token": token,
        }
        async with self.connections.connection() as conn, conn.transaction():
            cur = await conn.execute(query, params)
            if cur.rowcount == 0:
                raise await self._missing(conn, job_id)

    @resilient()
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
        params: dict[str, Any] = {"now": self._now(now_ms), "limit": limit, "offset": offset}
        if statuses is not None:
            either: list[str] = []
            stored = sorted(set(statuses) - {"pending", "delayed"})
            if "pending" in statuses:
                either.append(f"({ready('{now}')})")
            if "delayed" in statuses:
                either.append(f"({delayed('{now}')})")
            if stored:
                either.append("status = ANY(%(statuses)s::text[])")
                params["statuses"] = stored
            clauses.append("(" + (" OR ".join(either) or "FALSE") + ")")
        if types is not None:
            clauses.append("type = ANY(%(types)s::text[])")
            params["types"] = list(types)
        if queues is not None:
            clauses.append("queue = ANY(%(queues)s::text[])")
            params["queues"] = list(queues)
        where = (" WHERE " + " AND ".join(clauses) if clauses else "").replace("{now}", NOW)
        direction = "DESC" if newest_first else "ASC"
        page = (
            f"SELECT {COLUMNS} FROM {self._ident}{where}"
            f" ORDER BY created_at {direction}, id {direction} LIMIT %(limit)s OFFSET %(offset)s"
        )
        count = f"SELECT count(*) FROM {self._ident}{where}"
        async with self.connections.connection() as conn, conn.transaction():
            cur = await conn.execute(page, params)
            records = self._records(await cur.fetchall())
            cur = await conn.execute(count, params)
            row = await cur.fetchone()
        return records, int(row[0]) if row else 0

    @resilient()
    async def summary(self, *, now_ms: int) -> list[tuple[str, str, str, int]]:
        query = self._q(
            "summary",
            f"SELECT queue, type, {public_status('{now}')}"
            " AS s, count(*) FROM {t} GROUP BY queue, type, s ORDER BY queue, type, s",
        )
        rows = await self.connections.fetchall(query, {"now": self._now(now_ms)})
        return [(q, t, st, int(n)) for q, t, st, n in rows]

    @resilient()
    async def throughput(self, *, since_ms: int) -> list[tuple[int, int, int]]:
        query = self._q(
            "throughput",
            "SELECT minute, sum(done), sum(failed) FROM ("
            "SELECT completed_at / 60000 * 60000 AS minute, 1 AS done, 0 AS failed FROM {t}"
            " WHERE status = 'completed' AND completed_at >= %(since)s"
            " UNION ALL SELECT failed_at / 60000 * 60000, 0, 1 FROM {t}"
            " WHERE status = 'failed' AND failed_at >= %(since)s) AS finished GROUP BY minute ORDER BY minute",
        )
        rows = await self.connections.fetchall(query, {"since": since_ms})
        return [(int(m), int(d), int(f)) for m, d, f in rows]

    # -- transactional enqueue ---------------------------------------------------

    async def _announce(self, conn: psycopg.AsyncConnection[Any], records: Sequence[JobRecord]) -> None:
        """Queues the wake-up notification (PostgreSQL sends it at commit) and,
        on the database clock, stamps ``records`` with the transaction's time."""
        stamp = self._q("insert_stamp", "SELECT pg_notify(%(channel)s, ''), {now}")
        cur = await conn.execute(stamp, {"channel": self.channel, "now": None})
        row = await cur.fetchone()
        assert row is not None
        self._stamp(records, int(row[1]))

    def _stamp(self, records: Sequence[JobRecord], db_now: int) -> None:
        """On the database clock, the transaction's "now" replaces the caller's."""
        if self._db_clock:
            for record in records:
                record.process_at = db_now + (record.process_at - record.created_at)
                record.created_at = db_now

    async def insert_on(self, conn: Any, records: Sequence[JobRecord]) -> None:
        """Inserts the jobs on the application's own psycopg connection
        (``psycopg.AsyncConnection`` or ``psycopg.Connection``), inside the
        transaction it has open, without committing: the jobs exist, and
        ``pg_notify`` wakes workers, only if that transaction commits. On a
        connection in autocommit mode with no transaction open, the jobs are
        inserted in a transaction of their own. The table is named with its
        schema, so the connection's ``search_path`` does not matter."""
        insert = self._sql.get("insert_on")
        if insert is None:
            insert = self._sql["insert_on"] = (
                f"INSERT INTO {self._qualified} ({COLUMNS})"
                f" VALUES ({', '.join(f'%({f})s' for f in RECORD_FIELDS)})"
            )
        stamp = self._q("insert_stamp", "SELECT pg_notify(%(channel)s, ''), {now}")
        stamp_params = {"channel": self.channel, "now": None}
        idle = psycopg.pq.TransactionStatus.IDLE
        try:
            if isinstance(conn, psycopg.AsyncConnection):
                own = conn.autocommit and conn.info.transaction_status == idle
                async with conn.transaction() if own else contextlib.nullcontext():
                    await self._announce(conn, records)
                    async with conn.cursor() as acur:
                        await acur.executemany(insert, [{f: getattr(r, f) for f in RECORD_FIELDS} for r in records])
            elif isinstance(conn, psycopg.Connection):
                own = conn.autocommit and conn.info.transaction_status == idle
                with conn.transaction() if own else contextlib.nullcontext():
                    srow = conn.execute(stamp, stamp_params).fetchone()
                    assert srow is not None
                    self._stamp(records, int(srow[1]))
                    with conn.cursor() as scur:
                        scur.executemany(insert, [{f: getattr(r, f) for f in RECORD_FIELDS} for r in records])
            else:
                raise TypeError(
                    f"connection= takes a psycopg Connection or AsyncConnection, not {type(conn).__name__}"
                )
        except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
            raise InvalidJob(f"PostgreSQL cannot store this job: {exc}") from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL (the application's connection): {exc}".strip()) from None

    # -- wake-ups ----------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether wake-ups currently come from LISTEN (else from polling)."""
        return self.listener.listening

    @property
    def listener_pid(self) -> int | None:
        """Server process id of the listening connection while it is up."""
        return self.listener.pid

    async def wait_for_change(self, timeout: float) -> bool:
        """Returns ``True`` when a notification arrives on the table's
        channel (see :meth:`.listen.Listener.wait`), ``False`` after
        ``timeout`` seconds or sooner while the listening connection is down."""
        return await self.listener.wait(timeout)

    async def close(self) -> None:
        if self.connections.closed:
            return
        self.connections.closed = True
        await self.listener.close()
        await self.connections.close()

"""The PostgreSQL backend: one table shared by workers on many machines.

- Claims take a batch of ready rows with ``FOR UPDATE SKIP LOCKED`` and move
  them to ``processing`` in the same statement, so concurrent claimers never
  wait on each other and never get the same job. The rescuer skips locked
  rows the same way.
- Leases, heartbeats, rescue and fencing are those of the SQLite backend,
  statement for statement (most statements are the text both share,
  :mod:`jobq.store.sql`): a processing row keeps its lease end in
  ``process_at`` and the time it was due in ``scheduled_at``.
- The clock: with the system clock (the default), every time that decides
  ordering, readiness or leases is the database's (``transaction_timestamp()``
  in epoch ms), so workers whose clocks disagree still agree on "now"; the
  caller's times are used only as offsets (a lease of 30 s, a retry in 5 s).
  With any other clock (:class:`~jobq.clock.FakeClock` in tests) the caller's
  times are stored as given, exactly as on SQLite. Every statement takes
  ``now`` as a parameter and reads ``COALESCE(now, <database now>)``.

This module holds the worker's verbs (:class:`~jobq.store.base.WorkerStore`);
the operators' verbs are in :mod:`.admin`, and what both stand on (opening,
the clock, shared helpers) in :mod:`.core`. The plumbing lives beside: the
pool and the retries through outages in :mod:`.resilience`, wake-ups
(``LISTEN``) in :mod:`.listen`, inserts on the application's connection in
:mod:`.transactional`, the schema (created or upgraded when the store is
built, on a short-lived synchronous connection) in :mod:`.schema`,
statements PostgreSQL alone has in :mod:`.sql`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg import sql

from ...errors import InvalidJob, LeaseLost, StoreUnavailable
from ...history import WorkerRecord
from ...job import RECORD_FIELDS, JobRecord
from ...transitions import Transition
from .. import history_sql as hq
from .. import sql as q
from ..base import ClaimRequest, Settled, claimed, settle_then_claim
from ..group import GroupCommit, Outcomes
from ..limited import limited_claim
from ..sql import COLUMNS
from . import transactional
from .admin import AdminVerbs
from .core import cannot_store, no_nul
from .resilience import resilient, retried
from .schema import starts_table
from .sql import (
    DIALECT,
    claim_ctes,
    expired_query,
    extend_query,
    insert_many_params,
    insert_many_query,
    insert_one_query,
    settle_and_claim_query,
    settle_announcing_query,
    settle_batch_params,
)

#: What a settle returns: the id of each row written, or the id then the row.
SETTLE_ID = (("j.id", "id"),)
SETTLE_RETURNING = (("j.id", "jobq_id"), *((f"j.{name}", name) for name in RECORD_FIELDS))
LIMITS_LOCK_SPACE = 0x6A6F6271  # "jobq": advisory locks serialising per-key limited claims, per table
UNIQUE_INSERT_TRIES = 5  # a unique key whose holder keeps finishing mid-insert: attempts before giving up
#: Cron schedules' last slots (epoch ms), per job table; see ``claim_cron_slot``.
CRON_TABLE = q.cron_table("BIGINT")
CRON_LOCK_KEY = 0x6A6F6271_0002  # advisory lock serialising the creation of jobq_cron


def _repeatable(transitions: Sequence[Transition]) -> bool:
    """Whether a batch of transitions may be written again after a lost
    reply: each is fenced by its claim (a repeat meets ``LeaseLost`` and
    changes nothing) or an unfenced completion (a repeat writes the same).
    A compare-and-set on a read is not: its caller reads and decides again."""
    return all(t.token is not None or (t.status == "completed" and not t.fenced) for t in transitions)


class PostgresStore(AdminVerbs):
    """A job table in PostgreSQL: a :class:`~jobq.store.base.Store`, a
    :class:`~jobq.store.base.TransactionalStore` and a
    :class:`~jobq.store.base.ClockedStore`."""

    name = "postgres"
    syncs_apart = False  # a commit returns once the server has synced it

    async def _settle_insert(
        self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, None]:
        """A repeated insert that meets its own ids: the first attempt committed."""
        if not isinstance(exc, psycopg.errors.UniqueViolation):
            return False, None
        records: Sequence[JobRecord] = args[0] if args else kwargs["records"]
        query = "SELECT count(*) FROM {t} WHERE id = ANY(%(ids)s::text[])"
        rows = await self._fetchall("count_ids", query, {"ids": [r.id for r in records]})
        return int(rows[0][0]) == len(records), None

    # -- the worker's verbs -------------------------------------------------------

    @resilient(settle="_settle_insert")
    async def insert(self, records: Sequence[JobRecord]) -> None:
        """Stores the jobs in one statement, so one round trip and one
        transaction (the connection is in autocommit). On the database clock,
        the database's "now" replaces the caller's: each record's
        ``created_at`` and ``process_at`` are rewritten in place to the times
        stored. Single jobs enqueued concurrently go in one statement
        together (:mod:`jobq.store.group`)."""
        if len(records) == 1:
            await self._inserts.submit(records[0])
        else:
            await self._insert(records)

    @functools.cached_property
    def _inserts(self) -> GroupCommit[JobRecord]:
        """Concurrent single inserts' shared statements (made on first use)."""
        return GroupCommit(self._commit_inserts)

    async def _commit_inserts(self, batch: Sequence[JobRecord]) -> Outcomes:
        """One many-row insert for the batch. A job the database refuses
        spoils the statement for all, so then each is inserted alone and
        only the refused ones fail."""
        if len(batch) > 1:
            try:
                await self._insert(batch)
                return [None] * len(batch)
            except (InvalidJob, psycopg.IntegrityError):
                pass
        outcomes: Outcomes = []
        for record in batch:
            try:
                await self._insert([record])
                outcomes.append(None)
            except Exception as exc:  # noqa: BLE001 - the caller of this record gets it
                outcomes.append(exc)
        return outcomes

    async def _insert(self, records: Sequence[JobRecord]) -> None:
        if len(records) == 1:
            # The wake-up and the time stamp come from a CTE the row's times
            # read; the notification is sent when the statement commits.
            record = records[0]
            query = self._q("insert_one", insert_one_query)
            values = {f: getattr(record, f) for f in RECORD_FIELDS}
            values.update(
                jobq_span=record.process_at - record.created_at,
                jobq_channel=self.channel,
                now=None if self._db_clock else record.created_at,
            )
        else:
            # Many jobs as one INSERT ... SELECT FROM unnest(...) with an
            # array per column: one round trip whatever the count.
            constant, values = insert_many_params(records, db_clock=self._db_clock)
            values.update(jobq_channel=self.channel, now=None)
            query = self._q(("insert_many", constant), lambda: insert_many_query(constant))
        try:
            async with self.connections.connection() as conn:
                cur = await conn.execute(query, values)
                row = await cur.fetchone()
        except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
            raise cannot_store(exc) from None
        assert row is not None
        transactional.stamp(records, int(row[0]), db_clock=self._db_clock)

    @resilient()
    async def claim(self, request: ClaimRequest) -> list[JobRecord]:
        if request.limits:
            return await self._claim_limited(request)
        query, values = self._claim_query(request)
        return claimed(await self.connections.fetchall(query, values))

    def _claim_query(self, request: ClaimRequest) -> tuple[str, dict[str, Any]]:
        where, key, values = q.claim_filters(DIALECT, request)
        prefix = q.seek_prefix(DIALECT, request.queues)
        query = self._q("claim" + key, lambda: f"WITH {claim_ctes(where, prefix)} SELECT * FROM claimed")
        values.update(q.lease_params(request), now=self._now(request.now_ms))
        return query, values

    async def _claim_limited(self, request: ClaimRequest) -> list[JobRecord]:
        where, _, values = q.claim_filters(DIALECT, request)
        values["now"] = self._now(request.now_ms)
        lock = "SELECT pg_advisory_xact_lock(%(lock_space)s, hashtext(%(tbl)s)), {now}"
        starts = sql.Identifier(starts_table(self.table)).as_string(None)
        async with self.connections.connection() as conn, conn.transaction():
            # Limited claims take turns, so each counts what the others took.
            cur = await conn.execute(
                self._q("limits_lock", lock), {"lock_space": LIMITS_LOCK_SPACE, "tbl": self.table, **values}
            )
            row = await cur.fetchone()
            assert row is not None
            steps = limited_claim(
                DIALECT, request, where=where, values=values, starts=starts, starts_now=int(row[1])
            )
            return await self._run_steps(conn, steps)

    async def settle_and_claim(
        self, transitions: Sequence[Transition], request: ClaimRequest
    ) -> tuple[list[Settled], list[JobRecord]]:
        """One statement when there are transitions and no per-key limits:
        one round trip where a transaction of two statements takes four.
        Retried whole after a transient error when every transition is
        fenced by its claim (see :func:`.resilience.resilient`): after a
        lost reply, a completion the first attempt wrote is reported written
        (not ``LeaseLost``), and that attempt's claim, unseen, expires."""
        if transitions and not request.limits:
            return await self._settle_and_claim(transitions=transitions, request=request)
        return await settle_then_claim(self, transitions, request)

    async def sync(self) -> None:
        return None

    @resilient(retry_if=lambda kwargs: _repeatable(kwargs["transitions"]))
    async def _settle_and_claim(
        self, *, transitions: Sequence[Transition], request: ClaimRequest
    ) -> tuple[list[Settled], list[JobRecord]]:
        _, values = self._claim_query(request)
        where, key, _ = q.claim_filters(DIALECT, request)
        batch, shape = settle_batch_params(transitions)
        prefix = q.seek_prefix(DIALECT, request.queues)
        combined = self._q(
            ("settle_and_claim", key, shape), lambda: settle_and_claim_query(where, shape, prefix)
        )
        values.update(batch)
        values["jobq_finish"] = self.finish_channel
        async with self.connections.connection() as conn:
            cur = await conn.execute(combined, values)
            rows = await cur.fetchall()
            done = {row[0] for row in rows if row[0] is not None}
            settled: list[Settled] = [
                None if t.job_id in done else await self._missing(conn, t.job_id) for t in transitions
            ]
            await self._announce(conn, transitions, done)
        if retried():
            await self._settle_retried(transitions, settled)
        return settled, claimed([row[1:] for row in rows if row[0] is None])

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
        batch, shape = settle_batch_params(transitions)
        query = self._q(
            ("settle", returning, shape),
            lambda: settle_announcing_query(SETTLE_RETURNING if returning else SETTLE_ID, shape),
        )
        values = {"now": self._now(now_ms), "jobq_finish": self.finish_channel, **batch}
        wakes = any(t.wakes_workers for t in transitions)
        async with (
            self.connections.connection() as conn,
            conn.transaction() if wakes else contextlib.nullcontext(),
        ):
            cur = await conn.execute(query, values)
            done = {row[0]: row[1:] for row in await cur.fetchall()}
            settled: list[Settled] = []
            for t in transitions:
                if t.job_id not in done:
                    settled.append(await self._missing(conn, t.job_id))
                else:
                    settled.append(JobRecord(*done[t.job_id]) if returning else None)
            await self._announce(conn, transitions, done)
        if retried():
            await self._settle_retried(transitions, settled, returning)
        return settled

    async def _settle_retried(
        self, transitions: Sequence[Transition], settled: list[Settled], returning: bool = False
    ) -> None:
        """After a retry, a fenced write that finds its job already as it
        would have left it was written by the first attempt, whose reply was
        lost: a completion that finds its job completed (or, after a lost
        lease, another worker finished it; either way the job is done), a
        failed attempt that finds its own error and attempts count stored,
        a cancellation that finds its job cancelled with its reason. (A
        release leaves nothing to tell it from a rescue, so it stays
        ``LeaseLost``: its job waits again either way.)"""
        for i, (t, outcome) in enumerate(zip(transitions, settled, strict=True)):
            if isinstance(outcome, LeaseLost) and t.token is not None and _tellable(t):
                record = await self.get(t.job_id)
                if record is not None and _written(t, record):
                    settled[i] = record if returning else None

    @resilient()
    async def heartbeat(self, worker: WorkerRecord, *, forget_before_ms: int) -> None:
        upsert = self._q("heartbeat", lambda: hq.heartbeat_query(DIALECT, "{workers}"))
        forget = self._q("forget_workers", lambda: hq.forget_workers_query(DIALECT, "{workers}"))
        async with self.connections.connection() as conn, conn.transaction():
            await conn.execute(upsert, worker._asdict())
            await conn.execute(forget, {"before": forget_before_ms})

    @resilient()
    async def unregister(self, worker_id: str) -> None:
        query = self._q("unregister", lambda: hq.unregister_query(DIALECT, "{workers}"))
        async with self.connections.connection() as conn:
            await conn.execute(query, {"id": worker_id})

    @resilient()
    async def extend_leases(self, leases: Sequence[tuple[str, str]], *, until_ms: int) -> set[str]:
        if not leases:
            return set()
        caller_now = self._caller_now()
        values = {
            "now": self._now(caller_now),
            "lease": until_ms - caller_now,
            "ids": [job_id for job_id, _ in leases],
            "tokens": [token for _, token in leases],
        }
        kept = {row[0] for row in await self._fetchall("extend", extend_query, values)}
        return {job_id for job_id, _ in leases} - kept

    @resilient()
    async def expired(self, *, now_ms: int, limit: int, foreign_timeout_ms: int) -> list[JobRecord]:
        """One statement: foreign claims not seen before are marked (in a
        CTE, whose writes the read does not see: a claim seen now has not
        run out), and the claims that ran out are read."""
        values = {"now": self._now(now_ms), "limit": limit, "foreign": foreign_timeout_ms}
        return self._records(await self._fetchall("expired", expired_query, values))

    @resilient()
    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        where, key, values = q.filters(DIALECT, queues)
        values["now"] = self._now(now_ms)
        prefix = q.seek_prefix(DIALECT, queues)
        rows = await self._fetchall(
            "peek" + key, lambda: q.due(DIALECT, COLUMNS, where, limit="1", prefix=prefix), values
        )
        return JobRecord(*rows[0]) if rows else None

    @resilient()
    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        where, key, values = q.filters(DIALECT, queues)
        values["now"] = self._now(now_ms)
        prefix = q.seek_prefix(DIALECT, queues)
        rows = await self._fetchall(
            "count_ready" + key, lambda: q.count_ready_query(DIALECT, where, prefix=prefix), values
        )
        return int(rows[0][0])

    @resilient()
    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        where, key, values = q.filters(DIALECT, queues)
        caller_now = self._caller_now()
        values["now"] = self._now(caller_now)
        prefix = q.seek_prefix(DIALECT, queues)
        rows = await self._fetchall("next_due" + key, lambda: q.next_due_query(DIALECT, where, prefix=prefix), values)
        due, db_now = rows[0]
        if due is None:
            return None
        # On the database clock, report the due time on the caller's clock.
        return int(due) - int(db_now) + caller_now if self._db_clock else int(due)

    @resilient()
    async def get(self, job_id: str) -> JobRecord | None:
        async with self.connections.connection() as conn:
            return await self._get(conn, job_id)

    @resilient()
    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        rows = await self._fetchall(
            "cancel_requested", lambda: q.cancel_requested_query(DIALECT), {"ids": list(job_ids)}
        )
        return {row[0] for row in rows}

    @resilient()
    async def set_progress(
        self, job_id: str, *, token: str | None, progress: float, message: str | None
    ) -> None:
        fenced = token is not None
        query = self._q(("progress", fenced), lambda: q.progress_query(DIALECT, fenced=fenced))
        values = {
            "progress": progress,
            "message": None if message is None else no_nul(message),
            "id": job_id,
            "token": token,
        }
        async with self.connections.connection() as conn, conn.transaction():
            cur = await conn.execute(query, values)
            if cur.rowcount == 0:
                raise await self._missing(conn, job_id)

    @resilient()
    async def insert_unique(self, records: Sequence[JobRecord]) -> list[JobRecord | None]:
        """:meth:`insert`, except that a record whose ``unique_key`` an
        unfinished job holds is not stored (``INSERT ... ON CONFLICT DO
        NOTHING`` on the partial unique index); its holder is read back in
        the same transaction. A conflicting insert still in flight elsewhere
        is waited for by the database, so exactly one job is stored."""
        plain = self._q("insert", lambda: q.insert_query(DIALECT))
        keyed = plain + " ON CONFLICT DO NOTHING RETURNING id"
        holder = self._q("unique_holder", lambda: q.unique_holder_query(DIALECT))
        answer: list[JobRecord | None] = []
        try:
            async with self.connections.connection() as conn, conn.transaction():
                await transactional.announce(conn, records, channel=self.channel, db_clock=self._db_clock)
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
            raise cannot_store(exc) from None
        return answer

    async def claim_cron_slot(self, name: str, slot_ms: int, job: JobRecord) -> bool:
        """One transaction: the schedule's last slot moves forward only if it
        is older (the row lock makes racing processes queue up and
        re-check), then the job is inserted and workers notified at commit.
        The ``jobq_cron`` table is created on first use (additively, beside
        the versioned job table)."""
        advance = self._q(
            "cron_advance", lambda: q.cron_advance_query(DIALECT) + " RETURNING (xmax = 0) AS inserted"
        )
        insert = self._q("insert", lambda: q.insert_query(DIALECT))
        try:
            async with self.connections.connection() as conn, conn.transaction():
                if not self._cron_ready:
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CRON_LOCK_KEY,))
                    await conn.execute(CRON_TABLE)
                cur = await conn.execute(advance, {"tbl": self.table, "name": name, "slot": slot_ms})
                found = await cur.fetchone()
                # No row: the stored slot is not older. inserted: a new schedule.
                won = found is not None and not found[0]
                if won:
                    await transactional.announce(conn, [job], channel=self.channel, db_clock=self._db_clock)
                    await conn.execute(insert, {f: getattr(job, f) for f in RECORD_FIELDS})
        except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
            raise cannot_store(exc) from None
        self._cron_ready = True
        return won

    async def insert_on(self, connection: Any, records: Sequence[JobRecord]) -> None:
        """Inserts the jobs inside the transaction the application holds on
        its own psycopg connection (see :func:`.transactional.insert_on`)."""
        await transactional.insert_on(
            connection, records, table=self._qualified, channel=self.channel, db_clock=self._db_clock
        )

    async def _announce(
        self, conn: psycopg.AsyncConnection[Any], transitions: Sequence[Transition], done: Collection[str]
    ) -> None:
        """Wakes workers when a settle put jobs back to wait. (Jobs brought to
        a final status are announced by the settle statement itself.)"""
        if any(t.wakes_workers and t.job_id in done for t in transitions):
            await self._notify(conn)

    async def wait_for_finish(self, timeout: float) -> bool:
        """Returns ``True`` when a notification arrives on the table's finish
        channel, ``False`` after ``timeout`` seconds or sooner while the
        listening connection is down."""
        return await self.finish_listener.wait(timeout)

    async def wait_for_change(self, timeout: float) -> bool:
        """Returns ``True`` when a notification arrives on the table's
        channel (see :meth:`.listen.Listener.wait`), ``False`` after
        ``timeout`` seconds or sooner while the listening connection is down."""
        return await self.listener.wait(timeout)

    def twin(self) -> PostgresStore:
        """The same table through a pool of one connection of its own."""
        return PostgresStore(self.dsn, table=self.table, pool_size=1, pool_timeout=self.pool_timeout)

    async def close(self) -> None:
        if self.connections.closed:
            return
        self.connections.closed = True
        await self.listener.close()
        await self.finish_listener.close()
        await self.connections.close()


def _tellable(t: Transition) -> bool:
    """Whether the row a held job's write leaves tells it apart from what a
    rescue or another worker would leave (see ``_settle_retried``)."""
    if t.status == "pending":
        return t.attempts is not None and t.error is not None  # a retry, not a release
    return t.status in ("completed", "failed", "cancelled")


def _written(t: Transition, record: JobRecord) -> bool:
    """Whether ``record`` is as the held job's write ``t`` leaves it."""
    if record.status != t.status or record.lease_token is not None:
        return False
    if t.status == "completed":
        return True
    if t.status == "cancelled":
        return t.error is None or record.error == t.error
    return record.attempts == t.attempts and record.error == t.error

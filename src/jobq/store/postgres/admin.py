"""The PostgreSQL store's operators' verbs (:class:`~jobq.store.base.AdminStore`):
cancel, retry, remove and prune jobs, and read counts, pages and throughput.
Their statements are the text both SQL stores share (:mod:`jobq.store.sql`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg

from ... import figures
from ...errors import JobNotFound
from ...history import AttemptRecord, WorkerRecord
from ...job import JobRecord
from .. import figures_sql as fq
from .. import history_sql as hq
from .. import operator_sql as ops_sql
from .. import sql as q
from ..base import Search, not_retryable, unique_key_taken
from .core import PostgresCore
from .resilience import resilient
from .sql import DIALECT

#: Paused queues per job table (see :meth:`jobq.Queue.pause`), created on first pause.
PAUSED_TABLE = ops_sql.paused_table("BIGINT")
#: Key of the advisory lock under which ``jobq_paused`` is created.
PAUSED_LOCK_KEY = 0x6A6F6271_0003  # "jobq", 3


class AdminVerbs(PostgresCore):
    """The operators' verbs of :class:`~.store.PostgresStore`."""

    @resilient()
    async def cancel(self, job_id: str, *, now_ms: int) -> tuple[bool, JobRecord]:
        query = self._q("cancel", lambda: q.cancel_query(DIALECT))
        async with self.connections.connection() as conn:
            cur = await conn.execute(query, {"id": job_id, "now": self._now(now_ms)})
            row = await cur.fetchone()
            if row is not None:
                cancelled = JobRecord(*row)
                if cancelled.status == "cancelled":
                    await self._notify(conn, work=False, finished=True)
                return True, cancelled
            record = await self._get(conn, job_id)
        if record is None:
            raise JobNotFound(job_id)
        return False, record

    @resilient()
    async def retry(self, job_id: str, *, now_ms: int) -> JobRecord:
        query = self._q("retry", lambda: q.retry_query(DIALECT))
        try:
            async with self.connections.connection() as conn, conn.transaction():
                cur = await conn.execute(query, {"id": job_id, "now": self._now(now_ms)})
                row = await cur.fetchone()
                if row is not None:
                    await self._notify(conn)
                    return JobRecord(*row)
                current = await self._get(conn, job_id)
        except psycopg.errors.UniqueViolation:
            raise unique_key_taken(job_id) from None
        raise not_retryable(job_id, current)

    @resilient()
    async def remove(self, job_id: str) -> bool:
        async with self.connections.connection() as conn:
            cur = await conn.execute(self._q("remove", lambda: q.remove_query(DIALECT)), {"id": job_id})
            return cur.rowcount > 0

    @resilient()
    async def clear(self) -> None:
        async with self.connections.connection() as conn:
            await conn.execute(self._q("clear", "DELETE FROM {t}"))

    async def _paused_table(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Creates ``jobq_paused`` on first use (concurrent creators take turns:
        ``IF NOT EXISTS`` alone can race on PostgreSQL's catalogs)."""
        if not self._paused_ready:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PAUSED_LOCK_KEY,))
            await conn.execute(PAUSED_TABLE)

    @resilient()
    async def pause_queue(self, queue: str, *, now_ms: int) -> bool:
        query = self._q("pause", lambda: ops_sql.pause_query(DIALECT))
        async with self.connections.connection() as conn, conn.transaction():
            await self._paused_table(conn)
            cur = await conn.execute(query, {"tbl": self.table, "queue": queue, "at": now_ms})
            paused = cur.rowcount > 0
        self._paused_ready = True
        return paused

    @resilient()
    async def resume_queue(self, queue: str) -> bool:
        query = self._q("resume", lambda: ops_sql.resume_query(DIALECT))
        async with self.connections.connection() as conn, conn.transaction():
            await self._paused_table(conn)
            cur = await conn.execute(query, {"tbl": self.table, "queue": queue})
            resumed = cur.rowcount > 0
            if resumed:
                await self._notify(conn)  # its waiting jobs may be claimed at once
        self._paused_ready = True
        return resumed

    @resilient()
    async def paused_queues(self) -> dict[str, int]:
        if not self._paused_ready:
            # Never paused anything in this database yet: no table, nothing paused.
            rows = await self._fetchall("paused_exists", "SELECT to_regclass('jobq_paused') IS NOT NULL", {})
            if not rows[0][0]:
                return {}
            self._paused_ready = True
        rows = await self._fetchall("paused", lambda: ops_sql.paused_query(DIALECT), {"tbl": self.table})
        return {name: int(at) for name, at in rows}

    @resilient()
    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        if not statuses:
            return 0
        values: dict[str, Any] = {"statuses": list(statuses)}
        if before_ms is None:
            query = self._q("delete_terminal", lambda: q.delete_terminal_query(DIALECT, None))
        else:
            before = "{now} + %(before_in)s::bigint"
            query = self._q("delete_terminal_before", lambda: q.delete_terminal_query(DIALECT, before))
            caller_now = self._caller_now()
            values.update(now=self._now(caller_now), before_in=before_ms - caller_now)
        async with self.connections.connection() as conn:
            cur = await conn.execute(query, values)
            return cur.rowcount

    @resilient()
    async def count_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        if not statuses:
            return 0
        values: dict[str, Any] = {"statuses": list(statuses)}
        if before_ms is None:
            query = lambda: q.count_terminal_query(DIALECT, None)  # noqa: E731
            name = "count_terminal"
        else:
            before = "{now} + %(before_in)s::bigint"
            query = lambda: q.count_terminal_query(DIALECT, before)  # noqa: E731
            name = "count_terminal_before"
            caller_now = self._caller_now()
            values.update(now=self._now(caller_now), before_in=before_ms - caller_now)
        rows = await self._fetchall(name, query, values)
        return int(rows[0][0])

    @resilient()
    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        query = lambda: ops_sql.count_by_status_query(DIALECT)  # noqa: E731
        rows = await self._fetchall("count_by_status", query, {"now": self._now(now_ms)})
        return {status: int(count) for status, count in rows}

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
        search: Search | None = None,
        after: tuple[int, str] | None = None,
    ) -> tuple[list[JobRecord], int]:
        page, count, values = ops_sql.list_jobs_queries(
            DIALECT, statuses=statuses, types=types, queues=queues, newest_first=newest_first, search=search,
            after=after is not None,
        )
        if after is not None:
            values.update(after_at=after[0], after_id=after[1])
        values.update(now=self._now(now_ms), limit=limit, offset=offset)
        async with self.connections.connection() as conn, conn.transaction():
            cur = await conn.execute(self._q(page, page), values)
            records = self._records(await cur.fetchall())
            cur = await conn.execute(self._q(count, count), values)
            row = await cur.fetchone()
        return records, int(row[0]) if row else 0

    @resilient()
    async def summary(
        self, *, now_ms: int, statuses: Collection[str] | None = None
    ) -> list[tuple[str, str, str, int]]:
        chosen = None if statuses is None else tuple(sorted(statuses))
        rows = await self._fetchall(
            ("summary", chosen), lambda: ops_sql.summary_query(DIALECT, statuses=chosen), {"now": self._now(now_ms)}
        )
        return [(queue, job_type, status, int(n)) for queue, job_type, status, n in rows]

    @resilient()
    async def oldest_ready(self, *, now_ms: int, queue: str | None = None) -> JobRecord | None:
        by_queue = queue is not None
        rows = await self._fetchall(
            ("oldest_ready", by_queue),
            lambda: ops_sql.oldest_ready_query(DIALECT, by_queue=by_queue),
            {"now": self._now(now_ms), "queue": queue},
        )
        return self._records(rows)[0] if rows else None

    @resilient()
    async def attempts(self, job_id: str) -> list[AttemptRecord]:
        rows = await self._fetchall(
            "attempts", lambda: hq.attempts_query(DIALECT, "{attempts}"), {"id": job_id}
        )
        return [AttemptRecord(*row) for row in rows]

    @resilient()
    async def workers(self) -> list[WorkerRecord]:
        rows = await self._fetchall("workers", lambda: hq.workers_query("{workers}"), {})
        return [WorkerRecord(*row) for row in rows]

    @resilient()
    async def outcomes(
        self, *, since_ms: int, bucket_ms: int, until_ms: int, queue: str | None = None
    ) -> list[tuple[int, int, int]]:
        by_queue = queue is not None
        rows = await self._fetchall(
            ("outcomes", by_queue),
            lambda: fq.outcomes_query(DIALECT, "{attempts}", by_queue=by_queue),
            {"since": since_ms, "bucket": bucket_ms, "until": until_ms, "queue": queue},
        )
        return [(int(b), int(d), int(f)) for b, d, f in rows]

    @resilient()
    async def durations(self, *, since_ms: int, queue: str | None = None) -> list[tuple[str, str, int, int]]:
        by_queue = queue is not None
        rows = await self._fetchall(
            ("durations", by_queue),
            lambda: fq.durations_query(DIALECT, "{attempts}", by_queue=by_queue),
            {"since": since_ms, "queue": queue},
        )
        return figures.fold_durations(rows)

    @resilient()
    async def cron_slots(self) -> dict[str, int]:
        if not self._cron_ready:
            # No slot claimed in this database yet: no table, no schedule.
            rows = await self._fetchall("cron_exists", "SELECT to_regclass('jobq_cron') IS NOT NULL", {})
            if not rows[0][0]:
                return {}
        rows = await self._fetchall("cron_slots", lambda: fq.cron_slots_query(DIALECT), {"tbl": self.table})
        return {name: int(slot) for name, slot in rows}

    @resilient()
    async def cron_jobs(self, name: str, *, limit: int) -> list[JobRecord]:
        rows = await self._fetchall(
            "cron_jobs",
            lambda: fq.cron_jobs_query(DIALECT),
            {"field": DIALECT.json_key(figures.CRON_FIELD), "name": name, "limit": limit},
        )
        return [JobRecord(*row) for row in rows]

"""The SQLite store's operators' verbs (:class:`~jobq.store.base.AdminStore`):
cancel, retry, remove and prune jobs, and read counts, pages and throughput.
Their statements are the text both SQL stores share (:mod:`jobq.store.sql`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection

from ... import figures
from ...errors import JobNotFound
from ...history import AttemptRecord, WorkerRecord
from ...job import JobRecord
from .. import figures_sql as fq
from .. import history_sql as hq
from .. import operator_sql as ops_sql
from .. import sql as q
from ..base import Search, not_retryable, unique_key_taken
from .core import SQLiteCore

#: Paused queues per job table (see :meth:`jobq.Queue.pause`), created on first pause.
PAUSED_TABLE = ops_sql.paused_table("INTEGER")


class AdminVerbs(SQLiteCore):
    """The operators' verbs of :class:`~.store.SQLiteStore`."""

    async def cancel(self, job_id: str, *, now_ms: int) -> tuple[bool, JobRecord]:
        sql = self._q("cancel", lambda: q.cancel_query(self._d))

        def do(conn: sqlite3.Connection) -> tuple[bool, JobRecord]:
            row = conn.execute(sql, {"id": job_id, "now": now_ms}).fetchone()
            if row is not None:
                return True, JobRecord(*row)
            record = self._get(conn, job_id)
            if record is None:
                raise JobNotFound(job_id)
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

    async def pause_queue(self, queue: str, *, now_ms: int) -> bool:
        sql = self._q("pause", lambda: ops_sql.pause_query(self._d))

        def do(conn: sqlite3.Connection) -> bool:
            conn.execute(PAUSED_TABLE)
            return conn.execute(sql, {"tbl": self.table, "queue": queue, "at": now_ms}).rowcount > 0

        return await self.db.write(do)

    async def resume_queue(self, queue: str) -> bool:
        sql = self._q("resume", lambda: ops_sql.resume_query(self._d))

        def do(conn: sqlite3.Connection) -> bool:
            conn.execute(PAUSED_TABLE)
            return conn.execute(sql, {"tbl": self.table, "queue": queue}).rowcount > 0

        resumed: bool = await self.db.write(do)
        if resumed:
            self._wake_file.touch()  # its waiting jobs may be claimed at once
        return resumed

    async def paused_queues(self) -> dict[str, int]:
        sql = self._q("paused", lambda: ops_sql.paused_query(self._d))

        def do(conn: sqlite3.Connection) -> dict[str, int]:
            # Read-only openers never create it: no table, nothing paused.
            exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobq_paused'"
            if conn.execute(exists).fetchone() is None:
                return {}
            return {name: int(at) for name, at in conn.execute(sql, {"tbl": self.table})}

        return await self.db.read(do)

    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        if not statuses:
            return 0
        sql = self._q(
            ("delete_terminal", before_ms is None),
            lambda: q.delete_terminal_query(self._d, None if before_ms is None else ":before"),
        )
        values = {"statuses": json.dumps(list(statuses)), "before": before_ms}
        return await self.db.write(lambda c: c.execute(sql, values).rowcount)

    async def count_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        if not statuses:
            return 0
        sql = self._q(
            ("count_terminal", before_ms is None),
            lambda: q.count_terminal_query(self._d, None if before_ms is None else ":before"),
        )
        values = {"statuses": json.dumps(list(statuses)), "before": before_ms}
        row = await self.db.read(lambda c: c.execute(sql, values).fetchone())
        return int(row[0])

    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        sql = self._q("count_by_status", lambda: ops_sql.count_by_status_query(self._d))
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
        search: Search | None = None,
        after: tuple[int, str] | None = None,
    ) -> tuple[list[JobRecord], int]:
        page, count, values = ops_sql.list_jobs_queries(
            self._d, statuses=statuses, types=types, queues=queues, newest_first=newest_first, search=search,
            after=after is not None,
        )
        if after is not None:
            values.update(after_at=after[0], after_id=after[1])
        values.update(now=now_ms, limit=limit, offset=offset)

        def do(conn: sqlite3.Connection) -> tuple[list[JobRecord], int]:
            rows = conn.execute(page, values).fetchall()
            return self._records(rows), int(conn.execute(count, values).fetchone()[0])

        return await self.db.read(do)

    async def summary(
        self, *, now_ms: int, statuses: Collection[str] | None = None
    ) -> list[tuple[str, str, str, int]]:
        chosen = None if statuses is None else tuple(sorted(statuses))
        sql = self._q(("summary", chosen), lambda: ops_sql.summary_query(self._d, statuses=chosen))
        values = {"now": now_ms}
        rows = await self.db.read(lambda c: c.execute(sql, values).fetchall())
        return [(queue, job_type, status, int(n)) for queue, job_type, status, n in rows]

    async def oldest_ready(self, *, now_ms: int, queue: str | None = None) -> JobRecord | None:
        by_queue = queue is not None
        sql = self._q(("oldest_ready", by_queue), lambda: ops_sql.oldest_ready_query(self._d, by_queue=by_queue))
        rows = await self.db.read(lambda c: c.execute(sql, {"now": now_ms, "queue": queue}).fetchall())
        return self._records(rows)[0] if rows else None

    async def attempts(self, job_id: str) -> list[AttemptRecord]:
        sql = self._q("attempts", lambda: hq.attempts_query(self._d, self._attempts_table))
        rows = await self.db.read(lambda c: c.execute(sql, {"id": job_id}).fetchall())
        return [AttemptRecord(*row) for row in rows]

    async def workers(self) -> list[WorkerRecord]:
        sql = self._q("workers", lambda: hq.workers_query(self._workers_table))
        rows = await self.db.read(lambda c: c.execute(sql).fetchall())
        return [WorkerRecord(*row) for row in rows]

    async def outcomes(
        self, *, since_ms: int, bucket_ms: int, until_ms: int, queue: str | None = None
    ) -> list[tuple[int, int, int]]:
        by_queue = queue is not None
        sql = self._q(("outcomes", by_queue), lambda: fq.outcomes_query(self._d, self._attempts_table, by_queue=by_queue))
        values = {"since": since_ms, "bucket": bucket_ms, "until": until_ms, "queue": queue}
        rows = await self.db.read(lambda c: c.execute(sql, values).fetchall())
        return [(int(b), int(d), int(f)) for b, d, f in rows]

    async def durations(self, *, since_ms: int, queue: str | None = None) -> list[tuple[str, str, int, int]]:
        by_queue = queue is not None
        sql = self._q(
            ("durations", by_queue), lambda: fq.durations_query(self._d, self._attempts_table, by_queue=by_queue)
        )
        rows = await self.db.read(lambda c: c.execute(sql, {"since": since_ms, "queue": queue}).fetchall())
        return figures.fold_durations(rows)

    async def cron_slots(self) -> dict[str, int]:
        sql = self._q("cron_slots", lambda: fq.cron_slots_query(self._d))

        def do(conn: sqlite3.Connection) -> dict[str, int]:
            # Created by the first cron slot claimed: no table, no schedule yet.
            exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobq_cron'"
            if conn.execute(exists).fetchone() is None:
                return {}
            return {name: int(slot) for name, slot in conn.execute(sql, {"tbl": self.table})}

        return await self.db.read(do)

    async def cron_jobs(self, name: str, *, limit: int) -> list[JobRecord]:
        sql = self._q("cron_jobs", lambda: fq.cron_jobs_query(self._d))
        values = {"field": self._d.json_key(figures.CRON_FIELD), "name": name, "limit": limit}
        rows = await self.db.read(lambda c: c.execute(sql, values).fetchall())
        return [JobRecord(*row) for row in rows]

"""The PostgreSQL store's core: opening it, its clock, and the helpers its
verbs share (statement texts built once, a job read, a wake-up).

:class:`PostgresCore` holds the plumbing by composition: the pool and the
retry loop (:class:`~.resilience.Connections`) and the listener
(:class:`~.listen.Listener`). The verbs build on it: the operators' in
:mod:`.admin`, the worker's in :mod:`.store`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ...clock import SYSTEM_CLOCK, Clock, SystemClock, now_ms
from ...errors import InvalidJob, InvalidOption, InvalidURL, JobqError, StoreUnavailable
from ...job import JobRecord
from .. import sql as q
from ..base import missing
from ..limited import Step
from ..sql import check_table_name
from .listen import Listener
from .resilience import CONNECT_TIMEOUT, POOL_SIZE, POOL_TIMEOUT, Connections, describe
from .schema import (
    DEFAULT_TABLE,
    LATEST_VERSION,
    attempts_table,
    finish_channel,
    migrate,
    notify_channel,
    workers_table,
)
from .sql import DIALECT, NOW

R = TypeVar("R")


def no_nul(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters; an error message keeps the rest."""
    return text.replace("\x00", "\ufffd")


def cannot_store(exc: Exception) -> InvalidJob:
    return InvalidJob(f"PostgreSQL cannot store this job: {exc}")


class PostgresCore:
    """What every verb of :class:`~.store.PostgresStore` stands on."""

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
        dsn = make_conninfo(dsn, **extra)
        self.where = describe(params)
        self.channel = notify_channel(self.table)
        self.pool_size = pool_size
        self.pool_timeout = float(pool_timeout)
        self._clock: Clock = SYSTEM_CLOCK
        self._db_clock = True
        self._sql: dict[Any, str] = {}  # query texts by key, each built once
        self._cron_ready = False  # jobq_cron exists (created on first claim_cron_slot)
        self._paused_ready = False  # jobq_paused exists (created on first pause)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                self.schema_found = migrate(conn, self.table)
                """The schema version found on open (``jobq migrate`` reports it)."""
                self.schema_version = LATEST_VERSION
                self._ident = sql.Identifier(self.table).as_string(conn)
                self._attempts_ident = sql.Identifier(attempts_table(self.table)).as_string(conn)
                self._workers_ident = sql.Identifier(workers_table(self.table)).as_string(conn)
                # The schema the table lives in: transactional enqueues run on
                # the application's connection, whose search_path may differ.
                row = conn.execute("SELECT current_schema()").fetchone()
                schema = row[0] if row and row[0] else "public"
                self._qualified = sql.Identifier(schema, self.table).as_string(conn)
                self.channel = notify_channel(self.table, schema)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot open PostgreSQL at {self.where}: {exc}".strip()) from None
        self.connections = Connections(
            dsn, where=self.where, name=f"jobq-{self.table}", size=pool_size, timeout=self.pool_timeout
        )
        self.listener = Listener(dsn, self.channel, where=self.where)
        # Jobs that reached a final status, for callers awaiting results.
        self.finish_channel = finish_channel(self.channel)
        self.finish_listener = Listener(dsn, self.finish_channel, where=self.where)

    @property
    def dsn(self) -> str:
        """The connection string the pool and the listener use."""
        return self.connections.dsn

    @dsn.setter
    def dsn(self, value: str) -> None:
        self.connections.dsn = self.listener.dsn = self.finish_listener.dsn = value

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
        return now_ms(self._clock)

    # -- plumbing --------------------------------------------------------------

    def _q(self, key: Any, text: str | Callable[[], str]) -> str:
        """``text`` (or what it returns) with ``{t}`` as the quoted table and
        ``{now}`` as the time expression, built once per key."""
        query = self._sql.get(key)
        if query is None:
            template = text if isinstance(text, str) else text()
            query = self._sql[key] = (
                template.replace("{t}", self._ident)
                .replace("{attempts}", self._attempts_ident)
                .replace("{workers}", self._workers_ident)
                .replace("{now}", NOW)
            )
        return query

    async def _fetchall(self, key: Any, text: str | Callable[[], str], values: dict[str, Any]) -> list[Any]:
        """The rows of one statement (see :meth:`_q`) on a pooled connection."""
        return await self.connections.fetchall(self._q(key, text), values)

    async def _run_steps(self, conn: psycopg.AsyncConnection[Any], steps: Generator[Step, list[Any], R]) -> R:
        """Runs the statements a generator yields (see :mod:`jobq.store.limited`)."""
        try:
            text, values = next(steps)
            while True:
                cur = await conn.execute(self._q(text, text), values)
                text, values = steps.send(await cur.fetchall() if cur.description else [])
        except StopIteration as done:
            result: R = done.value
            return result

    async def _notify(self, conn: psycopg.AsyncConnection[Any], *, work: bool = True, finished: bool = False) -> None:
        """Announces new work (``work``) and jobs that reached a final status
        (``finished``), on their channels."""
        if work and finished:
            await conn.execute("SELECT pg_notify(%s, ''), pg_notify(%s, '')", (self.channel, self.finish_channel))
        elif work or finished:
            await conn.execute("SELECT pg_notify(%s, '')", (self.channel if work else self.finish_channel,))

    @staticmethod
    def _records(rows: list[tuple[Any, ...]]) -> list[JobRecord]:
        return [JobRecord(*row) for row in rows]

    async def _get(self, conn: psycopg.AsyncConnection[Any], job_id: str) -> JobRecord | None:
        cur = await conn.execute(self._q("get", lambda: q.get_query(DIALECT)), {"id": job_id})
        row = await cur.fetchone()
        return None if row is None else JobRecord(*row)

    async def _missing(self, conn: psycopg.AsyncConnection[Any], job_id: str) -> JobqError:
        return missing(job_id, await self._get(conn, job_id))

    @property
    def listening(self) -> bool:
        """Whether wake-ups currently come from LISTEN (else from polling)."""
        return self.listener.listening

    @property
    def listener_pid(self) -> int | None:
        """Server process id of the listening connection while it is up."""
        return self.listener.pid

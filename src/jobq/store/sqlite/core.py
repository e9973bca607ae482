"""The SQLite store's core: opening it, and the helpers its verbs share
(statement texts built once, a job read).

:class:`SQLiteCore` holds the plumbing by composition: the connections and
the database thread (:class:`~.connection.Database`) and the change watch
(:class:`~.wake.ChangeWatch`). The verbs build on it: the operators' in
:mod:`.admin`, the worker's in :mod:`.store`.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import sqlite3
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, NamedTuple, TypeVar

from ...errors import JobqError, SchemaOutdated, StoreUnavailable
from ...job import JobRecord
from .. import history_sql as hq
from .. import schema as shape
from .. import sql as q
from ..base import missing
from ..limited import Step
from ..sql import COLUMNS, SETTLE_FIELDS, Dialect, check_table_name
from .connection import (
    BUSY_TIMEOUT,
    Database,
    Durability,
    check_busy_timeout,
    check_path,
    is_busy,
    open_for_reading,
)
from .schema import LATEST_VERSION, Found, attempts_table, index_name, inspect, migrate, workers_table
from .schema import check_table_name as check_sqlite_table_name
from .wake import ChangeWatch, WakeFile

R = TypeVar("R")

LOOK_PAUSE = 0.01  # seconds between looks at a file another process holds locked


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


def run_steps(conn: sqlite3.Connection, steps: Generator[Step, list[Any], R]) -> R:
    """Runs the statements a generator yields (see :mod:`jobq.store.limited`)."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(conn.execute(*statement).fetchall())
    except StopIteration as done:
        result: R = done.value
        return result



def look(path: str, table: str, *, read_only: bool, busy_timeout: float = BUSY_TIMEOUT) -> Found:
    """What ``path`` holds for job table ``table``, read on a connection that
    cannot change the file, before anything else touches it (its journal
    mode included). Raises :class:`~jobq.errors.SchemaMismatch` for a file
    jobq must leave alone and, when ``read_only``, for one that needs
    creating or upgrading first. A file another process holds locked (one
    switching it to WAL) is waited for, up to ``busy_timeout`` seconds."""
    option = "" if table == "jobs" else f"?table={table}"
    migrate_first = f"read-only commands never change it: run `jobq migrate sqlite:///{path}{option}` first"
    if not os.path.exists(path):
        if read_only:
            raise SchemaOutdated(f"SQLite file {path!r} does not exist; {migrate_first}")
        return Found(exists=False, version=0)
    deadline = time.monotonic() + busy_timeout
    conn = open_for_reading(path)
    try:
        while True:
            try:
                found = inspect(conn, table, path)
                break
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise StoreUnavailable(f"SQLite error on {path!r}: {exc}") from None
                time.sleep(LOOK_PAUSE)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite error on {path!r}: {exc}") from None
    finally:
        conn.close()
    if read_only:
        shape.check_version(table, found.version, LATEST_VERSION)
        if not found.exists:
            raise SchemaOutdated(f"{path!r} has no job table {table!r}; {migrate_first}")
        if found.version < LATEST_VERSION:
            what = f"at jobq schema version {found.version}" if found.version else "k-msg's, not yet upgraded"
            raise SchemaOutdated(
                f"table {table!r} in {path!r} is {what} (this jobq needs version {LATEST_VERSION});"
                f" {migrate_first}"
            )
    return found


class SettleStatements(NamedTuple):
    """A settle statement for one batch shape, and how to pick its row of
    values out of ``(now, *settle_params(transition))``."""

    sql: str
    returning: str
    pick: Callable[[tuple[Any, ...]], tuple[Any, ...]]


class SQLiteCore:
    """What every verb of :class:`~.store.SQLiteStore` stands on."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "jobs",
        durability: Durability = "full",
        busy_timeout: float = BUSY_TIMEOUT,
        read_only: bool = False,
    ) -> None:
        self.table = check_sqlite_table_name(check_table_name(table))
        # Checked before the first connection that may change the file (or
        # its journal mode) opens.
        path, busy_timeout = check_path(os.fspath(path)), check_busy_timeout(busy_timeout)
        found = look(path, self.table, read_only=read_only, busy_timeout=busy_timeout)
        self.db = Database(path, durability=durability, busy_timeout=busy_timeout, read_only=read_only)
        self.path = self.db.path
        self.durability = durability
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.schema_found: int = (
            found.version
            if read_only
            else self.db.write_blocking(lambda c: migrate(c, self.table, self.path), in_transaction=False)
        )
        self._wake_file = WakeFile(self.path, self.table)
        self._changes = ChangeWatch(self.db.connect(), self._wake_file, closed=lambda: self.db.closed)
        # wait_for_finish's own connection, opened by the first result awaited.
        self._finish_watch: sqlite3.Connection | None = None
        self._finish_version = 0
        self._d = d = dialect(self.table)
        self._sql: dict[Any, str] = {}  # statements by variant, each built once
        # Rows of every field in order: positional values, for executemany.
        self._insert_sql = q.insert_query(dataclasses.replace(d, value=lambda _: "?"))
        self._settle_sql: dict[q.SettleShape, SettleStatements] = {}  # see _settle_statements
        self._get_sql = q.get_query(d)
        self._attempts_table = attempts_table(self.table)
        self._workers_table = workers_table(self.table)
        self._attempts_sql = hq.record_attempt_query(self._attempts_table, self.table)

    def _settle_statements(self, shape: q.SettleShape) -> SettleStatements:
        """The settle statement for a batch of this shape (see
        :mod:`jobq.store.sql`), built once per shape. Its parameters are
        numbered in the order the statement first uses them, and each row
        binds only those: a batch of completions binds four values a row,
        not every field of a transition."""
        found = self._settle_sql.get(shape)
        if found is None:
            used: list[str] = ["now"]

            def number(name: str) -> str:
                if name not in used:
                    used.append(name)
                return f"?{used.index(name) + 1}"

            d = dataclasses.replace(self._d, value=number, now="?1")
            sql = (
                f"UPDATE {self.table} SET {q.settle_assignments(d, shape)}"
                f" WHERE id = {number('id')} AND {q.settle_fence(d, shape)}"
            )
            # Rows are picked from (now, then each field in SETTLE_FIELDS order).
            fields = ["now", *(name for name, _ in SETTLE_FIELDS)]
            picks = [fields.index(name) for name in used]
            # At least now and the id: itemgetter of two or more gives tuples.
            found = self._settle_sql[shape] = SettleStatements(
                sql, f"{sql} RETURNING {COLUMNS}", operator.itemgetter(*picks)
            )
        return found

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

    def _ready_walk(self, queues: Sequence[str] | None) -> dict[str, str]:
        """The partial index over waiting rows a claim must walk, and the
        filter it leads with (see :func:`jobq.store.sql.due`). Named, not
        left to the planner: without statistics it may pick the status index
        and sort every waiting row, making each claim cost grow with the backlog.
        The walk stops after ``LIMIT`` due rows."""
        prefix = q.seek_prefix(self._d, queues)
        name = "queue_ready" if prefix else "ready"
        return {"prefix": prefix, "index": f" INDEXED BY {index_name(self.table, name)}"}

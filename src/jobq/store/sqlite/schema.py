"""The SQLite schema: k-msg's ``jobs`` table plus jobq's columns, versioned.

The table is a superset of the one k-msg's ``SQLiteJobQueue`` creates (same
name by default, same columns, times as epoch milliseconds, JSON as text), so
a k-msg producer and jobq workers can share one database file. jobq's
columns all have defaults, so k-msg's ``INSERT`` statements, which name only
their own columns, still work.

Migrations run in order inside one ``BEGIN IMMEDIATE`` transaction; the
version reached is kept in ``jobq_schema``. Several processes may open a new
file at once: the first to take the write lock migrates, the others then find
the work done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .. import schema as shape

TYPES = shape.Types(time="INTEGER", fraction="REAL")
#: k-msg's columns, as its SQLite queue declares them.
KMSG_TABLE = shape.kmsg_table(TYPES)
#: jobq's own columns, added to a table k-msg may have created first.
JOBQ_COLUMNS = shape.jobq_columns(TYPES)
#: Columns version 2 adds: unique jobs, progress, cancellation.
V2_COLUMNS = shape.v2_columns(TYPES)
#: Columns version 3 adds: the exception type of the last error.
V3_COLUMNS = shape.v3_columns(TYPES)


def index_name(table: str, name: str) -> str:
    """What an index of the job table is called in SQLite."""
    return f"jobq_{table}_{name}"


def starts_table(table: str) -> str:
    """The table of recent job starts that per-key rate limits count."""
    return f"jobq_{table}_starts"


def _add(
    conn: sqlite3.Connection,
    table: str,
    columns: tuple[tuple[str, str], ...],
    indexes: tuple[shape.Index, ...],
) -> None:
    existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, decl in columns:
        if name not in existing:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    for index in indexes:
        conn.execute(index.create(index_name(table, index.name), table))


def _v1_create(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(KMSG_TABLE.format(table=table))
    _add(conn, table, JOBQ_COLUMNS, shape.V1_INDEXES)


def _v2_features(conn: sqlite3.Connection, table: str) -> None:
    _add(conn, table, V2_COLUMNS, shape.V2_INDEXES)
    starts = starts_table(table)
    conn.execute(shape.starts_table_ddl(TYPES, starts))
    conn.execute(f"CREATE INDEX IF NOT EXISTS {starts}_window ON {starts} (name, at_ms)")


def _v3_error_type(conn: sqlite3.Connection, table: str) -> None:
    _add(conn, table, V3_COLUMNS, ())


#: Migration n (1-based) brings the schema from version n-1 to n.
MIGRATIONS: tuple[Callable[[sqlite3.Connection, str], None], ...] = (_v1_create, _v2_features, _v3_error_type)
LATEST_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, table: str) -> int:
    """Brings the schema to the latest version; returns the version found.

    ``conn`` must be in autocommit mode; the caller retries on busy errors.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(shape.SCHEMA_TABLE)
        row = conn.execute("SELECT version FROM jobq_schema WHERE tbl = ?", (table,)).fetchone()
        found = row[0] if row else 0
        shape.check_version(table, found, LATEST_VERSION)
        for version in range(found + 1, LATEST_VERSION + 1):
            MIGRATIONS[version - 1](conn, table)
        conn.execute(shape.record_version_query("?", "?"), (table, LATEST_VERSION))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found

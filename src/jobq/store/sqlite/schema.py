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

from ...errors import InvalidOption


#: k-msg's columns, as its SQLite queue declares them.
KMSG_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  priority INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 3,
  delay INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  process_at INTEGER NOT NULL,
  completed_at INTEGER,
  failed_at INTEGER,
  error TEXT,
  metadata TEXT
)
"""

#: jobq's own columns, added to a table k-msg may have created first.
JOBQ_COLUMNS: tuple[tuple[str, str], ...] = (
    ("queue", "TEXT NOT NULL DEFAULT 'default'"),
    ("result", "TEXT"),
    ("lease_token", "TEXT"),
    ("lease_owner", "TEXT"),
    ("scheduled_at", "INTEGER"),
    ("started_at", "INTEGER"),
    ("lost_count", "INTEGER NOT NULL DEFAULT 0"),
)


def _v1_create(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(KMSG_TABLE.format(table=table))
    existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, decl in JOBQ_COLUMNS:
        if name not in existing:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    # Claiming walks only waiting rows, in dequeue order: its cost does not
    # grow with the finished jobs the table keeps.
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS jobq_{table}_ready ON {table}"
        f" (priority DESC, process_at, created_at) WHERE status = 'pending'"
    )
    # The rescuer looks for expired leases among processing rows only.
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS jobq_{table}_leases ON {table} (process_at)"
        f" WHERE status = 'processing'"
    )


#: Columns version 2 adds: unique jobs, progress, cancellation.
V2_COLUMNS: tuple[tuple[str, str], ...] = (
    ("unique_key", "TEXT"),
    ("progress", "REAL"),
    ("progress_message", "TEXT"),
    ("cancelled_at", "INTEGER"),
    ("cancel_requested_at", "INTEGER"),
)


def starts_table(table: str) -> str:
    """The table of recent job starts that per-key rate limits count."""
    return f"jobq_{table}_starts"


def _v2_features(conn: sqlite3.Connection, table: str) -> None:
    existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, decl in V2_COLUMNS:
        if name not in existing:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    # The database itself keeps a unique key to one unfinished job.
    conn.execute(
        f"CREATE UNIQUE INDEX IF NOT EXISTS jobq_{table}_unique ON {table} (unique_key)"
        f" WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')"
    )
    # Claiming from one named queue walks only that queue's waiting rows.
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS jobq_{table}_queue_ready ON {table}"
        f" (queue, priority DESC, process_at, created_at) WHERE status = 'pending'"
    )
    # Listing jobs by status, newest or oldest first.
    conn.execute(f"CREATE INDEX IF NOT EXISTS jobq_{table}_status_created ON {table} (status, created_at)")
    starts = starts_table(table)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {starts} (name TEXT NOT NULL, key TEXT NOT NULL, at_ms INTEGER NOT NULL)"
    )
    conn.execute(f"CREATE INDEX IF NOT EXISTS {starts}_window ON {starts} (name, at_ms)")


#: Migration n (1-based) brings the schema from version n-1 to n.
MIGRATIONS: tuple[Callable[[sqlite3.Connection, str], None], ...] = (_v1_create, _v2_features)
LATEST_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, table: str) -> int:
    """Brings the schema to the latest version; returns the version found.

    ``conn`` must be in autocommit mode; the caller retries on busy errors.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS jobq_schema (tbl TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        row = conn.execute("SELECT version FROM jobq_schema WHERE tbl = ?", (table,)).fetchone()
        found = row[0] if row else 0
        if found > LATEST_VERSION:
            raise InvalidOption(
                f"table {table!r} has jobq schema version {found}, newer than this jobq"
                f" knows ({LATEST_VERSION}); upgrade jobq"
            )
        for version in range(found + 1, LATEST_VERSION + 1):
            MIGRATIONS[version - 1](conn, table)
        conn.execute(
            "INSERT INTO jobq_schema (tbl, version) VALUES (?, ?)"
            " ON CONFLICT (tbl) DO UPDATE SET version = excluded.version",
            (table, LATEST_VERSION),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found

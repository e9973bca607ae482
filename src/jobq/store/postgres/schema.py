"""The PostgreSQL schema: k-msg's ``kmsg_jobs`` table plus jobq's columns, versioned.

The table has the columns of the SQLite one (times as epoch milliseconds in
``BIGINT``, JSON as text), under the name k-msg's PostgreSQL adapter uses by
default, so a k-msg producer and jobq workers can share it. jobq's columns
all have defaults, so k-msg's ``INSERT`` statements still work.

:func:`migrate` brings a table to the latest version. It runs in one
transaction that first takes a transaction-level advisory lock, so any number
of processes may open (or ``jobq migrate``) the same database at once: the
first migrates, the others wait for its commit and then find the work done.
The version reached is kept per table in ``jobq_schema``, which lives in the
first schema of the ``search_path``, like the job table.

Table names are checked with :func:`~jobq.store.sql.check_table_name`
and always quoted with :class:`psycopg.sql.Identifier`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import psycopg
from psycopg import sql

from .. import schema as shape
from ..sql import check_table_name

#: The default table: k-msg's PostgreSQL (Hyperdrive) job queue uses this name.
DEFAULT_TABLE = "kmsg_jobs"

#: Key of the advisory lock that serialises migrations in a database.
MIGRATION_LOCK_KEY = 0x6A6F6271_0001  # "jobq", 1

# PostgreSQL truncates longer identifiers, so derived names stay within it.
_MAX_IDENTIFIER = 63

#: Autovacuum settings for the job table: a busy queue rewrites and deletes
#: rows all the time, so vacuum and analyze run after 1 % / 2 % of the table
#: changed rather than the defaults' 20 % / 10 %.
AUTOVACUUM = (
    ("autovacuum_vacuum_scale_factor", "0.01"),
    ("autovacuum_analyze_scale_factor", "0.02"),
)

TYPES = shape.Types(time="BIGINT", fraction="DOUBLE PRECISION", serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
_KMSG_TABLE = shape.kmsg_table(TYPES)
#: jobq's own columns, added to a table k-msg may have created first.
JOBQ_COLUMNS = shape.jobq_columns(TYPES)
#: Columns version 2 adds: unique jobs, progress, cancellation.
V2_COLUMNS = shape.v2_columns(TYPES)
V3_COLUMNS = shape.v3_columns(TYPES)


def derived_name(table: str, suffix: str) -> str:
    """``<table>_<suffix>`` for an index or channel, shortened with a hash of
    the table name when it would exceed PostgreSQL's identifier length (two
    long table names must not end up sharing one index name)."""
    name = f"{table}_{suffix}"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(table.encode()).hexdigest()[:12]
    return f"{table[: _MAX_IDENTIFIER - len(suffix) - 14]}_{digest}_{suffix}"


def notify_channel(table: str, schema: str = "public") -> str:
    """The LISTEN/NOTIFY channel on which a table's changes are announced.
    Channels are database-wide, so tables of the same name in different
    schemas get different channels (and do not wake each other's workers)."""
    if schema == "public":
        return derived_name(table, "jobq")
    return derived_name(f"{schema}_{table}", "jobq")


def finish_channel(channel: str) -> str:
    """The channel on which a table's jobs reaching a final status are
    announced, beside its work channel ``channel``."""
    return derived_name(channel, "done")


def _add(
    cur: psycopg.Cursor[tuple[object, ...]],
    table: str,
    columns: tuple[tuple[str, str], ...],
    indexes: tuple[shape.Index, ...],
) -> None:
    ident = sql.Identifier(table)
    for name, decl in columns:
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + decl).format(ident, sql.Identifier(name))
        )
    quoted = ident.as_string(cur)
    for index in indexes:
        name = sql.Identifier(derived_name(table, f"jobq_{index.name}")).as_string(cur)
        cur.execute(index.create(name, quoted))


def _v1_create(cur: psycopg.Cursor[tuple[object, ...]], table: str) -> None:
    ident = sql.Identifier(table)
    cur.execute(sql.SQL(_KMSG_TABLE).format(table=ident))
    _add(cur, table, JOBQ_COLUMNS, shape.V1_INDEXES)
    cur.execute(
        sql.SQL("ALTER TABLE {} SET ({})").format(
            ident,
            sql.SQL(", ").join(sql.SQL(f"{key} = {value}") for key, value in AUTOVACUUM),
        )
    )


#: A metadata field as text, or NULL when the metadata is not valid JSON (a
#: damaged row must not break the claims of every other job).
JSON_FIELD_FUNCTION = """
CREATE OR REPLACE FUNCTION jobq_json_field(doc text, field text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN doc::jsonb ->> field;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$
"""


def starts_table(table: str) -> str:
    """The table of recent job starts that per-key rate limits count."""
    return derived_name(table, "jobq_starts")


def _v2_features(cur: psycopg.Cursor[tuple[object, ...]], table: str) -> None:
    _add(cur, table, V2_COLUMNS, shape.V2_INDEXES)
    starts = starts_table(table)
    cur.execute(sql.SQL(shape.starts_table_ddl(TYPES, "{}")).format(sql.Identifier(starts)))
    cur.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (name, at_ms)").format(
            sql.Identifier(derived_name(starts, "window")), sql.Identifier(starts)
        )
    )
    cur.execute(JSON_FIELD_FUNCTION)


def _v3_error_type(cur: psycopg.Cursor[tuple[object, ...]], table: str) -> None:
    _add(cur, table, V3_COLUMNS, ())


def attempts_table(table: str) -> str:
    """The attempt history of a job table (version 4)."""
    return derived_name(table, "jobq_attempts")


def workers_table(table: str) -> str:
    """The worker registry of a job table (version 4)."""
    return derived_name(table, "jobq_workers")


def _v4_history(cur: psycopg.Cursor[tuple[object, ...]], table: str) -> None:
    attempts = sql.Identifier(attempts_table(table)).as_string(cur)
    # A foreign key deletes a job's history with the job, whoever deletes it
    # (k-msg's cleanup included).
    job_id = f"TEXT NOT NULL REFERENCES {sql.Identifier(table).as_string(cur)} (id) ON DELETE CASCADE"
    cur.execute(shape.attempts_table_ddl(TYPES, attempts, job_id))
    index = sql.Identifier(derived_name(table, "jobq_attempts_job")).as_string(cur)
    cur.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {attempts} (job_id, seq)")
    cur.execute(shape.workers_table_ddl(TYPES, sql.Identifier(workers_table(table)).as_string(cur)))


def _v5_listing(cur: psycopg.Cursor[tuple[object, ...]], table: str) -> None:
    _add(cur, table, (), shape.V5_INDEXES)


def _v6_operations(cur: psycopg.Cursor[tuple[object, ...]], table: str) -> None:
    attempts = sql.Identifier(attempts_table(table)).as_string(cur)
    index = sql.Identifier(derived_name(table, "jobq_attempts_ended")).as_string(cur)
    cur.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {attempts} {shape.ATTEMPTS_ENDED_INDEX}")
    workers = sql.Identifier(workers_table(table)).as_string(cur)
    name, decl = shape.WORKER_LIMITS_COLUMN  # its default '{}' is no place for psycopg's format()
    cur.execute(f"ALTER TABLE {workers} ADD COLUMN IF NOT EXISTS {name} {decl}")


#: Migration n (1-based) brings the schema from version n-1 to n.
MIGRATIONS: tuple[Callable[[psycopg.Cursor[tuple[object, ...]], str], None], ...] = (
    _v1_create,
    _v2_features,
    _v3_error_type,
    _v4_history,
    _v5_listing,
    _v6_operations,
)
LATEST_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection[tuple[object, ...]], table: str = DEFAULT_TABLE) -> int:
    """Brings ``table`` to the latest schema version on ``conn``; returns the
    version found before. Idempotent, and safe to run from several processes
    at once. ``conn`` must not be inside a transaction."""
    check_table_name(table)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        cur.execute(shape.SCHEMA_TABLE)
        cur.execute("SELECT version FROM jobq_schema WHERE tbl = %s", (table,))
        row = cur.fetchone()
        found = int(row[0]) if row else 0  # type: ignore[call-overload]
        shape.check_version(table, found, LATEST_VERSION)
        for version in range(found + 1, LATEST_VERSION + 1):
            MIGRATIONS[version - 1](cur, table)
        if found != LATEST_VERSION:
            cur.execute(shape.record_version_query("%s", "%s"), (table, LATEST_VERSION))
    return found


def migrate_url(dsn: str, table: str = DEFAULT_TABLE) -> int:
    """:func:`migrate` on a fresh connection to ``dsn`` (for ``jobq migrate URL``)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return migrate(conn, table)

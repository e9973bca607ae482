"""The SQLite schema: k-msg's ``jobs`` table plus jobq's columns, versioned.

The table is a superset of the one k-msg's ``SQLiteJobQueue`` creates (same
name by default, same columns, times as epoch milliseconds, JSON as text), so
a k-msg producer and jobq workers can share one database file. jobq's
columns all have defaults, so k-msg's ``INSERT`` statements, which name only
their own columns, still work.

Before changing anything, :func:`inspect` reads what the file holds: a job
table of another shape (another application's ``jobs``, or a k-msg-like
table that keeps its times as text), or a name jobq would give its indexes,
start log or bookkeeping that something else already uses, is refused with
:class:`~jobq.errors.SchemaMismatch` and the file is left as it was.

Migrations run in order inside one ``BEGIN IMMEDIATE`` transaction; the
version reached is kept in ``jobq_schema``. Several processes may open a new
file at once: the first to take the write lock migrates, the others then find
the work done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import NamedTuple

from ...errors import InvalidOption, SchemaMismatch
from .. import schema as shape

TYPES = shape.Types(time="INTEGER", fraction="REAL")
#: k-msg's columns and their declarations.
KMSG_COLUMNS = shape.kmsg_columns(TYPES)
#: k-msg's columns, as its SQLite queue declares them.
KMSG_TABLE = shape.kmsg_table(TYPES)
#: jobq's own columns, added to a table k-msg may have created first.
JOBQ_COLUMNS = shape.jobq_columns(TYPES)
#: Columns version 2 adds: unique jobs, progress, cancellation.
V2_COLUMNS = shape.v2_columns(TYPES)
#: Columns version 3 adds: the exception type of the last error.
V3_COLUMNS = shape.v3_columns(TYPES)


#: Tables jobq keeps in every file it uses, whatever its job tables are called.
BOOKKEEPING = {
    "jobq_schema": ("tbl", "version"),  # the version each job table reached
    "jobq_cron": ("tbl", "name", "last_slot"),  # cron schedules' last slots
    "jobq_paused": ("tbl", "queue", "paused_at"),  # paused queues
}
#: Columns of a job table's start log (see :func:`starts_table`).
STARTS_COLUMNS = ("name", "key", "at_ms")


def index_name(table: str, name: str) -> str:
    """What an index of the job table is called in SQLite."""
    return f"jobq_{table}_{name}"


def starts_table(table: str) -> str:
    """The table of recent job starts that per-key rate limits count."""
    return f"jobq_{table}_starts"


def attempts_table(table: str) -> str:
    """The attempt history of a job table (version 4)."""
    return f"jobq_{table}_attempts"


def workers_table(table: str) -> str:
    """The worker registry of a job table (version 4)."""
    return f"jobq_{table}_workers"


def check_table_name(table: str) -> str:
    """A job table may not take the name of jobq's bookkeeping, nor one
    SQLite keeps for itself."""
    if table.lower() in BOOKKEEPING or table.lower().startswith("sqlite_"):
        raise InvalidOption(f"table name {table!r} is reserved (jobq's bookkeeping or SQLite's own)")
    return table


def affinity(declared: str) -> str:
    """The type affinity SQLite gives a column declared with this type (its
    rules, in their order)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL"
    return "NUMERIC"


#: The affinity every known column of a job table must have (k-msg's, then jobq's).
EXPECTED = {name: affinity(decl.split()[0]) for name, decl in (*KMSG_COLUMNS, *JOBQ_COLUMNS, *V2_COLUMNS)}
_MARKED = shape.Types(time="<time>", fraction="REAL")  # the same declarations, times marked
#: The columns that hold times (epoch milliseconds).
TIME_COLUMNS = frozenset(
    name
    for name, decl in (*shape.kmsg_columns(_MARKED), *shape.jobq_columns(_MARKED), *shape.v2_columns(_MARKED))
    if decl.startswith(_MARKED.time)
)


class Found(NamedTuple):
    """What a file holds for a job table, read before anything changes."""

    exists: bool  # the table exists (k-msg's, or jobq's at some version)
    version: int  # the jobq schema version recorded for it; 0 for none (or no table)


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, bool, bool, bool]]:
    """(name, declared type, not null, has a default, part of the primary key) per column."""
    return [
        (name, decl or "", bool(notnull), default is not None, bool(pk))
        for _, name, decl, notnull, default, pk in conn.execute(f"PRAGMA table_info({table})")
    ]


def _shape_problems(conn: sqlite3.Connection, table: str) -> list[str]:
    """Why an existing table is not a job table jobq can adopt (empty: it can)."""
    columns = {column[0].lower(): column for column in _columns(conn, table)}
    problems: list[str] = []
    missing = [name for name, _ in KMSG_COLUMNS if name not in columns]
    if missing:
        problems.append(f"no column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    times = []
    for key, (name, decl, notnull, default, pk) in columns.items():
        want = EXPECTED.get(key)
        if want is None:
            if notnull and not default and not pk:
                problems.append(f"column {name} is NOT NULL without a default, so jobq cannot insert")
        elif affinity(decl) != want:
            if key in TIME_COLUMNS:
                times.append(f"{name} {decl or 'untyped'}")
            else:
                problems.append(f"column {name} is {decl or 'untyped'}, not {want}")
    if times:
        problems.append(
            f"times declared as {', '.join(times)}: k-msg and jobq keep times as INTEGER epoch milliseconds"
        )
    keys = [name for name, (_, _, _, _, pk) in columns.items() if pk]
    if "id" in columns and keys != ["id"]:
        problems.append("id is not its primary key")
    return problems


def _a(kind: str) -> str:
    """``"a view"``, ``"an index"``: a kind of schema object with its article."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def inspect(conn: sqlite3.Connection, table: str, where: str = "") -> Found:
    """Reads, and never changes, what the file holds for job table ``table``.

    Raises :class:`~jobq.errors.SchemaMismatch` when jobq must leave the file
    alone: ``table`` is another application's (missing k-msg's columns,
    times kept as text, a view), or a name jobq would create for it (its
    indexes, its start log, ``jobq_schema``, ``jobq_cron``) is taken by
    something else (another application, or another jobq table whose
    derived names would coincide: ``x`` and ``x_queue`` cannot share a file).
    """
    place = f" in {where!r}" if where else ""
    objects = {
        name.lower(): (kind, str(owner))
        for kind, name, owner in conn.execute("SELECT type, name, tbl_name FROM sqlite_master")
    }
    found = objects.get(table.lower())
    exists = found is not None
    if found is not None:
        problems = [f"it is {_a(found[0])}"] if found[0] != "table" else _shape_problems(conn, table)
        if problems:
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise SchemaMismatch(
                f"table {table!r}{place} is not a job table jobq can use ({'; '.join(problems[:3])}{more});"
                " nothing was changed; give jobq a table of its own with the table option (table=jobq_jobs)"
            )

    def taken(name: str, what: str, kind: str, owner: str, columns: tuple[str, ...] = ()) -> None:
        have = objects.get(name.lower())
        if have is None:
            return
        ours = have[0] == kind and have[1].lower() == owner.lower()
        if ours and columns:
            ours = set(columns) <= {c[0].lower() for c in _columns(conn, name)}
        if not ours:
            used = {"index": f"an index on table {have[1]!r}", "table": "a table of another shape"}.get(
                have[0], _a(have[0])
            )
            raise SchemaMismatch(
                f"jobq's {what} for table {table!r} is named {name!r}, but{place} that is already {used};"
                " nothing was changed; choose another table name"
            )

    for name, columns in BOOKKEEPING.items():
        taken(name, "bookkeeping table", "table", name, columns)
    starts = starts_table(table)
    taken(starts, "start log", "table", starts, STARTS_COLUMNS)
    taken(f"{starts}_window", "start log's index", "index", starts)
    attempts = attempts_table(table)
    taken(attempts, "attempt history", "table", attempts, ("seq", "job_id", "outcome"))
    taken(f"{attempts}_job", "attempt history's index", "index", attempts)
    taken(f"{attempts}_ended", "attempt history's index", "index", attempts)
    taken(f"{attempts}_prune", "attempt history's trigger", "trigger", table)
    taken(workers_table(table), "worker registry", "table", workers_table(table), ("id", "heartbeat_at"))
    for index in (*shape.V1_INDEXES, *shape.V2_INDEXES, *shape.V5_INDEXES):
        taken(index_name(table, index.name), f"index {index.name!r}", "index", table)
    version = 0
    if exists and "jobq_schema" in objects:
        row = conn.execute("SELECT version FROM jobq_schema WHERE tbl = ?", (table,)).fetchone()
        version = int(row[0]) if row else 0
    return Found(exists, version)


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


def _v4_history(conn: sqlite3.Connection, table: str) -> None:
    attempts = attempts_table(table)
    conn.execute(shape.attempts_table_ddl(TYPES, attempts, "TEXT NOT NULL"))
    conn.execute(f"CREATE INDEX IF NOT EXISTS {attempts}_job ON {attempts} (job_id, seq)")
    # A trigger, not a foreign key (SQLite enforces those only on connections
    # that ask): a job deleted by any writer, k-msg's included, takes its
    # history with it.
    conn.execute(
        f"CREATE TRIGGER IF NOT EXISTS {attempts}_prune AFTER DELETE ON {table}"
        f" BEGIN DELETE FROM {attempts} WHERE job_id = old.id; END"
    )
    conn.execute(shape.workers_table_ddl(TYPES, workers_table(table)))


def _v5_listing(conn: sqlite3.Connection, table: str) -> None:
    _add(conn, table, (), shape.V5_INDEXES)


def _v6_operations(conn: sqlite3.Connection, table: str) -> None:
    attempts = attempts_table(table)
    conn.execute(f"CREATE INDEX IF NOT EXISTS {attempts}_ended ON {attempts} {shape.ATTEMPTS_ENDED_INDEX}")
    _add(conn, workers_table(table), (shape.WORKER_LIMITS_COLUMN,), ())


#: Migration n (1-based) brings the schema from version n-1 to n.
MIGRATIONS: tuple[Callable[[sqlite3.Connection, str], None], ...] = (
    _v1_create,
    _v2_features,
    _v3_error_type,
    _v4_history,
    _v5_listing,
    _v6_operations,
)
LATEST_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, table: str, where: str = "") -> int:
    """Brings the schema to the latest version; returns the version found.
    Refuses a file :func:`inspect` refuses, before changing anything
    (``where`` names the file in its message).

    ``conn`` must be in autocommit mode; the caller retries on busy errors.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = inspect(conn, table, where).version
        shape.check_version(table, found, LATEST_VERSION)
        if found != LATEST_VERSION:
            conn.execute(shape.SCHEMA_TABLE)
            for version in range(found + 1, LATEST_VERSION + 1):
                MIGRATIONS[version - 1](conn, table)
            conn.execute(shape.record_version_query("?", "?"), (table, LATEST_VERSION))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found

"""The job table's shape, once for both SQL stores.

Both stores keep k-msg's table (its columns, so a k-msg producer and jobq
workers can share it) plus jobq's own, with the same indexes; they differ in
the types that hold epoch milliseconds and fractions (:class:`Types`), in how
an index is named (an SQLite name, a PostgreSQL name shortened to fit its
identifiers) and in how a migration runs (see each store's ``schema``
module). Migration n (1-based) brings a table from version n-1 to n; the
version reached is kept per table in ``jobq_schema``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidOption


@dataclass(frozen=True, slots=True)
class Types:
    """The SQL types of one store."""

    time: str  # epoch milliseconds ("INTEGER" on SQLite, "BIGINT" on PostgreSQL)
    fraction: str  # a progress between 0 and 1
    serial: str = "INTEGER PRIMARY KEY"  # a key numbered in insertion order


def kmsg_columns(types: Types) -> tuple[tuple[str, str], ...]:
    """k-msg's columns, as its queue declares them: times in ``types.time``."""
    t = types.time
    return (
        ("id", "TEXT PRIMARY KEY"),
        ("type", "TEXT NOT NULL"),
        ("data", "TEXT NOT NULL"),
        ("status", "TEXT NOT NULL DEFAULT 'pending'"),
        ("priority", "INTEGER NOT NULL DEFAULT 0"),
        ("attempts", "INTEGER NOT NULL DEFAULT 0"),
        ("max_attempts", "INTEGER NOT NULL DEFAULT 3"),
        ("delay", f"{t} NOT NULL DEFAULT 0"),
        ("created_at", f"{t} NOT NULL"),
        ("process_at", f"{t} NOT NULL"),
        ("completed_at", t),
        ("failed_at", t),
        ("error", "TEXT"),
        ("metadata", "TEXT"),
    )


def kmsg_table(types: Types) -> str:
    """k-msg's table, as its queue declares it (``{table}`` to fill in)."""
    body = ",\n".join(f"  {name} {decl}" for name, decl in kmsg_columns(types))
    return f"\nCREATE TABLE IF NOT EXISTS {{table}} (\n{body}\n)\n"


def jobq_columns(types: Types) -> tuple[tuple[str, str], ...]:
    """jobq's own columns (version 1), added to a table k-msg may have created first."""
    return (
        ("queue", "TEXT NOT NULL DEFAULT 'default'"),
        ("result", "TEXT"),
        ("lease_token", "TEXT"),
        ("lease_owner", "TEXT"),
        ("scheduled_at", types.time),
        ("started_at", types.time),
        ("lost_count", "INTEGER NOT NULL DEFAULT 0"),
    )


def v2_columns(types: Types) -> tuple[tuple[str, str], ...]:
    """Columns version 2 adds: unique jobs, progress, cancellation."""
    return (
        ("unique_key", "TEXT"),
        ("progress", types.fraction),
        ("progress_message", "TEXT"),
        ("cancelled_at", types.time),
        ("cancel_requested_at", types.time),
    )


def v3_columns(types: Types) -> tuple[tuple[str, str], ...]:
    """Columns version 3 adds: the exception type of the last error."""
    return (("error_type", "TEXT"),)


@dataclass(frozen=True, slots=True)
class Index:
    """An index on the job table; each store derives its name from ``name``."""

    name: str
    columns: str
    where: str = ""
    unique: bool = False

    def create(self, index: str, table: str) -> str:
        """The statement, with the index and the table named as the store quotes them."""
        where = f" WHERE {self.where}" if self.where else ""
        unique = "UNIQUE " if self.unique else ""
        return f"CREATE {unique}INDEX IF NOT EXISTS {index} ON {table} {self.columns}{where}"


#: Version 1's indexes.
V1_INDEXES = (
    # Claiming walks only waiting rows, in dequeue order: its cost does not
    # grow with the finished jobs the table keeps.
    Index("ready", "(priority DESC, process_at, created_at)", "status = 'pending'"),
    # The rescuer looks for expired leases among processing rows only.
    Index("leases", "(process_at)", "status = 'processing'"),
)

#: Version 2's indexes.
V2_INDEXES = (
    # The database itself keeps a unique key to one unfinished job.
    Index(
        "unique",
        "(unique_key)",
        "unique_key IS NOT NULL AND status IN ('pending', 'processing')",
        unique=True,
    ),
    # Claiming from one named queue walks only that queue's waiting rows.
    Index("queue_ready", "(queue, priority DESC, process_at, created_at)", "status = 'pending'"),
    # Listing jobs by status, newest or oldest first.
    Index("status_created", "(status, created_at)"),
)


#: Version 5's indexes.
V5_INDEXES = (
    # Listing every job newest (or oldest) first, a page at a time from a
    # cursor (created_at, id): without it each page sorts the whole table.
    # created_at only grows, so inserts append at the index's edge.
    Index("created", "(created_at, id)"),
    # Throughput (jobs finished per minute lately) reads only the recent
    # finishes, not every finished job the table keeps. Finish times only
    # grow, so a finish appends at the index's edge.
    Index("completed", "(completed_at)", "status = 'completed'"),
    Index("failed", "(failed_at)", "status = 'failed'"),
)


#: Version 6: the attempt history by end time, which the overview's
#: throughput and failure rate read (attempts ended in the last hour) and the
#: charts page too, without reading every attempt the table keeps; end times
#: only grow, so a new attempt appends at the index's edge.
ATTEMPTS_ENDED_INDEX = "(ended_at)"
#: Version 6: what each registered worker enforces (its per-queue
#: concurrency, rate limit, per-key limits, circuit breaker and the state
#: of its open circuits), as JSON text (see :mod:`jobq.history`).
WORKER_LIMITS_COLUMN = ("limits", "TEXT NOT NULL DEFAULT '{}'")


def starts_table_ddl(types: Types, starts: str) -> str:
    """The table of recent job starts that per-key rate limits count (version 2)."""
    return f"CREATE TABLE IF NOT EXISTS {starts} (name TEXT NOT NULL, key TEXT NOT NULL, at_ms {types.time} NOT NULL)"


def attempts_table_ddl(types: Types, attempts: str, job_id: str) -> str:
    """The attempt history of a job table (version 4): one row per attempt,
    in the order written (``seq``). ``job_id`` declares the job column (on
    PostgreSQL, a foreign key that deletes a job's history with it)."""
    t = types.time
    return (
        f"CREATE TABLE IF NOT EXISTS {attempts} (seq {types.serial}, job_id {job_id},"
        f" attempt INTEGER NOT NULL, worker TEXT, started_at {t}, ended_at {t} NOT NULL,"
        " outcome TEXT NOT NULL, error_type TEXT, error TEXT, traceback TEXT)"
    )


def workers_table_ddl(types: Types, workers: str) -> str:
    """The worker registry of a job table (version 4): one row per worker
    process, refreshed by its heartbeats (see :mod:`jobq.history`)."""
    t = types.time
    return (
        f"CREATE TABLE IF NOT EXISTS {workers} (id TEXT PRIMARY KEY, host TEXT NOT NULL,"
        f" pid INTEGER NOT NULL, queues TEXT NOT NULL, concurrency INTEGER NOT NULL, version TEXT NOT NULL,"
        f" started_at {t} NOT NULL, heartbeat_at {t} NOT NULL, running INTEGER NOT NULL, done {t} NOT NULL)"
    )


#: The versions reached, per job table.
SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS jobq_schema (tbl TEXT PRIMARY KEY, version INTEGER NOT NULL)"


def record_version_query(table_value: str, version_value: str) -> str:
    """Stores the version a table reached (values spelled by the store)."""
    return (
        f"INSERT INTO jobq_schema (tbl, version) VALUES ({table_value}, {version_value})"
        " ON CONFLICT (tbl) DO UPDATE SET version = excluded.version"
    )


def check_version(table: str, found: int, latest: int) -> None:
    """A table a newer jobq migrated is left alone."""
    if found > latest:
        raise InvalidOption(
            f"table {table!r} has jobq schema version {found}, newer than this jobq"
            f" knows ({latest}); upgrade jobq"
        )

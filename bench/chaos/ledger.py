"""The ledger: what really happened, recorded outside the queue.

Every child process writes its own SQLite file, ``ledger-<name>.db`` in the
run's work directory, so writers never contend with each other (or with the
queue). Each write is one autocommitted statement in WAL mode: once it
returned, a SIGKILL of the writer cannot take it back (``synchronous=OFF``
only gives up durability against an OS crash, which no scenario injects).
The parent reads every file at once through :class:`Ledger`.

Tables (all times are ``time.time()`` seconds, comparable across processes
of one machine):

- ``executions``: one row per handler execution: job id, worker, pid,
  ``started``, and ``ended`` (NULL if the handler never returned).
- ``claims``: one row per job a worker's claim returned.
- ``enqueued``: one row per job a producer's enqueue call returned.
- ``completions``: one row per completion a worker tried to write, with its
  outcome (``ok``, or the error class name, e.g. ``LeaseLost``).
- ``events``: processor events (``processor_started``, ``job_lost``,
  ``job_quarantined``, ``job_failed``, ...).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS executions (row INTEGER PRIMARY KEY, job_id TEXT NOT NULL,"
    " worker TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL, ended REAL)",
    "CREATE TABLE IF NOT EXISTS claims (job_id TEXT NOT NULL, worker TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS enqueued (job_id TEXT NOT NULL, producer TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS completions (job_id TEXT NOT NULL, worker TEXT NOT NULL,"
    " outcome TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (name TEXT NOT NULL, job_id TEXT, worker TEXT NOT NULL,"
    " error TEXT, at REAL NOT NULL)",
)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    for statement in SCHEMA:
        conn.execute(statement)
    return conn


class LedgerWriter:
    """The ledger file of one process (``name``)."""

    def __init__(self, directory: Path | str, name: str) -> None:
        self.name = name
        self.conn = _connect(Path(directory) / f"ledger-{name}.db")

    def started(self, job_id: str, pid: int) -> int:
        cursor = self.conn.execute(
            "INSERT INTO executions (job_id, worker, pid, started) VALUES (?, ?, ?, ?)",
            (job_id, self.name, pid, time.time()),
        )
        return int(cursor.lastrowid or 0)

    def ended(self, row: int) -> None:
        self.conn.execute("UPDATE executions SET ended = ? WHERE row = ?", (time.time(), row))

    def claimed(self, job_ids: Iterable[str]) -> None:
        now = time.time()
        self._many("INSERT INTO claims VALUES (?, ?, ?)", [(i, self.name, now) for i in job_ids])

    def enqueued(self, job_ids: Iterable[str]) -> None:
        now = time.time()
        self._many("INSERT INTO enqueued VALUES (?, ?, ?)", [(i, self.name, now) for i in job_ids])

    def completions(self, outcomes: Iterable[tuple[str, str]]) -> None:
        now = time.time()
        self._many(
            "INSERT INTO completions VALUES (?, ?, ?, ?)", [(i, self.name, o, now) for i, o in outcomes]
        )

    def event(self, name: str, job_id: str | None = None, error: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)", (name, job_id, self.name, error, time.time())
        )

    def _many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        if not rows:
            return
        # One transaction: the rows of one call land together or not at all.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(sql, rows)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class Execution:
    job_id: str
    worker: str
    pid: int
    started: float
    ended: float | None


@dataclass(frozen=True)
class Row:
    """A row of ``claims``, ``enqueued``, ``completions`` or ``events``:
    ``what`` is the outcome (completions) or event name (events)."""

    job_id: str | None
    worker: str
    at: float
    what: str = ""
    error: str | None = None


class Ledger:
    """Reads the ledger files of every process of a run (``directory``)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def writer(self, name: str) -> LedgerWriter:
        return LedgerWriter(self.directory, name)

    def _query(self, sql: str) -> Iterator[tuple[object, ...]]:
        for path in sorted(self.directory.glob("ledger-*.db")):
            with contextlib.closing(sqlite3.connect(str(path), timeout=60)) as conn:
                try:
                    yield from conn.execute(sql).fetchall()
                except sqlite3.OperationalError as exc:  # a file whose tables are not created yet
                    if "no such table" not in str(exc):
                        raise

    def executions(self) -> list[Execution]:
        found = [
            Execution(str(j), str(w), int(p), float(s), None if e is None else float(e))  # type: ignore[arg-type]
            for j, w, p, s, e in self._query("SELECT job_id, worker, pid, started, ended FROM executions")
        ]
        return sorted(found, key=lambda e: e.started)

    def claims(self) -> list[Row]:
        return self._rows("SELECT job_id, worker, at, '', NULL FROM claims")

    def enqueued(self) -> list[Row]:
        return self._rows("SELECT job_id, producer, at, '', NULL FROM enqueued")

    def completions(self) -> list[Row]:
        return self._rows("SELECT job_id, worker, at, outcome, NULL FROM completions")

    def events(self, name: str | None = None) -> list[Row]:
        rows = self._rows("SELECT job_id, worker, at, name, error FROM events")
        return [r for r in rows if name is None or r.what == name]

    def _rows(self, sql: str) -> list[Row]:
        rows = [
            Row(None if j is None else str(j), str(w), float(a), str(x), None if e is None else str(e))  # type: ignore[arg-type]
            for j, w, a, x, e in self._query(sql)
        ]
        return sorted(rows, key=lambda r: r.at)

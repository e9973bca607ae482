"""Helpers for the in-process reliability scenarios (bad input, clock jumps,
the model-based test): a queue driven from a loop the test owns, raw access
to the database under it, and how many Hypothesis examples to run.

``JOBQ_CHAOS_SCALE`` sets the effort: ``ci`` (the default) keeps every file
to seconds or tens of seconds, derandomized (the same examples every run);
``full`` runs many more examples and steps, randomised, and saves the
failing ones in an example database (``JOBQ_HYPOTHESIS_DB``, by default
``.hypothesis/jobq`` in the repository, which git ignores) that later runs
replay first.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

import jobq

T = TypeVar("T")

SCALE = os.environ.get("JOBQ_CHAOS_SCALE", "ci")
if SCALE not in ("ci", "full"):
    raise ValueError(f"JOBQ_CHAOS_SCALE must be 'ci' or 'full', not {SCALE!r}")
FULL = SCALE == "full"

DEADLINE = 60.0  # seconds anything expected may take on a busy 2-core machine


def examples(ci: int, full: int) -> int:
    return full if FULL else ci


EXAMPLE_DB = Path(os.environ.get("JOBQ_HYPOTHESIS_DB") or Path(__file__).resolve().parents[2] / ".hypothesis" / "jobq")


def fuzz_settings(ci: int, full: int, **more: Any) -> settings:
    """Hypothesis settings: under ``ci``, reproducible (derandomized, no
    example database); under ``full``, randomised with the saved examples
    (see the module docstring). No per-example deadline (the machine is
    shared); fixtures allowed."""
    return settings(
        max_examples=examples(ci, full),
        deadline=None,
        database=DirectoryBasedExampleDatabase(str(EXAMPLE_DB)) if FULL else None,
        derandomize=not FULL,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
        **more,
    )


#: The job table each backend uses by default.
TABLES = {"sqlite": "jobs", "postgres": "kmsg_jobs"}


class Harness:
    """One backend, opened on a loop this object owns (so Hypothesis, which
    calls the test body once per example, can drive an async queue)."""

    def __init__(self, backend: str, url: str, tmp_path: Path) -> None:
        self.backend = backend
        self.url = url
        self.path = tmp_path / "jobs.db"
        self.runner = asyncio.Runner()
        self.queues: list[jobq.Queue] = []

    def run(self, coro: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return self.runner.run(wrap())

    def open(self, **options: Any) -> jobq.Queue:
        queue = self.run(jobq.connect(self.url, **options))
        self.queues.append(queue)
        return queue

    def close(self) -> None:
        try:
            for queue in self.queues:
                self.run(queue.close())
        finally:
            self.runner.close()

    # -- raw database access -------------------------------------------------

    @property
    def table(self) -> str:
        return TABLES[self.backend]

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Runs one statement on a connection of its own (committed)."""
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                rows = conn.execute(statement, params).fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        if self.backend == "postgres":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as pg:
                cur = pg.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
        raise ValueError(f"no raw access to the {self.backend} backend")

    def add_canary(self) -> None:
        """A table of the application's beside the job table: SQL run from
        input (a DROP, a DELETE) would show in it."""
        self.sql("CREATE TABLE IF NOT EXISTS app_canary (n INTEGER NOT NULL)")
        self.sql("DELETE FROM app_canary")
        self.sql("INSERT INTO app_canary (n) VALUES (1), (2), (3)")

    def canary(self) -> list[int]:
        return [row[0] for row in self.sql("SELECT n FROM app_canary ORDER BY n")]

    def rows(self, queue: jobq.Queue) -> int:
        if self.backend == "memory":
            return sum(self.run(queue.counts()).values())
        return int(self.sql(f"SELECT count(*) FROM {self.table}")[0][0])

    def schema_checksum(self) -> str:
        """A digest of every table, column, index and function the database
        holds for this test (SQLite: ``sqlite_master``; PostgreSQL: the
        catalogs of the test's schema)."""
        if self.backend == "memory":
            return "memory"
        if self.backend == "sqlite":
            rows = self.sql("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name")
        else:
            rows = self.sql(
                "SELECT 'col', table_name || '.' || column_name || ' ' || data_type || ' '"
                "  || coalesce(column_default, '') || ' ' || is_nullable"
                " FROM information_schema.columns WHERE table_schema = current_schema()"
                " UNION ALL SELECT 'index', indexname || ' ' || indexdef FROM pg_indexes"
                "  WHERE schemaname = current_schema()"
                " UNION ALL SELECT 'rel', c.relname || ' ' || c.relkind::text FROM pg_class c"
                "  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
                " UNION ALL SELECT 'fn', p.proname || ' ' || md5(p.prosrc) FROM pg_proc p"
                "  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema()"
                " UNION ALL SELECT 'trigger', tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                "  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
                " UNION ALL SELECT 'schema', nspname FROM pg_namespace WHERE nspname = current_schema()"
                " ORDER BY 1, 2"
            )
        return hashlib.sha256(repr(rows).encode()).hexdigest()


class MovableClock(jobq.FakeClock):
    """A fake clock the test may also set backwards (``jobq.FakeClock`` only
    moves forward). Listeners (a running processor's wake-ups) are called
    after every move, as ``FakeClock`` calls them."""

    def set(self, when: float | Any) -> None:
        target = when.timestamp() if hasattr(when, "timestamp") else float(when)
        with self._lock:
            self._now = target
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def jump(self, seconds: float) -> None:
        self.set(self._now + seconds)
